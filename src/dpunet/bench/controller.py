"""`dpunet bench controller`: port PUT throughput and latency at N existing ports, against
the lab's controller and OVN NB, vs one raw ovsdbapp transaction per port.

`up` must arrive for a PUT to finish (the lab's controller runs with `wait_for_up`), so a
stand-in chassis answers for the ports: a Chassis row registered in SB (its Geneve
endpoint an unused underlay address) and a watcher that, for every Port_Binding
requesting it, sets `chassis` and `up` the way ovn-controller does once a port is
plugged; northd then sets `Logical_Switch_Port.up`. The ports live on bench nodes
registered with the controller as full nodes served by that chassis (one /24 each, as
the lab's controller hands out).

The existing ports are written straight into NB with the controller's own command and
format (`WritePort` of `pod_lsp`), hundreds per transaction, on "filler" nodes: through
the API the fill alone would take hours at these sizes. The controller adopts them at
its next periodic reload from NB, and the run waits for that (and for all of them to be
`up`) before measuring. The timed PUTs go to separate "measure" nodes. At each level a
sample of PUTs is timed, then two floors: the same number of LSPs written raw (one
transaction each, same columns) on a switch of their own, timed to commit and to NB
`Logical_Switch_Port.up`, and again to SB `Port_Binding.up` (one northd pass earlier,
what the controller's PUT now waits for first). The floor's switch is attached to
`ovn_cluster_router` as a node's switch is: every ovn-controller with a datapath on that
router computes flows for the ports of both, so both pay for them. Each timed phase
starts once OVN has caught up with everything before it (`settle`, as `ovn-nbctl
--wait=hv sync`), so none pays for the previous one's leftovers.

Everything the run made is removed at the end: the bench nodes (with their ports),
the floor's switch, its router port and the stand-in chassis.
"""

from __future__ import annotations

import math
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar

from ovsdbapp.exceptions import TimeoutException as OvsdbTimeout

from dpunet.bench import cpu
from dpunet.bench.metrics import http_get, parse_exposition, phase_means
from dpunet.bench.ovsdb import SB_TABLES, open_api
from dpunet.bench.stats import ratio, summarize
from dpunet.contract.api import PortRequest
from dpunet.contract.client import ClientError, ControllerClient
from dpunet.contract.lsp import lsp_options, requested_chassis
from dpunet.lab import services
from dpunet.lab.runner import LabError
from dpunet.lab.topology import LabPlan
from dpunet.ovsdb.api import NbApi, SbApi

STANDIN = "bench-standin"
STANDIN_ENCAP_IP = "192.0.2.250"
NODE_PREFIX = "bench-"
MEASURE_PREFIX = "bench-m"
FILL_PREFIX = "bench-f"
NAMESPACE = "bench"
PORTS_PER_NODE = 250  # a /24 per node minus gateway, management port and margin
FLOOR_SWITCH = "bench-floor"
FLOOR_ROUTER_PORT = "rtos-bench-floor"  # on ovn_cluster_router, as a node's `rtos-<node>`
FLOOR_SWITCH_PORT = "stor-bench-floor"
FLOOR_GATEWAY = "198.19.223.254/20"  # the floor's ports: 198.19.208.1 onwards
FLOOR_ROUTER_MAC = "0a:58:c6:13:df:fe"
BIND_BATCH = 200
FILL_BATCH = 250
ADOPT_TIMEOUT = 900.0
RETRY_DELAY = 0.5
CLIENT_TIMEOUT = 300.0
RETRY_LIMIT = 1800.0
SETTLE_TIMEOUT = 120.0
SETTLE_POLL = 0.05
T = TypeVar("T")


