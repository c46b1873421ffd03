"""The controller's NB write queue against a real ovsdb-server: concurrent coalescable
writes share transactions, each caller gets its own result or error (a failing command,
refused by ovsdbapp or by the server, fails alone), and writes keep their order."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

import pytest
from controller_harness import OvnCentral

from dpunet.controller.config import ControllerConfig
from dpunet.controller.errors import Conflict
from dpunet.controller.nb import NbClient
from dpunet.controller.nbcommands import DeleteScope, EnsureDesired, NodePorts, Snapshot
from dpunet.controller.topology import NodeRecord, NodeRole, node_desired

pytestmark = pytest.mark.lab

SWITCH = "writes-sw"


@pytest.fixture(scope="module")
def ovn() -> Iterator[OvnCentral]:
    central = OvnCentral(northd=False).start()
    central.nbctl("ls-add", SWITCH)
    yield central
    central.close()


def _with_client(ovn: OvnCentral, body: Callable[[NbClient], Awaitable[Any]]) -> Any:
    """Run `body(client)` with a connected NbClient holding the NB lock."""

    async def main() -> Any:
        client = NbClient(ovn.nb_remotes, timeout=10.0)
        await client.connect()
        try:
            return await body(client)
        finally:
            await client.close()

    return asyncio.run(main())


def _add(switch: str, name: str, **columns: Any) -> Callable[[Any], Any]:
    """The write command that adds LSP `name` to `switch`."""
    return lambda api: api.lsp_add(switch, name, **columns)


def _ports(ovn: OvnCentral) -> set[str]:
    return set(ovn.nbctl("--bare", "--columns=name", "list", "Logical_Switch_Port").split())


def test_concurrent_writes_share_a_transaction_and_each_gets_its_result(
    ovn: OvnCentral,
) -> None:
    names = [f"share-{i}" for i in range(40)]

    async def body(nb: NbClient) -> tuple[list[Any], int, int]:
        results = await asyncio.gather(*(nb.write(_add(SWITCH, n), coalesce=True) for n in names))
        return results, nb.writes.transactions, nb.writes.writes_sent

    results, transactions, writes = _with_client(ovn, body)
    assert [r.name for r in results] == names  # each caller got its own row
    assert set(names) <= _ports(ovn)
    assert transactions <= 2, f"40 concurrent writes took {transactions} transactions"
    assert writes == 40


def test_a_failing_command_fails_alone(ovn: OvnCentral) -> None:
    ovn.nbctl("create", "Load_Balancer_Group", "name=taken")
    good = [f"alone-{i}" for i in range(6)]

    async def body(nb: NbClient) -> list[Any]:
        writes = [nb.write(_add(SWITCH, n), coalesce=True) for n in good]
        writes.insert(2, nb.write(_add("no-such-switch", "x"), coalesce=True))
        # refused by the server, not by ovsdbapp: group names are a unique index
        writes.insert(
            5,
            nb.write(lambda api: api.db_create("Load_Balancer_Group", name="taken"), coalesce=True),
        )
        return await asyncio.gather(*writes, return_exceptions=True)

    results = _with_client(ovn, body)
    missing_switch, duplicate = results[2], results[5]
    rows = results[:2] + results[3:5] + results[6:]
    assert [r.name for r in rows] == good
    assert isinstance(missing_switch, Exception) and "no-such-switch" in str(missing_switch)
    assert isinstance(duplicate, Conflict), repr(duplicate)
    ports = _ports(ovn)
    assert set(good) <= ports and "x" not in ports
    out = ovn.nbctl("--bare", "--columns=_uuid", "find", "Load_Balancer_Group", "name=taken")
    assert len(out.split()) == 1


def test_writes_keep_their_order_and_plain_writes_run_alone(ovn: OvnCentral) -> None:
    async def body(nb: NbClient) -> tuple[list[Any], int]:
        before = nb.writes.transactions
        results = await asyncio.gather(
            nb.write(_add(SWITCH, "order-a"), coalesce=True),
            nb.write(_add(SWITCH, "order-b"), coalesce=True),
            nb.write(lambda api: api.lsp_del("order-a")),
            nb.write(_add(SWITCH, "order-a", external_ids={"round": "2"}), coalesce=True),
        )
        return list(results), nb.writes.transactions - before

    results, transactions = _with_client(ovn, body)
    first, second = results[0], results[3]
    assert first.uuid != second.uuid  # created, deleted, created again: in that order
    assert transactions == 3  # [a, b] [del a] [a again]
    ids = ovn.nbctl(
        "--bare", "--columns=external_ids", "find", "Logical_Switch_Port", "name=order-a"
    )
    assert ids.strip() == "round=2"
    assert {"order-a", "order-b"} <= _ports(ovn)


def _pod_lsp_args(
    name: str, ip: str, uid: str, switch: str = SWITCH, node: str = SWITCH
) -> list[str]:
    mac = "0a:58:" + ":".join(f"{int(b):02x}" for b in ip.split("."))
    ids = {
        "dpunet:owner": "dpunet",
        "dpunet:kind": "pod",
        "dpunet:node": node,
        "dpunet:namespace": "ns",
        "dpunet:pod": name,
        "dpunet:uid": uid,
        "dpunet:sandbox": "s1",
    }
    return [
        "--",
        "lsp-add",
        switch,
        name,
        "--",
        "lsp-set-addresses",
        name,
        f"{mac} {ip}",
        "--",
        "set",
        "Logical_Switch_Port",
        name,
        *(f'external_ids:"{k}"="{v}"' for k, v in ids.items()),
    ]


def test_snapshot_from_kept_port_rows_matches_a_full_parse(ovn: OvnCentral) -> None:
    ovn.nbctl(
        *_pod_lsp_args("kept-a", "10.9.0.3", "u1"), *_pod_lsp_args("kept-b", "10.9.0.4", "u2")
    )

    async def body(nb: NbClient) -> tuple[Any, Any, Any, Any]:
        first = await nb.snapshot()  # parsed on demand, kept from now on
        # changed, removed and created while the client watches
        await asyncio.to_thread(
            ovn.nbctl, "set", "Logical_Switch_Port", "kept-a", 'external_ids:"dpunet:uid"=u9'
        )
        await asyncio.to_thread(ovn.nbctl, "lsp-del", "kept-b")
        await asyncio.to_thread(ovn.nbctl, *_pod_lsp_args("kept-c", "10.9.0.5", "u3"))
        for _ in range(200):  # until the client has seen all three changes
            kept = await nb.snapshot()
            now = {r.name: r.uid for r in kept.ports}
            if now.get("kept-a") == "u9" and "kept-b" not in now and "kept-c" in now:
                break
            await asyncio.sleep(0.05)
        parsed = await nb.read(lambda api: Snapshot(api))
        return first, kept, parsed, {r.name: r.uid for r in kept.ports}

    first, kept, parsed, uids = _with_client(ovn, body)
    assert {r.name for r in first.ports} >= {"kept-a", "kept-b"}
    assert sorted(kept.ports, key=lambda r: r.name) == sorted(parsed.ports, key=lambda r: r.name)
    assert uids["kept-a"] == "u9" and "kept-b" not in uids and uids["kept-c"] == "u3"


def test_a_nodes_ports_are_the_pod_ports_on_its_switch_that_name_it(ovn: OvnCentral) -> None:
    ovn.nbctl("ls-add", "np-a", "--", "ls-add", "np-b")
    ovn.nbctl(
        *_pod_lsp_args("np-1", "10.9.1.3", "u1", switch="np-a", node="np-a"),
        *_pod_lsp_args("np-2", "10.9.1.4", "u2", switch="np-a", node="np-a"),
        *_pod_lsp_args("np-other", "10.9.1.5", "u3", switch="np-a", node="np-b"),
        *_pod_lsp_args("np-stray", "10.9.1.6", "u4", switch="np-b", node="np-a"),
        "--", "lsp-add", "np-a", "np-plain",
    )  # fmt: skip

    async def body(nb: NbClient) -> tuple[list[Any], list[Any], list[Any]]:
        a = await nb.read(lambda api: NodePorts(api, "np-a", nb.port_rows))
        await asyncio.to_thread(
            ovn.nbctl, "set", "Logical_Switch_Port", "np-2", 'external_ids:"dpunet:uid"=u9'
        )
        for _ in range(200):  # until the client has seen the change
            again = await nb.read(lambda api: NodePorts(api, "np-a", nb.port_rows))
            if {r.name: r.uid for r in again}.get("np-2") == "u9":
                break
            await asyncio.sleep(0.05)
        absent = await nb.read(lambda api: NodePorts(api, "np-none", nb.port_rows))
        return a, again, absent

    first, again, absent = _with_client(ovn, body)
    assert sorted((r.name, r.switch) for r in first) == [("np-1", "np-a"), ("np-2", "np-a")]
    assert {r.name: r.uid for r in again} == {"np-1": "u1", "np-2": "u9"}
    assert absent == []


def test_topology_pass_with_kept_rows_leaves_pod_ports_and_prunes_stale_ones(
    ovn: OvnCentral,
) -> None:
    cfg = ControllerConfig()
    node = NodeRecord(
        name="ens", role=NodeRole.FULL, chassis="ch-ens",
        node_ip=IPv4Interface("192.0.2.50/24"), next_hop=IPv4Address("192.0.2.254"),
        subnet=IPv4Network("10.233.70.0/24"), join_ip=IPv4Address("100.64.0.50"),
        gateway_mac="0a:58:c0:00:02:32",
    )  # fmt: skip
    stale = {"dpunet:owner": "dpunet", "dpunet:kind": "mgmt-port", "dpunet:node": "ens"}

    async def body(nb: NbClient) -> tuple[int, int]:
        await nb.write(lambda api: EnsureDesired(api, node_desired(cfg, node)))
        await asyncio.to_thread(
            ovn.nbctl,
            *_pod_lsp_args("ens-pod1", "10.233.70.3", "u1", switch="ens", node="ens"),
            *_pod_lsp_args("ens-pod2", "10.233.70.4", "u2", switch="ens", node="ens"),
            "--", "lsp-add", "ens", "ens-stale",
            "--", "set", "Logical_Switch_Port", "ens-stale",
            *(f'external_ids:"{k}"="{v}"' for k, v in stale.items()),
        )  # fmt: skip
        for _ in range(200):  # until the client has seen the three ports
            snap = await nb.snapshot()
            if len([p for p in snap.ports if p.switch == "ens"]) == 2:
                break
            await asyncio.sleep(0.05)
        rows = nb.port_rows
        pruned = await nb.write(
            lambda api: EnsureDesired(api, node_desired(cfg, node), port_rows=rows)
        )
        again = await nb.write(
            lambda api: EnsureDesired(api, node_desired(cfg, node), port_rows=rows)
        )
        return pruned, again

    pruned, again = _with_client(ovn, body)
    assert (pruned, again) == (1, 0)
    ports = set(ovn.nbctl("--bare", "--columns=ports", "list", "Logical_Switch", "ens").split())
    names = {
        ovn.nbctl("--bare", "--columns=name", "list", "Logical_Switch_Port", p).strip()
        for p in ports
    }
    assert {"ens-pod1", "ens-pod2", "k8s-ens"} <= names
    assert "ens-stale" not in names


def test_removing_a_node_with_kept_rows_takes_its_ports_everywhere_and_nothing_else(
    ovn: OvnCentral,
) -> None:
    cfg = ControllerConfig()
    node = NodeRecord(
        name="dsn", role=NodeRole.FULL, chassis="ch-dsn",
        node_ip=IPv4Interface("192.0.2.60/24"), next_hop=IPv4Address("192.0.2.254"),
        subnet=IPv4Network("10.233.71.0/24"), join_ip=IPv4Address("100.64.0.60"),
        gateway_mac="0a:58:c0:00:02:3c",
    )  # fmt: skip
    ovn.nbctl("ls-add", "ds-other")

    async def body(nb: NbClient) -> int:
        await nb.write(lambda api: EnsureDesired(api, node_desired(cfg, node)))
        await asyncio.to_thread(
            ovn.nbctl,
            *_pod_lsp_args("dsn-pod", "10.233.71.3", "u1", switch="dsn", node="dsn"),
            *_pod_lsp_args("dsn-stray", "10.233.71.4", "u2", switch="ds-other", node="dsn"),
            *_pod_lsp_args("ds-keep", "10.233.72.3", "u3", switch="ds-other", node="ds-x"),
        )
        for _ in range(200):  # until the client has seen the three ports
            if len((await nb.snapshot()).ports) >= 3:
                break
            await asyncio.sleep(0.05)
        rows = nb.port_rows
        changes: int = await nb.write(lambda api: DeleteScope(api, "dsn", port_rows=rows))
        return changes

    assert _with_client(ovn, body) > 0
    names = set(ovn.nbctl("--bare", "--columns=name", "list", "Logical_Switch_Port").split())
    assert "ds-keep" in names
    assert not {"dsn-pod", "dsn-stray", "k8s-dsn", "jtor-GR_dsn"} & names
    switches = set(ovn.nbctl("--bare", "--columns=name", "list", "Logical_Switch").split())
    assert "dsn" not in switches and "ds-other" in switches
