"""`dpunet policies apply|delete|list|label`: NetworkPolicies of the controller (OVN ACLs)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import click
import yaml
from rich.markup import escape

from dpunet.cli.controller_cmds import _call, _client, _client_options
from dpunet.cli.output import console, emit_data, err_console, fail, output_option, table
from dpunet.contract.client import ClientError, ControllerClient

APPLY_CONCURRENCY = 16  # PUTs in flight at once: the controller admits them in shared passes


def read_manifests(path: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(namespace, name, document) of every NetworkPolicy in a YAML file (`-`: stdin);
    ValueError for a document without kind NetworkPolicy or metadata.name. The namespace
    defaults to `default`, as kubectl's does."""
    with click.open_file(path) as stream:
        text = stream.read()
    out = []
    for i, doc in enumerate(d for d in yaml.safe_load_all(text) if d is not None):
        if not isinstance(doc, dict) or doc.get("kind") != "NetworkPolicy":
            raise ValueError(f"document {i + 1} of {path} is not a NetworkPolicy")
        meta = doc.get("metadata") or {}
        if not meta.get("name"):
            raise ValueError(f"document {i + 1} of {path} has no metadata.name")
        out.append((str(meta.get("namespace") or "default"), str(meta["name"]), doc))
    return out


def parse_labels(text: str) -> dict[str, str]:
    """`k=v[,k=v]` as a dict; ValueError when malformed."""
    pairs = [item.split("=", 1) for item in text.split(",") if item]
    if any(len(pair) != 2 for pair in pairs):
        raise ValueError(f"labels {text!r} are not KEY=VALUE[,KEY=VALUE...]")
    return dict(pairs)


def parse_key(text: str) -> tuple[str, str]:
    """`NS/NAME` (or `NAME`: namespace `default`)."""
    namespace, _, name = text.rpartition("/")
    return namespace or "default", name


def apply_manifests(
    client: ControllerClient, docs: list[tuple[str, str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """PUT every document at once (up to APPLY_CONCURRENCY in flight), so the controller
    admits them in a few shared passes instead of one pass each. Each document is answered
    on its own: the applied ones are returned in document order; each refused one is named
    with the controller's reason, and then (the others applied) this exits 1 naming them."""
    with ThreadPoolExecutor(max(1, min(len(docs), APPLY_CONCURRENCY))) as pool:
        futures = [pool.submit(client.put_policy, ns, name, doc) for ns, name, doc in docs]
    applied, refused = [], []
    for (namespace, name, _), future in zip(docs, futures, strict=True):
        try:
            applied.append(future.result().model_dump(mode="json", by_alias=True))
        except ClientError as exc:
            refused.append(f"{namespace}/{name}: {exc}")
    if refused:
        for line in refused:
            err_console.print(f"[bold red]error:[/] {escape(line)}")
        names = ", ".join(f"{p['namespace']}/{p['name']}" for p in applied) or "none"
        fail(escape(f"{len(refused)} of {len(docs)} policies refused; applied: {names}"))
    return applied


_COLUMNS = ("namespace", "name", "types", "port group", "pods", "acls")


def print_policies(items: list[dict[str, Any]]) -> None:
    """Policies as a table."""
    rows = []
    for p in items:
        spec = p["spec"]
        types = spec.get("policyTypes") or ["Ingress"] + (["Egress"] if spec.get("egress") else [])
        rows.append([p["namespace"], p["name"], ",".join(types), p["port_group"],
                     ",".join(p["pods"]) or "-", p["acls"]])  # fmt: skip
    console.print(table("network policies", _COLUMNS, rows))


@click.group()
def policies() -> None:
    """NetworkPolicies, enforced by OVN ACLs on the DPU."""


@policies.command("list")
@click.option("-n", "--namespace", default=None, help="Only policies of this namespace.")
@_client_options
@output_option()
def list_policies(
    namespace: str | None, url: str, token: str | None, token_file: str | None, output: str
) -> None:
    """Policies with the pods they select."""
    with _client(url, token, token_file) as client:
        items = _call(lambda: client.list_policies(namespace))
    if not emit_data(items, output):
        print_policies(items)


@policies.command("apply")
@click.option("-f", "--filename", "path", required=True, help="YAML file of NetworkPolicies.")
@_client_options
@output_option()
def apply_policies(
    path: str, url: str, token: str | None, token_file: str | None, output: str
) -> None:
    """Create or replace every NetworkPolicy in a YAML file (admin token), all at once;
    any refused is named and the command exits 1, the others applied."""
    try:
        docs = read_manifests(path)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        fail(escape(str(exc)))
    with _client(url, token, token_file) as client:
        applied = apply_manifests(client, docs)
    if not emit_data(applied, output):
        print_policies(applied)


@policies.command("delete")
@click.argument("key", metavar="NS/NAME")
@_client_options
def delete_policy(key: str, url: str, token: str | None, token_file: str | None) -> None:
    """Remove a policy and its OVN objects (admin token)."""
    namespace, name = parse_key(key)
    with _client(url, token, token_file) as client:
        result = _call(lambda: client.delete_policy(namespace, name))
    console.print(escape(result["detail"]))


@policies.command("label")
@click.argument("namespace")
@click.argument("labels", metavar="K=V[,K=V]")
@_client_options
def label_namespace(
    namespace: str, labels: str, url: str, token: str | None, token_file: str | None
) -> None:
    """Set a namespace's labels, what namespaceSelectors match (admin token)."""
    try:
        parsed = parse_labels(labels)
    except ValueError as exc:
        fail(escape(str(exc)))
    with _client(url, token, token_file) as client:
        result = _call(lambda: client.label_namespace(namespace, parsed))
    console.print(escape(f"namespace {namespace}: {result['labels']}"))
