"""`dpunet lab policy apply|delete|list` and `dpunet lab namespace label`: NetworkPolicies
of the lab's controller (docs/network-policy.md), as `dpunet policies` against any."""

from __future__ import annotations

import click
import yaml
from rich.markup import escape

from dpunet.cli.controller_cmds import _call
from dpunet.cli.output import console, emit_data, fail, output_option
from dpunet.cli.policies_cmds import (
    apply_manifests,
    parse_key,
    parse_labels,
    print_policies,
    read_manifests,
)
from dpunet.contract.client import ControllerClient
from dpunet.lab.lab import load_plan
from dpunet.lab.runner import LabError
from dpunet.lab.services import admin_client
from dpunet.lab.topology import DEFAULT_LAB_NAME

name_option = click.option("--name", default=DEFAULT_LAB_NAME, show_default=True, help="Lab name.")


def _lab_client(name: str) -> ControllerClient:
    try:
        return admin_client(load_plan(name))
    except (LabError, OSError) as exc:
        fail(escape(f"lab {name}: {exc}"))
        raise AssertionError("unreachable") from exc


@click.group()
def policy() -> None:
    """NetworkPolicies of the lab (OVN ACLs on the DPUs and on cp)."""


@policy.command("apply")
@name_option
@click.option("-f", "--filename", "path", required=True, help="YAML file of NetworkPolicies.")
@output_option()
def policy_apply(name: str, path: str, output: str) -> None:
    """Create or replace every NetworkPolicy in a YAML file (`-`: stdin)."""
    try:
        docs = read_manifests(path)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        fail(escape(str(exc)))
    with _lab_client(name) as client:
        applied = apply_manifests(client, docs)
    if not emit_data(applied, output):
        print_policies(applied)


@policy.command("delete")
@name_option
@click.argument("key", metavar="NS/NAME")
def policy_delete(name: str, key: str) -> None:
    """Remove a policy and its OVN objects."""
    namespace, policy_name = parse_key(key)
    with _lab_client(name) as client:
        result = _call(lambda: client.delete_policy(namespace, policy_name))
    console.print(escape(result["detail"]))


@policy.command("list")
@name_option
@click.option("-n", "--namespace", default=None, help="Only policies of this namespace.")
@output_option()
def policy_list(name: str, namespace: str | None, output: str) -> None:
    """Policies with the pods they select."""
    with _lab_client(name) as client:
        items = _call(lambda: client.list_policies(namespace))
    if not emit_data(items, output):
        print_policies(items)


@click.group()
def namespace() -> None:
    """Namespaces of the lab's pods (their labels: what namespaceSelectors match)."""


@namespace.command("label")
@name_option
@click.argument("namespace_name", metavar="NS")
@click.argument("labels", metavar="K=V[,K=V]")
def namespace_label(name: str, namespace_name: str, labels: str) -> None:
    """Set NS's labels (replacing them)."""
    try:
        parsed = parse_labels(labels)
    except ValueError as exc:
        fail(escape(str(exc)))
    with _lab_client(name) as client:
        result = _call(lambda: client.label_namespace(namespace_name, parsed))
    console.print(escape(f"namespace {namespace_name}: {result['labels']}"))