class StandIn:
    """A chassis that "binds" every Port_Binding requested on it (see module docstring)."""

    def __init__(self, sb: Any, idl: Any) -> None:
        self.sb, self.idl = sb, idl
        self.pending: queue.Queue[uuid.UUID | None] = queue.Queue()
        self.chassis_uuid: uuid.UUID | None = None
        self.bound = 0
        self._worker = threading.Thread(target=self._bind_loop, name="standin", daemon=True)

    def start(self) -> None:
        """Register the chassis, then bind what asks for it from now on."""
        self.sb.chassis_del(STANDIN, if_exists=True).execute(check_error=True)  # a leftover
        self.sb.chassis_add(STANDIN, ["geneve"], STANDIN_ENCAP_IP).execute(check_error=True)
        row = self.sb.lookup("Chassis", STANDIN)
        self.chassis_uuid = row.uuid
        self.idl.on_port_binding = self._seen
        self._worker.start()
        with self.sb.ovsdb_connection.lock:  # bindings made before the watcher started
            for pb in list(self.idl.tables["Port_Binding"].rows.values()):
                self._seen("create", pb)

    def _seen(self, event: str, row: Any) -> None:
        """IDL thread: queue an unbound binding requested on the stand-in."""
        if event == "delete" or row.chassis:
            return
        if requested_chassis(row.options) == STANDIN:
            self.pending.put(row.uuid)

    def _bind_loop(self) -> None:
        while True:
            first = self.pending.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < BIND_BATCH:
                try:
                    item = self.pending.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self.pending.put(None)
                    break
                batch.append(item)
            try:
                with self.sb.transaction(check_error=True) as txn:
                    for pb in batch:
                        txn.add(
                            self.sb.db_set(
                                "Port_Binding", pb, ("chassis", self.chassis_uuid), ("up", True)
                            )
                        )
                self.bound += len(batch)
            except Exception:  # a binding deleted meanwhile: bind the rest one by one
                for pb in batch:
                    try:
                        self.sb.db_set(
                            "Port_Binding", pb, ("chassis", self.chassis_uuid), ("up", True)
                        ).execute(check_error=True)
                        self.bound += 1
                    except Exception:
                        continue

    def stop(self) -> None:
        """Stop binding and remove the chassis."""
        self.pending.put(None)
        self._worker.join(timeout=10)
        self.sb.chassis_del(STANDIN, if_exists=True).execute(check_error=True)


@contextmanager
def standin(plan: LabPlan) -> Iterator[StandIn]:
    """A running stand-in chassis on the lab's SB; removed on exit."""
    remote = f"unix:{plan.ovn_dir(plan.cp)}/ovnsb_db.sock"
    with open_api(remote, "OVN_Southbound", SbApi, SB_TABLES) as (
        sb,
        idl,
    ):
        stand_in = StandIn(sb, idl)
        stand_in.start()
        try:
            yield stand_in
        finally:
            stand_in.stop()


def _client(plan: LabPlan) -> ControllerClient:
    """An admin client that waits as long as a PUT may take (reloads and `up` included)."""
    token = services.token_path(plan, "admin").read_text().strip()
    return ControllerClient(
        f"unix:{services.controller_socket(plan)}", token, timeout=CLIENT_TIMEOUT
    )


def register_nodes(plan: LabPlan, prefix: str, count: int, first_ip: int) -> list[str]:
    """`count` bench nodes `<prefix><i>`: full nodes served by the stand-in chassis."""
    names = []
    with _client(plan) as client:
        for i in range(count):
            name = f"{prefix}{i}"
            spec = {
                "role": "full",
                "chassis": STANDIN,
                "node_ip": f"198.19.200.{first_ip + i}/24",
                "next_hop": "198.19.200.254",
            }
            _retrying(partial(client.put_node, name, spec))
            names.append(name)
    return names


def _retrying(call: Callable[[], T]) -> T:
    """`call()`, retried while the controller answers 503 (reloading from NB)."""
    started = time.perf_counter()
    while True:
        try:
            return call()
        except ClientError as exc:
            if exc.status != 503 or time.perf_counter() - started > RETRY_LIMIT:
                raise
            time.sleep(RETRY_DELAY)


def remove_nodes(plan: LabPlan) -> None:
    """Every bench node (and with it its ports)."""
    with _client(plan) as client:
        for node in _retrying(client.list_nodes):
            name = node.name
            if name.startswith(NODE_PREFIX):
                _retrying(partial(client.delete_node, name))


