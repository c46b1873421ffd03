"""`dpunet lab service add|del|list`: services over the lab's pods (see docs/services.md)."""

from __future__ import annotations

import click

from dpunet.cli.output import console, emit_data, fail, output_option
from dpunet.cli.services_cmds import print_services
from dpunet.lab.lab import load_plan
from dpunet.lab.runner import LabError
from dpunet.lab.svc import PROTOCOLS, add_service, del_service, list_services
from dpunet.lab.topology import DEFAULT_LAB_NAME

name_option = click.option("--name", default=DEFAULT_LAB_NAME, show_default=True, help="Lab name.")


@click.group()
def service() -> None:
    """Services (OVN load balancers) over the lab's pods; each backend answers with its name."""


@service.command("add")
@name_option
@click.argument("service_name")
@click.option("--port", type=int, required=True, help="Port on the cluster IP.")
@click.option("--pods", "backends", required=True, help="Backend pods, comma-separated.")
@click.option("--target-port", type=int, default=None, help="Port in the pods (default: --port).")
@click.option("--protocol", type=click.Choice(PROTOCOLS), default="tcp", show_default=True)
@click.option(
    "--node-port", default=None, help="Also a NodePort on every gateway router: a port or 'auto'."
)
@click.option("--client-ip-affinity", "affinity", is_flag=True, help="Session affinity ClientIP.")
@output_option()
def service_add(
    name: str,
    service_name: str,
    port: int,
    backends: str,
    target_port: int | None,
    protocol: str,
    node_port: str | None,
    affinity: bool,
    output: str,
) -> None:
    """Create SERVICE_NAME (namespace default) over --pods, with a responder in each."""
    if node_port is not None and node_port != "auto" and not node_port.isdigit():
        fail(f"--node-port must be a port number or 'auto', not {node_port!r}")
    try:
        svc = add_service(
            load_plan(name),
            service_name,
            port,
            [b for b in backends.split(",") if b],
            protocol=protocol,
            target_port=target_port,
            node_port=node_port,
            affinity=affinity,
        )
    except LabError as exc:
        fail(str(exc))
    if not emit_data(svc, output):
        print_services([svc])


@service.command("del")
@name_option
@click.argument("service_name")
def service_del(name: str, service_name: str) -> None:
    """Remove SERVICE_NAME and its responders."""
    try:
        detail = del_service(load_plan(name), service_name)
    except LabError as exc:
        fail(str(exc))
    console.print(detail)


@service.command("list")
@name_option
@output_option()
def service_list(name: str, output: str) -> None:
    """The lab's services with cluster IP, ports and current backends."""
    try:
        items = list_services(load_plan(name))
    except LabError as exc:
        fail(str(exc))
    if not emit_data(items, output):
        print_services(items)
