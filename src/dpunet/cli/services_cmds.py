"""`dpunet services list|add|del`: Services of the controller (OVN load balancers)."""

from __future__ import annotations

import re
from typing import Any

import click
from rich.markup import escape

from dpunet.cli.controller_cmds import _call, _client, _client_options
from dpunet.cli.output import console, emit_data, fail, output_option, table

_PORT_RE = re.compile(
    r"^(?:(?P<name>[a-z0-9-]+)=)?(?P<port>\d+)(?::(?P<target>\d+))?"
    r"(?:/(?P<protocol>tcp|udp|sctp))?(?:@(?P<node_port>\d+))?$",
    re.IGNORECASE,
)
PORT_HELP = (
    "[NAME=]PORT[:TARGET][/tcp|udp|sctp][@NODEPORT], e.g. 80, http=80:8080, 53/udp, 80@30080"
)


def parse_port(text: str) -> dict[str, Any]:
    """One `--port` value as a service port of the API; ValueError when malformed."""
    m = _PORT_RE.match(text.strip())
    if m is None:
        raise ValueError(f"port {text!r} is not {PORT_HELP.split(',')[0]}")
    port: dict[str, Any] = {"port": int(m["port"])}
    if m["name"]:
        port["name"] = m["name"].lower()
    if m["protocol"]:
        port["protocol"] = m["protocol"].upper()
    if m["target"]:
        port["targetPort"] = int(m["target"])
    if m["node_port"]:
        port["nodePort"] = int(m["node_port"])
    return port


def build_spec(
    ports: tuple[str, ...],
    node_port: bool,
    cluster_ip: str | None,
    endpoints: str | None,
    pods: str | None,
    selector: str | None,
    affinity_timeout: int | None,
    client_ip: bool,
) -> dict[str, Any]:
    """The PUT body of `services add`; ValueError on malformed options."""
    parsed = [parse_port(p) for p in ports]
    spec: dict[str, Any] = {"ports": parsed}
    if node_port or any("nodePort" in p for p in parsed):
        spec["type"] = "NodePort"
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    if endpoints is not None:
        spec["endpoints"] = [e for e in endpoints.split(",") if e]
    if pods is not None:
        spec["pods"] = [p for p in pods.split(",") if p]
    if selector is not None:
        pairs = [item.split("=", 1) for item in selector.split(",") if item]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError(f"selector {selector!r} is not KEY=VALUE[,KEY=VALUE...]")
        spec["selector"] = dict(pairs)
    if client_ip or affinity_timeout is not None:
        spec["sessionAffinity"] = "ClientIP"
    if affinity_timeout is not None:
        spec["affinityTimeout"] = affinity_timeout
    return spec


def _ports_text(svc: dict[str, Any]) -> str:
    out = []
    for p in svc["ports"]:
        text = f"{p['port']}/{p['protocol']}"
        if p["targetPort"] != p["port"]:
            text += f"->{p['targetPort']}"
        if p.get("nodePort"):
            text += f" (node {p['nodePort']})"
        out.append(f"{p['name']}={text}" if p.get("name") else text)
    return ", ".join(out)


def _backends_from(svc: dict[str, Any]) -> str:
    if svc.get("pods") is not None:
        return "pods " + ",".join(svc["pods"])
    if svc.get("selector") is not None:
        return "selector " + ",".join(f"{k}={v}" for k, v in svc["selector"].items())
    if svc.get("endpoints") is not None:
        return "endpoints"
    return "-"


_COLUMNS = ("namespace", "name", "type", "cluster ip", "ports", "from", "backends", "affinity")


def service_row(svc: dict[str, Any]) -> list[Any]:
    """One table row of a service."""
    affinity = (
        f"ClientIP {svc['affinityTimeout']}s" if svc["sessionAffinity"] == "ClientIP" else "-"
    )
    return [
        svc["namespace"],
        svc["name"],
        svc["type"],
        svc["clusterIP"],
        _ports_text(svc),
        _backends_from(svc),
        ",".join(svc["backends"]) or "[red]none (refused)[/]",
        affinity,
    ]


def print_services(items: list[dict[str, Any]]) -> None:
    """Services as a table."""
    console.print(table("services", _COLUMNS, [service_row(s) for s in items]))


@click.group()
def services() -> None:
    """Services: cluster IPs and node ports load-balanced by OVN (no kube-proxy)."""


@services.command("list")
@click.option("-n", "--namespace", default=None, help="Only services of this namespace.")
@_client_options
@output_option()
def list_services(
    namespace: str | None, url: str, token: str | None, token_file: str | None, output: str
) -> None:
    """Services with their cluster IP, ports and current backends."""
    with _client(url, token, token_file) as client:
        items = _call(lambda: client.list_services(namespace))
    if not emit_data(items, output):
        print_services(items)


@services.command("add")
@click.argument("name")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("--port", "ports", multiple=True, required=True, help=PORT_HELP + " (repeatable).")
@click.option(
    "--node-port", is_flag=True, help="Type NodePort (node ports allocated if not given)."
)
@click.option("--cluster-ip", default=None, help="Cluster IP (default: allocated).")
@click.option("--endpoints", default=None, help="Backend addresses, comma-separated.")
@click.option("--pods", default=None, help="Backend pods of the namespace, comma-separated.")
@click.option("--selector", default=None, help="Backend ports by label: KEY=VALUE[,...].")
@click.option("--client-ip-affinity", "client_ip", is_flag=True, help="Session affinity ClientIP.")
@click.option("--affinity-timeout", type=int, default=None, help="ClientIP affinity seconds.")
@_client_options
@output_option()
def add_service(
    name: str,
    namespace: str,
    ports: tuple[str, ...],
    node_port: bool,
    cluster_ip: str | None,
    endpoints: str | None,
    pods: str | None,
    selector: str | None,
    client_ip: bool,
    affinity_timeout: int | None,
    url: str,
    token: str | None,
    token_file: str | None,
    output: str,
) -> None:
    """Create or update service NAME (admin token). Without backends it refuses connections."""
    try:
        spec = build_spec(
            ports, node_port, cluster_ip, endpoints, pods, selector, affinity_timeout, client_ip
        )
    except ValueError as exc:
        fail(escape(str(exc)))
    with _client(url, token, token_file) as client:
        svc = _call(lambda: client.put_service(namespace, name, spec))
    if not emit_data(svc, output):
        print_services([svc])


@services.command("del")
@click.argument("name")
@click.option("-n", "--namespace", default="default", show_default=True)
@_client_options
def delete_service(
    name: str, namespace: str, url: str, token: str | None, token_file: str | None
) -> None:
    """Remove service NAME and its load balancers (admin token)."""
    with _client(url, token, token_file) as client:
        result = _call(lambda: client.delete_service(namespace, name))
    console.print(escape(result["detail"]))