class Ports:
    """Port PUTs spread over the bench nodes, numbered from 0, `concurrency` at a time from
    worker threads that each keep one client (a node agent keeps its own)."""

    def __init__(self, plan: LabPlan, nodes: list[str], concurrency: int) -> None:
        self.plan = plan
        self.nodes = nodes
        self.concurrency = concurrency
        self.next = 0
        self.unavailable = 0  # 5xx or no answer (reloading from NB, deadline exceeded)
        self._local = threading.local()
        self._clients: list[ControllerClient] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=concurrency)

    def connect(self) -> None:
        """Every worker thread started with its client connected (one GET each), before
        anything is timed, as a node agent keeps its client. (Until 2026-12-07 each level
        made its 32 clients while timed: 22 ms of CPU each, httpx loading the system's CAs
        for a unix socket, 3.5 ms per PUT in a sample of 200.)"""
        started = threading.Barrier(self.concurrency)

        def one(_: int) -> None:
            started.wait(timeout=60)  # all threads busy at once: each is a new one
            _retrying(partial(self._http().get_node, self.nodes[0]))

        list(self._pool.map(one, range(self.concurrency)))

    def _http(self) -> ControllerClient:
        client = getattr(self._local, "client", None)
        if client is None:
            client = _client(self.plan)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def put(self, k: int) -> float:
        """PUT port `k`, retried (it is idempotent) while the controller answers 5xx or not
        at all, as the CNI flow does (dpunet-host turns those into "try again later");
        its latency (s), retries included."""
        node = self.nodes[k % len(self.nodes)]
        body = PortRequest(node=node, sandbox=f"s{k}", uid=f"u{k}")
        started = time.perf_counter()
        while True:
            try:
                self._http().put_port(NAMESPACE, f"p{k}", body, timeout=120)
            except ClientError as exc:
                if 0 < exc.status < 500 or time.perf_counter() - started > RETRY_LIMIT:
                    raise
                with self._lock:
                    self.unavailable += 1
                time.sleep(RETRY_DELAY)
                continue
            return time.perf_counter() - started

    def batch(self, n: int) -> tuple[list[float], float]:
        """PUT the next `n` ports; (latencies, wall seconds)."""
        first, self.next = self.next, self.next + n
        started = time.perf_counter()
        latencies = list(self._pool.map(self.put, range(first, first + n)))
        return latencies, time.perf_counter() - started

    def close(self) -> None:
        """Stop the worker threads (what has not begun is cancelled), close the clients."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        for client in self._clients:
            client.close()


def _parallel(fn: Callable[[int], T], items: Iterable[int], concurrency: int) -> list[T]:
    """`fn` over `items`, `concurrency` at a time; an interrupt cancels what has not begun."""
    pool = ThreadPoolExecutor(max_workers=concurrency)
    try:
        return list(pool.map(fn, items))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


PodShape = Callable[[int], tuple[str, dict[str, str], list[tuple[str, str, int]]]]


def fill_raw(
    nb: Any, nodes: Sequence[str], start: int, count: int, shape: PodShape | None = None
) -> list[str]:
    """Ports `start`..`start+count-1` written into NB as the controller writes them, on
    `nodes` (port k on node k // PORTS_PER_NODE, with address .3 + k % PORTS_PER_NODE of
    its subnet, as the controller's pool hands them out), FILL_BATCH per transaction;
    their LSP names. `shape(k)`: pod k's (namespace, labels, named ports (name, protocol,
    number)); default: namespace `bench`, none."""
    from dpunet.controller.config import ControllerConfig
    from dpunet.controller.ipam import FIRST_POD_OFFSET
    from dpunet.controller.nbcommands import WritePort
    from dpunet.controller.topology import NodeRecord, PodPort, pod_lsp

    cfg = ControllerConfig()
    records: dict[str, NodeRecord] = {}
    names: list[str] = []
    for first in range(start, start + count, FILL_BATCH):
        with nb.transaction(check_error=True) as txn:
            for k in range(first, min(first + FILL_BATCH, start + count)):
                node = nodes[k // PORTS_PER_NODE]
                if node not in records:
                    switch = nb.lookup("Logical_Switch", node)
                    records[node] = NodeRecord.from_switch(
                        node, switch.other_config, switch.external_ids
                    )
                record = records[node]
                ip = record.subnet.network_address + FIRST_POD_OFFSET + k % PORTS_PER_NODE
                namespace, labels, named = shape(k) if shape else (NAMESPACE, {}, [])
                port = PodPort(
                    namespace, f"f{k}", f"uf{k}", f"sf{k}", node=node, ip=ip,
                    labels=tuple(sorted(labels.items())), named_ports=tuple(sorted(named)),
                )  # fmt: skip
                txn.add(WritePort(nb, node, pod_lsp(cfg, record, port), {port.uid}, fresh=False))
                names.append(port.name)
    return names


def wait_adopted(
    plan: LabPlan, idl: Any, names: Sequence[str], nodes: Sequence[str], total: int
) -> float:
    """Until every filled LSP is `up` and the controller counts `total` ports on `nodes`;
    seconds waited."""
    started = time.perf_counter()
    deadline = started + ADOPT_TIMEOUT
    for name in names:
        idl.wait_member("up", name, timeout=max(deadline - time.perf_counter(), 1.0))
    with _client(plan) as client:
        while sum(client.get_node(n).ports for n in nodes) < total:
            if time.perf_counter() > deadline:
                raise LabError(f"the controller did not adopt {total} filled ports in time")
            time.sleep(1.0)
    return time.perf_counter() - started


def settle(nb: Any, nb_idl: Any, sb_idl: Any, timeout: float = SETTLE_TIMEOUT) -> float:
    """Until OVN has caught up with every NB change so far, as `ovn-nbctl --wait=hv sync`
    waits (the stand-in chassis aside, which installs no flows): `NB_Global.nb_cfg` bumped,
    then northd's `sb_cfg` and every real chassis's `Chassis_Private.nb_cfg` at that value.
    So a timed phase does not pay for the work the one before it left (a fill's ports, a
    floor's deleted switch). Seconds waited; TimeoutError after `timeout`."""
    started = time.perf_counter()
    [nb_global] = nb_idl.tables["NB_Global"].rows.values()
    target = nb_global.nb_cfg + 1
    nb.db_set("NB_Global", nb_global.uuid, ("nb_cfg", target)).execute(check_error=True)

    def behind() -> list[str]:
        late = [] if nb_global.sb_cfg >= target else ["ovn-northd"]
        rows = list(sb_idl.tables["Chassis_Private"].rows.values())
        return late + [r.name for r in rows if r.name != STANDIN and r.nb_cfg < target]

    while late := behind():
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"OVN did not settle within {timeout:.0f}s: {', '.join(late)}")
        time.sleep(SETTLE_POLL)
    return time.perf_counter() - started


