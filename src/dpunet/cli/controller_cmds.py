"""`dpunet controller run`, `dpunet nodes ...`, `dpunet ports ...` (the controller and its API)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from dpunet.cli.output import console, emit_data, fail, output_option, table
from dpunet.contract.client import (
    DEFAULT_URL,
    ClientError,
    ControllerClient,
    read_token_file,
    tls_context,
)


# ------------------------------------------------------------------ controller
@click.group()
def controller() -> None:
    """The dpunet controller: OVN Northbound topology, IPAM and the port API."""


@controller.command("run")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="YAML/JSON settings file (see docs/controller.md).",
)
@click.option("--listen", multiple=True, help="HOST:PORT or unix:PATH (repeatable).")
@click.option("--nb-remote", "nb_remotes", multiple=True, help="OVN NB remote (repeatable).")
@click.option("--sb-remote", "sb_remotes", multiple=True, help="OVN SB remote (repeatable).")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--cluster-cidr", default=None, help="Pod network (default 10.233.64.0/18).")
@click.option("--node-prefix", type=int, default=None, help="Node subnet size (default 24).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
def run(
    config_path: Path | None,
    listen: tuple[str, ...],
    nb_remotes: tuple[str, ...],
    sb_remotes: tuple[str, ...],
    token_file: Path | None,
    cluster_cidr: str | None,
    node_prefix: int | None,
    log_level: str | None,
) -> None:
    """Run the controller (file < DPUNET_* env < flags)."""
    from dpunet import logs
    from dpunet.controller.auth import TokenFileError
    from dpunet.controller.config import ControllerConfig
    from dpunet.controller.daemon import serve
    from dpunet.settings import SettingsError, load_settings
    from dpunet.tls import TlsError

    overrides: dict[str, Any] = {
        "listen": list(listen) or None,
        "nb_remotes": list(nb_remotes) or None,
        "sb_remotes": list(sb_remotes) or None,
        "token_file": token_file,
        "cluster_cidr": cluster_cidr,
        "node_prefix": node_prefix,
        "log_level": log_level,
    }
    try:
        cfg = load_settings(ControllerConfig, config_path, os.environ, overrides)
        logs.configure(cfg.log_format, cfg.log_level)
        asyncio.run(serve(cfg))
    except (SettingsError, TokenFileError, TlsError) as exc:
        fail(escape(str(exc)))
    except OSError as exc:
        fail(escape(f"cannot listen: {exc}"))
    except KeyboardInterrupt:
        pass


# ------------------------------------------------------------------ API clients
def _remember_ca(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    ctx.meta["dpunet.ca_cert"] = value


def _client_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--controller",
            "url",
            envvar="DPUNET_CONTROLLER_URL",
            default=DEFAULT_URL,
            show_default=True,
            help="Controller URL: https://HOST:PORT, unix:PATH or http://HOST:PORT "
            "(env DPUNET_CONTROLLER_URL).",
        ),
        click.option(
            "--ca-cert",
            envvar="DPUNET_CA_CERT",
            type=click.Path(dir_okay=False, exists=True),
            default=None,
            expose_value=False,
            callback=_remember_ca,
            help="CA the controller's https certificate must chain to (env DPUNET_CA_CERT; "
            "default: the system's CAs).",
        ),
        click.option("--token", envvar="DPUNET_TOKEN", default=None, help="Bearer token."),
        click.option(
            "--token-file",
            envvar="DPUNET_TOKEN_FILE",
            type=click.Path(dir_okay=False, exists=True),
            default=None,
            help="File whose first word is the token (env DPUNET_TOKEN_FILE).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _client(url: str, token: str | None, token_file: str | None) -> ControllerClient:
    if token is None and token_file is not None:
        try:
            token = read_token_file(token_file)
        except (OSError, ClientError) as exc:
            fail(escape(str(exc)))
    ca_cert = click.get_current_context().meta.get("dpunet.ca_cert")
    try:
        tls = tls_context(ca_cert) if ca_cert else None
    except ClientError as exc:
        fail(escape(str(exc)))
    return ControllerClient(url, token, tls=tls)


def _call(action: Callable[[], Any]) -> Any:
    """The client's answer in its JSON form (wire names), for output; a clear failure."""
    try:
        answer = action()
    except ClientError as exc:
        fail(escape(str(exc)))
    if isinstance(answer, list):
        return [item.model_dump(mode="json", by_alias=True) for item in answer]
    return answer.model_dump(mode="json", by_alias=True)


