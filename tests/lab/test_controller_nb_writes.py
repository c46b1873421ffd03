"""The controller's NB write queue against a real ovsdb-server: concurrent coalescable
writes share transactions, each caller gets its own result or error (a failing command,
refused by ovsdbapp or by the server, fails alone), and writes keep their order."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from controller_harness import OvnCentral

from dpunet.controller.errors import Conflict
from dpunet.controller.nb import NbClient
from dpunet.controller.nbcommands import Snapshot

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

    async def body(nb: NbClient) -> tuple[list[Any], int]:
        results = await asyncio.gather(*(nb.write(_add(SWITCH, n), coalesce=True) for n in names))
        return results, nb.writes.transactions

    results, transactions = _with_client(ovn, body)
    assert [r.name for r in results] == names  # each caller got its own row
    assert set(names) <= _ports(ovn)
    assert transactions <= 2, f"40 concurrent writes took {transactions} transactions"


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


def _pod_lsp_args(name: str, ip: str, uid: str) -> list[str]:
    mac = "0a:58:" + ":".join(f"{int(b):02x}" for b in ip.split("."))
    ids = {
        "dpunet:owner": "dpunet",
        "dpunet:kind": "pod",
        "dpunet:node": SWITCH,
        "dpunet:namespace": "ns",
        "dpunet:pod": name,
        "dpunet:uid": uid,
        "dpunet:sandbox": "s1",
    }
    return [
        "--",
        "lsp-add",
        SWITCH,
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