def floor_batch(
    nb: Any, idl: Any, level: int, n: int, concurrency: int, sb_idl: Any = None
) -> dict[str, Any]:
    """`n` LSPs written raw (one transaction each, the controller's columns), then removed:
    latency to commit, latency to `up`, throughput. With `sb_idl` each waits for its SB
    Port_Binding's `up` (one northd pass earlier) instead of NB's."""
    commit: list[float] = []
    to_up: list[float] = []
    lock = threading.Lock()
    kind = "sb" if sb_idl is not None else "nb"

    def one(i: int) -> None:
        name = f"bench-floor{kind}_{level}-{i}"
        ip = f"198.19.{208 + i // 250}.{i % 250 + 1}"
        mac = f"0a:58:c6:13:{208 + i // 250:02x}:{i % 250 + 1:02x}"
        address = f"{mac} {ip}"
        started = time.perf_counter()
        with nb.transaction(check_error=True) as txn:
            txn.add(nb.lsp_add(FLOOR_SWITCH, name))
            txn.add(nb.lsp_set_addresses(name, [address]))
            txn.add(nb.lsp_set_port_security(name, [address]))
            txn.add(nb.lsp_set_options(name, **lsp_options(STANDIN, iface_id_ver=f"u{i}")))
            txn.add(nb.db_set("Logical_Switch_Port", name, ("external_ids", {"bench": "floor"})))
        committed = time.perf_counter()
        if sb_idl is not None:
            sb_idl.wait_member("sb_up", name, timeout=120)
        else:
            idl.wait_member("up", name, timeout=120)
        done = time.perf_counter()
        with lock:
            commit.append(committed - started)
            to_up.append(done - started)

    started = time.perf_counter()
    _parallel(one, range(n), concurrency)
    wall = time.perf_counter() - started
    clear_floor_switch(nb)
    return {
        "waits_for": "Port_Binding.up" if sb_idl is not None else "Logical_Switch_Port.up",
        "commit_ms": summarize([v * 1000 for v in commit]),
        "up_ms": summarize([v * 1000 for v in to_up]),
        "ports_per_s": n / wall if wall > 0 else None,
    }


def add_floor_switch(nb: Any) -> None:
    """The floor's switch, empty but for its port to `ovn_cluster_router` (made anew)."""
    from dpunet.controller.topology import CLUSTER_ROUTER

    with nb.transaction(check_error=True) as txn:
        txn.add(nb.ls_del(FLOOR_SWITCH, if_exists=True))
        txn.add(nb.ls_add(FLOOR_SWITCH))
        txn.add(nb.lrp_del(FLOOR_ROUTER_PORT, if_exists=True))
        txn.add(nb.lrp_add(CLUSTER_ROUTER, FLOOR_ROUTER_PORT, FLOOR_ROUTER_MAC, [FLOOR_GATEWAY]))
        txn.add(nb.lsp_add(FLOOR_SWITCH, FLOOR_SWITCH_PORT, type="router"))
        txn.add(nb.lsp_set_addresses(FLOOR_SWITCH_PORT, ["router"]))
        txn.add(nb.lsp_set_options(FLOOR_SWITCH_PORT, **{"router-port": FLOOR_ROUTER_PORT}))