# ------------------------------------------------------------------ nodes
@click.group()
def nodes() -> None:
    """Nodes registered with the controller."""


_NODE_COLUMNS = ("name", "role", "chassis", "node_ip", "subnet", "ports", "free_ips")


@nodes.command("list")
@_client_options
@output_option()
def list_nodes(url: str, token: str | None, token_file: str | None, output: str) -> None:
    """Registered nodes with their subnets and address use."""
    with _client(url, token, token_file) as client:
        items = _call(client.list_nodes)
    if not emit_data(items, output):
        rows = [[n[c] for c in _NODE_COLUMNS] for n in items]
        console.print(table("nodes", _NODE_COLUMNS, rows))


@nodes.command("show")
@click.argument("name")
@_client_options
@output_option(default="yaml")
def show_node(name: str, url: str, token: str | None, token_file: str | None, output: str) -> None:
    """One node."""
    with _client(url, token, token_file) as client:
        node = _call(lambda: client.get_node(name))
    if not emit_data(node, output):
        console.print(table(f"node {name}", ("field", "value"), list(node.items())))


@nodes.command("register")
@click.argument("name")
@click.option("--role", type=click.Choice(["dpu-host", "full"]), required=True)
@click.option("--chassis", required=True, help="OVN chassis (for a dpu-host: its DPU's).")
@click.option("--node-ip", required=True, help="Underlay address with prefix, e.g. 192.0.2.101/24.")
@click.option("--next-hop", required=True, help="Gateway next hop on the underlay.")
@click.option("--gateway-mac", default=None)
@click.option("--mgmt-pf-mac", default=None, help="dpu-host: PF MAC of the management VF.")
@click.option("--mgmt-vf-num", type=int, default=None, help="dpu-host: management VF index.")
@_client_options
@output_option(default="yaml")
def register_node(
    name: str,
    role: str,
    chassis: str,
    node_ip: str,
    next_hop: str,
    gateway_mac: str | None,
    mgmt_pf_mac: str | None,
    mgmt_vf_num: int | None,
    url: str,
    token: str | None,
    token_file: str | None,
    output: str,
) -> None:
    """Register (or update) a node (admin token)."""
    spec: dict[str, Any] = {
        "role": role,
        "chassis": chassis,
        "node_ip": node_ip,
        "next_hop": next_hop,
    }
    for key, value in (
        ("gateway_mac", gateway_mac),
        ("mgmt_pf_mac", mgmt_pf_mac),
        ("mgmt_vf_num", mgmt_vf_num),
    ):
        if value is not None:
            spec[key] = value
    with _client(url, token, token_file) as client:
        node = _call(lambda: client.put_node(name, spec))
    if not emit_data(node, output):
        console.print(table(f"node {name}", ("field", "value"), list(node.items())))


@nodes.command("delete")
@click.argument("name")
@_client_options
def delete_node(name: str, url: str, token: str | None, token_file: str | None) -> None:
    """Remove a node, its topology and its ports (admin token)."""
    with _client(url, token, token_file) as client:
        result = _call(lambda: client.delete_node(name))
    console.print(escape(result["detail"]))


# ------------------------------------------------------------------ ports
@click.group()
def ports() -> None:
    """Pod ports allocated by the controller."""


_PORT_COLUMNS = ("namespace", "name", "node", "ips", "mac", "vf", "up", "sandbox")


@ports.command("list")
@click.option("--node", default=None, help="Only ports of this node.")
@click.option("--namespace", default=None, help="Only ports of this namespace.")
@_client_options
@output_option()
def list_ports(
    node: str | None,
    namespace: str | None,
    url: str,
    token: str | None,
    token_file: str | None,
    output: str,
) -> None:
    """Pod ports with their addresses."""
    with _client(url, token, token_file) as client:
        items = _call(lambda: client.list_ports(node, namespace))
    if not emit_data(items, output):
        rows = [_port_row(p) for p in items]
        console.print(table("ports", _PORT_COLUMNS, rows))


def _port_row(p: dict[str, Any]) -> list[Any]:
    vf = f"{p['pf_mac']}/{p['vf_num']}" if p["pf_mac"] else "-"
    ips = ",".join(p["ips"])
    return [p["namespace"], p["name"], p["node"], ips, p["mac"], vf, p["up"], p["sandbox"][:12]]