def clear_floor_switch(nb: Any) -> None:
    """The floor's ports removed, its switch kept: one transaction (an `lsp_del` each would
    scan every switch for the port's parent). Not the switch made anew: deleted and added
    again in one transaction with its router port (as until 2026-12-07), the switch got no
    flows in the ovn-controllers at all (OVN 23.03 and 25.03 alike; made in two
    transactions it does), so the next floor's ports cost them nothing."""
    switch = nb.lookup("Logical_Switch", FLOOR_SWITCH)
    ports = [p.uuid for p in switch.ports if p.name != FLOOR_SWITCH_PORT]
    if ports:
        nb.db_remove("Logical_Switch", FLOOR_SWITCH, "ports", *ports).execute(check_error=True)


def remove_floor_switch(nb: Any) -> None:
    """The floor's switch (with its ports) and its router port."""
    with nb.transaction(check_error=True) as txn:
        txn.add(nb.ls_del(FLOOR_SWITCH, if_exists=True))
        txn.add(nb.lrp_del(FLOOR_ROUTER_PORT, if_exists=True))


def _controller_metrics(plan: LabPlan) -> Any:
    try:
        token = services.token_path(plan, "admin").read_text().strip()
        return parse_exposition(
            http_get(None, f"unix:{services.controller_socket(plan)}", token=token)
        )
    except OSError:
        return {}


def _level(
    plan: LabPlan,
    nb: Any,
    nb_idl: Any,
    sb_idl: Any,
    ports: Ports,
    fillers: Sequence[str],
    filled: int,
    fill: int,
    sample: int,
    concurrency: int,
    entry: dict[str, Any],
    say: Callable[[str], None],
) -> int:
    """Fill `fill` more ports, time `sample` PUTs and the floor; results into `entry`.
    Returns how many ports are filled now."""
    level = entry["existing_ports"]
    if fill > 0:
        say(f"writing {fill} ports into NB (to {level} existing)")
        started = time.perf_counter()
        names = fill_raw(nb, fillers, filled, fill)
        entry["fill_write_s"] = time.perf_counter() - started
        filled += fill
        say("waiting until they are up and the controller has adopted them")
        entry["fill_adopt_s"] = wait_adopted(plan, nb_idl, names, fillers, filled)
    settled = {"put": settle(nb, nb_idl, sb_idl)}
    before = _controller_metrics(plan)
    say(f"timing {sample} PUTs at {filled + ports.next} existing ports")
    unavailable = ports.unavailable
    with cpu.metered(plan, sample) as cpu_put:
        latencies, wall = ports.batch(sample)
    after = _controller_metrics(plan)
    phases = phase_means(before, after, "dpunet_controller_port_setup_seconds", "phase")
    transactions, writes = (
        after.get((f"dpunet_controller_nb_{what}_total", frozenset()), 0.0)
        - before.get((f"dpunet_controller_nb_{what}_total", frozenset()), 0.0)
        for what in ("transactions", "writes")
    )
    say(f"floor: {sample} raw transactions at {level} existing ports, to NB up")
    settled["floor"] = settle(nb, nb_idl, sb_idl)
    with cpu.metered(plan, sample) as floor_cpu:
        floor = floor_batch(nb, nb_idl, level, sample, concurrency)
    floor["cpu"] = floor_cpu
    say(f"floor: {sample} raw transactions at {level} existing ports, to SB up")
    settled["floor_sb"] = settle(nb, nb_idl, sb_idl)
    with cpu.metered(plan, sample) as floor_sb_cpu:
        floor_sb = floor_batch(nb, nb_idl, level, sample, concurrency, sb_idl)
    floor_sb["cpu"] = floor_sb_cpu
    put = summarize([v * 1000 for v in latencies])
    rate = sample / wall
    entry |= {
        "put_ms": put,
        "put_ports_per_s": rate,
        "put_503_retries": ports.unavailable - unavailable,
        "settle_s": {phase: round(seconds, 3) for phase, seconds in settled.items()},
        "phases_mean_ms": {
            k: (v.mean * 1000 if v.mean is not None else None) for k, v in phases.items()
        },
        "cpu": cpu_put,
        "nb_transactions": transactions,
        "nb_writes_per_transaction": writes / transactions if transactions else None,
        "floor": floor,
        "floor_sb": floor_sb,
        "ratio_median_vs_floor_up": ratio(put.get("median"), floor["up_ms"].get("median")),
        "ratio_rate_vs_floor": ratio(rate, floor["ports_per_s"]),
        "ratio_median_vs_floor_sb_up": ratio(put.get("median"), floor_sb["up_ms"].get("median")),
        "ratio_rate_vs_floor_sb": ratio(rate, floor_sb["ports_per_s"]),
    }
    say(
        f"at {level}: PUT {rate:.1f}/s, median/p99 {put.get('median', 0):.0f}/"
        f"{put.get('p99', 0):.0f} ms; floor {floor['ports_per_s'] or 0:.1f}/s to NB up, "
        f"{floor_sb['ports_per_s'] or 0:.1f}/s to SB up; PUT/s vs floor "
        f"{entry['ratio_rate_vs_floor'] or 0:.2f} (NB up), "
        f"{entry['ratio_rate_vs_floor_sb'] or 0:.2f} (SB up)"
    )
    say(
        f"at {level}: CPU ms per port, all processes: PUT {cpu_put['total_ms_per_port']:.1f} "
        f"({_busiest(cpu_put)}), floor {floor['cpu']['total_ms_per_port']:.1f} "
        f"({_busiest(floor['cpu'])}); cores busy {cpu_put['machine_busy_cores']} / "
        f"{floor['cpu']['machine_busy_cores']} of {cpu_put['cores']}; PUTs per NB "
        f"transaction {entry['nb_writes_per_transaction'] or 0:.1f}"
    )
    return filled


def _busiest(usage: dict[str, Any], n: int = 3) -> str:
    """The `n` processes that spent the most CPU per port, as `name ms`."""
    top = list(usage["ms_per_port"].items())[:n]
    return ", ".join(f"{name} {ms:.1f}" for name, ms in top)


def run(
    plan: LabPlan,
    levels: Sequence[int],
    sample: int,
    concurrency: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Fill to each level, time `sample` PUTs there, then the raw floor."""
    levels = sorted(levels)
    fill_nodes = math.ceil(levels[-1] / PORTS_PER_NODE)
    measure_nodes = math.ceil(sample * len(levels) / PORTS_PER_NODE)
    nb_remote = f"unix:{plan.ovn_dir(plan.cp)}/ovnnb_db.sock"
    out: dict[str, Any] = {
        "levels": [],
        "fill_nodes": fill_nodes,
        "measure_nodes": measure_nodes,
        "concurrency": concurrency,
    }
    remove_nodes(plan)  # leftovers of an interrupted run
    try:
        with (
            standin(plan) as stand_in,
            open_api(
                nb_remote,
                "OVN_Northbound",
                NbApi,
                [
                    "NB_Global",
                    "Logical_Switch",
                    "Logical_Switch_Port",
                    "Logical_Router",
                    "Logical_Router_Port",
                ],
            ) as (nb, nb_idl),
        ):
            say(f"registering {measure_nodes}+{fill_nodes} bench nodes (chassis {STANDIN})")
            measured = register_nodes(plan, MEASURE_PREFIX, measure_nodes, 1)
            fillers = register_nodes(plan, FILL_PREFIX, fill_nodes, 1 + measure_nodes)
            add_floor_switch(nb)
            ports = Ports(plan, measured, concurrency)
            ports.connect()
            filled = 0
            try:
                for level in levels:
                    fill = level - filled - ports.next
                    entry: dict[str, Any] = {"existing_ports": level}
                    try:
                        filled = _level(
                            plan,
                            nb,
                            nb_idl,
                            stand_in.idl,
                            ports,
                            fillers,
                            filled,
                            fill,
                            sample,
                            concurrency,
                            entry,
                            say,
                        )
                    except (LabError, ClientError, TimeoutError, OvsdbTimeout) as exc:
                        entry["error"] = str(exc)
                        out["levels"].append(entry)
                        say(f"level {level} not measured: {exc}")
                        break
                    out["levels"].append(entry)
            finally:
                ports.close()
                out["standin_bound"] = stand_in.bound
                remove_floor_switch(nb)
    except ClientError as exc:
        raise LabError(f"controller: {exc}") from exc
    finally:
        say("removing the bench nodes and their ports")
        remove_nodes(plan)
    return out
