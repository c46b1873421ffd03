"""`dpunet bench pod-setup`: CNI ADD invocation -> "the container reaches its gateway".

dpunet: the installed `dpunet-cni` executed as a runtime does (`invoke_cni`), then ICMP
echo to the gateway from the pod's namespace until it answers.

The floor, the same operations done raw in the same lab: one NB transaction creating
the Logical_Switch_Port (addresses, port security, requested-chassis), one OVS
transaction adding the VF representor to br-int with its `iface-id`, the representor
set up, wait for `ovn-installed`, wait for NB `up`, the reference `host-device` CNI
plugin (static IPAM) moving the VF into the pod, then the same ICMP wait. A second floor
waits for SB `Port_Binding.up` instead of NB `up` (one northd pass earlier: what the
controller's PUT now waits for first).

Phases of dpunet's time come from the daemons' histograms (host agent: claim, prepare,
controller, plug; controller: allocate, nb_write, wait_up; DPU agent: plug latency),
as means over the run; `ovn-installed-ts` of each pod's interface gives the OVN-side
milestone per pod, comparable to ovn-heater's binding -> ovn-installed figure.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from itertools import zip_longest
from pathlib import Path
from typing import Any

from dpunet.bench.icmp import wait_reachable
from dpunet.bench.metrics import Samples, http_get, parse_exposition, phase_means
from dpunet.bench.ovsdb import SB_TABLES, OvsApi, open_api
from dpunet.bench.stats import ratio, summarize
from dpunet.contract.lsp import lsp_options
from dpunet.lab import services
from dpunet.lab.pods import invoke_cni
from dpunet.lab.runner import LabError, in_netns, ip
from dpunet.lab.topology import HOST_PF_NAME, LabPlan, NicPair
from dpunet.ovsdb.api import NbApi, SbApi

REFERENCE_PLUGINS = Path("/usr/lib/cni")
HOST_AGENT_METRICS = "127.0.0.1:9478"
DPU_AGENT_METRICS = "127.0.0.1:9476"
FLOOR_HOST_OFFSET = 200  # floor pods use .200+ of the node subnet (the controller starts low)


@dataclass
class PodSample:
    """One pod of one round."""

    mode: str  # dpunet | floor
    round: int
    pod: str
    pair: str = ""  # the dpu-host it ran on
    ready_s: float | None = None  # CNI ADD start -> first echo reply from the gateway
    add_s: float | None = None  # the CNI ADD alone (dpunet) / host-device ADD (floor)
    del_s: float | None = None
    ovn_installed_s: float | None = None  # CNI ADD start -> ovn-installed-ts
    steps: dict[str, float] = field(default_factory=dict)  # floor: per raw step
    error: str | None = None
    retries: int = 0  # floor: `host-device` ADDs run again (see `Floor.HOST_DEVICE_ATTEMPTS`)
    started: float = 0.0  # perf_counter at ADD start
    finished: float = 0.0  # perf_counter at the first reply
    wall_started: float = 0.0  # time.time() at ADD start (to compare with ovn-installed-ts)
    cid: str = ""


@dataclass(frozen=True)
class FreeVf:
    """A VF the floor may use: its index, host netdev, MAC and ifalias."""

    index: int
    netdev: str
    mac: str
    alias: str = ""


# ----------------------------------------------------------------- helpers
def free_vfs(plan: LabPlan, pair: NicPair) -> list[FreeVf]:
    """VFs in the host namespace that no pod holds (the management VF excluded)."""
    from dpunet.hw.host import find_pf, list_vfs
    from dpunet.hw.sysfs import Sysfs

    root = plan.sysfs_root(pair.host)
    assert root is not None
    sysfs = Sysfs(root)
    pf = find_pf(sysfs, HOST_PF_NAME)
    if pf is None:
        raise LabError(f"{pair.host.name} has no PF {HOST_PF_NAME}")
    from dpunet.linux.netns import iproute_at

    out = []
    with iproute_at(f"/run/netns/{pair.host.netns}") as ipr:
        for vf in list_vfs(sysfs, pf):
            if vf.index == 0 or vf.netdev is None:
                continue
            links = ipr.get_links(ifname=vf.netdev)
            alias = links[0].get_attr("IFLA_IFALIAS") if links else None
            out.append(FreeVf(vf.index, vf.netdev, vf.mac or "", alias or ""))
    return out


def restore_vf(pair: NicPair, vf: FreeVf) -> None:
    """Give a VF back its ifalias and up state after the reference `host-device` plugin
    used it: the plugin keeps the host name in the ifalias, where the emulated NIC keeps
    the marker it recognises its VFs by (a real VF does not care)."""
    from dpunet.linux.netns import iproute_at

    with iproute_at(f"/run/netns/{pair.host.netns}") as ipr:
        index = ipr.link_lookup(ifname=vf.netdev)[0]
        ipr.link("set", index=index, ifalias=vf.alias)
        ipr.link("set", index=index, state="up")  # a down link reports no alias change


def scrape(netns: str | None, address: str, token: str | None = None) -> Samples:
    """A daemon's metrics (empty when it does not answer)."""
    try:
        return parse_exposition(http_get(netns, address, token=token))
    except OSError:
        return {}


@dataclass
class Scrapes:
    """The three daemons' metrics at one instant."""

    host: Samples
    controller: Samples
    dpu: Samples


def scrape_all(plan: LabPlan, pair: NicPair) -> Scrapes:
    """Host agent, controller and DPU agent metrics."""
    return Scrapes(
        scrape(f"/run/netns/{pair.host.netns}", HOST_AGENT_METRICS),
        scrape(
            None,
            f"unix:{services.controller_socket(plan)}",
            services.token_path(plan, "admin").read_text().strip(),
        ),
        scrape(f"/run/netns/{pair.dpu.netns}", DPU_AGENT_METRICS),
    )


def phase_split(before: Scrapes, after: Scrapes) -> dict[str, Any]:
    """Mean seconds per phase over the run, from each daemon's histograms."""
    host = phase_means(before.host, after.host, "dpunet_host_cni_phase_seconds", "phase")
    ctl = phase_means(
        before.controller, after.controller, "dpunet_controller_port_setup_seconds", "phase"
    )
    dpu = phase_means(before.dpu, after.dpu, "dpunet_dpu_plug_latency_seconds")
    return {
        "host_agent": {k: asdict(v) for k, v in host.items()},
        "controller": {k: asdict(v) for k, v in ctl.items()},
        "dpu_agent": {"plug": asdict(dpu[""])} if "" in dpu else {},
    }


def _netns(name: str) -> str:
    ip("netns", "add", name)
    ip("link", "set", "lo", "up", netns=name)
    return f"/run/netns/{name}"


def _drop_netns(name: str) -> None:
    ip("netns", "del", name, check=False)


def _ovn_installed(plan: LabPlan, pair: NicPair) -> dict[str, float]:
    """iface-id -> ovn-installed-ts (epoch seconds) of the DPU's br-int interfaces."""
    from dpunet.verify.ovsview import read_ovs

    view = read_ovs(f"unix:{plan.ovs_dir(pair.dpu)}/db.sock")
    out = {}
    for iface in view.interfaces.values():
        ts = iface.external_ids.get("ovn-installed-ts")
        if iface.iface_id and ts and ts.isdigit():
            out[iface.iface_id] = int(ts) / 1000.0
    return out


# ----------------------------------------------------------------- dpunet
def add_dpunet_pod(plan: LabPlan, pair: NicPair, pod: str, round_no: int) -> PodSample:
    """A bare-namespace pod attached through the installed `dpunet-cni`, timed to the
    first answer of its gateway."""
    sample = PodSample("dpunet", round_no, pod, pair.host.name)
    netns = _netns(f"{plan.name}-bp-{pod}")
    sample.cid = secrets.token_hex(16)
    sample.wall_started = time.time()
    sample.started = time.perf_counter()
    try:
        result = invoke_cni(plan, pair.host, "ADD", sample.cid, netns, pod)
        added = time.perf_counter()
        sample.add_s = added - sample.started
        gateway = result["ips"][0]["gateway"]
        sample.finished = wait_reachable(netns, gateway)
        sample.ready_s = sample.finished - sample.started
    except (LabError, TimeoutError, KeyError, IndexError) as exc:
        sample.error = str(exc)
    return sample


def del_dpunet_pod(plan: LabPlan, pair: NicPair, sample: PodSample) -> None:
    """CNI DEL of a pod made by `add_dpunet_pod` (timed), then its namespace removed."""
    netns_name = f"{plan.name}-bp-{sample.pod}"
    started = time.perf_counter()
    try:
        invoke_cni(
            plan, pair.host, "DEL", sample.cid, f"/run/netns/{netns_name}",
            sample.pod,
        )  # fmt: skip
        sample.del_s = time.perf_counter() - started
    except LabError as exc:
        sample.error = sample.error or f"DEL: {exc}"
    _drop_netns(netns_name)


def pod_jobs(
    counts: Sequence[tuple[NicPair, int]], prefix: str, r: int
) -> list[tuple[NicPair, int, str]]:
    """(pair, i, pod name) of round `r`, i from 0 to each pair's count in `counts`: the
    pairs interleaved (so that a limited concurrency spreads over them), the names
    unique across pairs."""
    per_pair = [
        [(pair, i, f"{prefix}{r}x{i}" if len(counts) == 1 else f"{prefix}{r}p{k + 1}x{i}")
         for i in range(n)]
        for k, (pair, n) in enumerate(counts)
    ]  # fmt: skip
    return [job for row in zip_longest(*per_pair) for job in row if job is not None]


def run_dpunet(
    plan: LabPlan, counts: Sequence[tuple[NicPair, int]], concurrency: int, rounds: int,
    say: Callable[[str], None],
) -> list[PodSample]:  # fmt: skip
    """`rounds` rounds of pod ADDs (`counts`: how many on each pair; `concurrency` at a
    time over all of them), each pod deleted after its round."""
    out: list[PodSample] = []
    pods = sum(n for _, n in counts)
    for r in range(rounds):
        jobs = pod_jobs(counts, "b", r)
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            samples = list(pool.map(partial(_dpunet_add, plan, round_no=r), jobs))
        for pair, _ in counts:
            installed = _ovn_installed(plan, pair)
            for s in samples:
                ts = installed.get(f"default_{s.pod}")
                if s.pair == pair.host.name and ts is not None:
                    s.ovn_installed_s = ts - s.wall_started
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            list(pool.map(partial(_dpunet_del, plan), jobs, samples))
        out += samples
        say(_round_line("dpunet", r, rounds, pods, len(counts), samples))
    return out


def _round_line(
    mode: str, round_no: int, rounds: int, pods: int, pairs: int, samples: list[PodSample]
) -> str:
    """The progress line of one round: its pods, over how many pairs, how many failed."""
    failed = sum(s.error is not None for s in samples)
    return (
        f"  {mode} round {round_no + 1}/{rounds}: {pods} pods"
        + (f" on {pairs} pairs" if pairs > 1 else "")
        + (f", {failed} failed" if failed else "")
    )


def _dpunet_add(plan: LabPlan, job: tuple[NicPair, int, str], round_no: int) -> PodSample:
    return add_dpunet_pod(plan, job[0], job[2], round_no)


def _dpunet_del(plan: LabPlan, job: tuple[NicPair, int, str], sample: PodSample) -> None:
    del_dpunet_pod(plan, job[0], sample)


# ------------------------------------------------------------------ floor
class Floor:
    """The raw operations, with one NB and one OVS connection shared by all pods."""

    def __init__(
        self,
        plan: LabPlan,
        pair: NicPair,
        nb: Any,
        nb_idl: Any,
        ovs: Any,
        ovs_idl: Any,
        sb_idl: Any = None,
    ):
        self.plan, self.pair = plan, pair
        self.nb, self.nb_idl, self.ovs, self.ovs_idl = nb, nb_idl, ovs, ovs_idl
        self.sb_idl = sb_idl  # set: wait for SB Port_Binding.up instead of NB up
        with services.admin_client(plan) as client:
            node = client.get_node(pair.host.name)
        self.gateway = node.gateway_ip.split("/")[0]
        self.prefix = node.subnet.split("/")[1]
        self.base = node.subnet.split("/")[0].rsplit(".", 1)[0]
        self.switch = pair.host.name
        self.chassis = pair.dpu.name
        self.conf_dir = Path(tempfile.mkdtemp(prefix="dpunet-bench-floor-"))

    def close(self) -> None:
        """Remove the temporary plugin configs."""
        shutil.rmtree(self.conf_dir, ignore_errors=True)

    # The reference plugin lists the node's links with one netlink dump; the kernel marks a
    # dump that links changed under (NLM_F_DUMP_INTR), and the netlink library of newer
    # plugin builds (Debian 13's) fails the ADD with "interrupted system call" then, as
    # happens in a burst. A runtime would retry the pod; so does the floor, counted.
    HOST_DEVICE_ATTEMPTS = 3
    _INTERRUPTED = "interrupted system call"

    def _host_device(
        self, command: str, vf: FreeVf, cid: str, netns: str, address: str,
        sample: PodSample | None = None,
    ) -> float:  # fmt: skip
        """Run the reference plugin (`command`) for `vf`; the seconds it took, retries of
        an interrupted link listing included (counted in `sample`)."""
        started = time.perf_counter()
        for attempt in range(1, self.HOST_DEVICE_ATTEMPTS + 1):
            try:
                self._run_host_device(command, vf, cid, netns, address)
                break
            except LabError as exc:
                if self._INTERRUPTED not in str(exc) or attempt == self.HOST_DEVICE_ATTEMPTS:
                    raise
                if sample is not None:
                    sample.retries += 1
        return time.perf_counter() - started

    def _run_host_device(
        self, command: str, vf: FreeVf, cid: str, netns: str, address: str
    ) -> None:
        config = {
            "cniVersion": "1.0.0",
            "name": "floor",
            "type": "host-device",
            "device": vf.netdev,
            "ipam": {
                "type": "static",
                "addresses": [{"address": f"{address}/{self.prefix}", "gateway": self.gateway}],
                "routes": [{"dst": "0.0.0.0/0", "gw": self.gateway}],
            },
        }
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": cid,
            "CNI_NETNS": netns,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(REFERENCE_PLUGINS),
        }
        argv = in_netns(
            f"/run/netns/{self.pair.host.netns}", [str(REFERENCE_PLUGINS / "host-device")]
        )
        proc = subprocess.run(
            argv, input=json.dumps(config), env=env, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise LabError(f"host-device {command}: {proc.stdout.strip()} {proc.stderr.strip()}")

    def add(self, vf: FreeVf, pod: str, round_no: int) -> PodSample:
        """The raw pod setup of one VF."""
        from dpunet.linux.netns import iproute_at

        sample = PodSample("floor", round_no, pod, self.pair.host.name)
        netns = _netns(f"{self.plan.name}-bp-{pod}")
        lsp = f"bench-floor_{pod}"
        rep = f"pf0vf{vf.index}"
        address = f"{self.base}.{FLOOR_HOST_OFFSET + vf.index}"
        mac_ip = f"{vf.mac} {address}"
        sample.cid = cid = secrets.token_hex(16)
        steps = sample.steps
        sample.started = t = time.perf_counter()
        try:
            with self.nb.transaction(check_error=True) as txn:
                txn.add(self.nb.lsp_add(self.switch, lsp))
                txn.add(self.nb.lsp_set_addresses(lsp, [mac_ip]))
                txn.add(self.nb.lsp_set_port_security(lsp, [mac_ip]))
                txn.add(self.nb.lsp_set_options(lsp, **lsp_options(self.chassis)))
            steps["nb_lsp_txn"] = -t + (t := time.perf_counter())
            with self.ovs.transaction(check_error=True) as txn:
                txn.add(self.ovs.add_port("br-int", rep))
                txn.add(self.ovs.db_set("Interface", rep, ("external_ids", {"iface-id": lsp})))
            steps["ovs_add_port_txn"] = -t + (t := time.perf_counter())
            with iproute_at(f"/run/netns/{self.pair.dpu.netns}") as ipr:
                ipr.link("set", index=ipr.link_lookup(ifname=rep)[0], state="up")
            steps["representor_up"] = -t + (t := time.perf_counter())
            self.ovs_idl.wait_member("installed", rep)
            steps["wait_ovn_installed"] = -t + (t := time.perf_counter())
            if self.sb_idl is not None:
                self.sb_idl.wait_member("sb_up", lsp)
                steps["wait_sb_up"] = -t + (t := time.perf_counter())
            else:
                self.nb_idl.wait_member("up", lsp)
                steps["wait_nb_up"] = -t + (t := time.perf_counter())
            sample.add_s = self._host_device("ADD", vf, cid, netns, address, sample)
            steps["host_device_add"] = -t + (t := time.perf_counter())
            sample.finished = wait_reachable(netns, self.gateway)
            steps["gateway_reply"] = sample.finished - t
            sample.ready_s = sample.finished - sample.started
        except (LabError, TimeoutError, RuntimeError, OSError) as exc:
            sample.error = f"{type(exc).__name__}: {exc}"
        return sample

    def delete(self, vf: FreeVf, sample: PodSample) -> None:
        """Undo one floor pod."""
        netns_name = f"{self.plan.name}-bp-{sample.pod}"
        started = time.perf_counter()
        try:
            self._host_device("DEL", vf, sample.cid, f"/run/netns/{netns_name}", "0.0.0.0")
            restore_vf(self.pair, vf)
            self.ovs.del_port(f"pf0vf{vf.index}", if_exists=True).execute(check_error=True)
            self.nb.lsp_del(f"bench-floor_{sample.pod}", if_exists=True).execute(check_error=True)
            sample.del_s = time.perf_counter() - started
        except (LabError, RuntimeError) as exc:
            sample.error = sample.error or f"DEL: {exc}"
        _drop_netns(netns_name)


def run_floor(
    plan: LabPlan, counts: Sequence[tuple[NicPair, int]], concurrency: int, rounds: int,
    say: Callable[[str], None], sb_up: bool = False,
) -> list[PodSample]:  # fmt: skip
    """The floor, with the same shape of run as `run_dpunet` (one NB connection, one OVS
    connection per DPU); `sb_up`: waiting for SB `Port_Binding.up` instead of NB `up`."""
    vfs: dict[str, list[FreeVf]] = {}
    for pair, n in counts:
        vfs[pair.host.name] = free_vfs(plan, pair)[:n]
        if len(vfs[pair.host.name]) < n:
            raise LabError(
                f"only {len(vfs[pair.host.name])} free VFs on {pair.host.name} for {n} floor pods"
            )
    nb_remote = f"unix:{plan.ovn_dir(plan.cp)}/ovnnb_db.sock"
    sb_remote = f"unix:{plan.ovn_dir(plan.cp)}/ovnsb_db.sock"
    pods = sum(n for _, n in counts)
    out: list[PodSample] = []
    with contextlib.ExitStack() as stack:
        nb, nb_idl = stack.enter_context(open_api(nb_remote, "OVN_Northbound", NbApi))
        sb_idl = None
        if sb_up:
            _, sb_idl = stack.enter_context(open_api(sb_remote, "OVN_Southbound", SbApi, SB_TABLES))
        floors: dict[str, Floor] = {}
        for pair, _ in counts:
            ovs_remote = f"unix:{plan.ovs_dir(pair.dpu)}/db.sock"
            ovs, ovs_idl = stack.enter_context(open_api(ovs_remote, "Open_vSwitch", OvsApi))
            floors[pair.host.name] = Floor(plan, pair, nb, nb_idl, ovs, ovs_idl, sb_idl)
            stack.callback(floors[pair.host.name].close)
        for r in range(rounds):
            jobs = [
                (floors[pair.host.name], vfs[pair.host.name][i], name)
                for pair, i, name in pod_jobs(counts, "f", r)
            ]
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                samples = list(pool.map(partial(_floor_add, round_no=r), jobs))
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                list(pool.map(lambda job, sample: job[0].delete(job[1], sample), jobs, samples))
            out += samples
            label = f"floor{' (SB up)' if sb_up else ''}"
            say(_round_line(label, r, rounds, pods, len(counts), samples))
    return out


def _floor_add(job: tuple[Floor, FreeVf, str], round_no: int) -> PodSample:
    floor, vf, pod = job
    return floor.add(vf, pod, round_no)


# ---------------------------------------------------------------- summary
def _rate(samples: Sequence[PodSample]) -> float | None:
    """Median over rounds of pods / (last first-reply - first ADD start)."""
    rates = []
    for r in sorted({s.round for s in samples}):
        batch = [s for s in samples if s.round == r and s.ready_s is not None]
        if batch:
            span = max(s.finished for s in batch) - min(s.started for s in batch)
            if span > 0:
                rates.append(len(batch) / span)
    return summarize(rates).get("median") if rates else None


def summarize_run(samples: Sequence[PodSample]) -> dict[str, Any]:
    """Latency summaries (ms) and pods/s of one mode's samples."""
    ok = [s for s in samples if s.error is None]

    def ms(values: list[float | None]) -> dict[str, Any]:
        return summarize([v * 1000 for v in values if v is not None])

    steps: dict[str, list[float]] = {}
    for s in ok:
        for k, v in s.steps.items():
            steps.setdefault(k, []).append(v * 1000)
    return {
        "ready_ms": ms([s.ready_s for s in ok]),
        "add_ms": ms([s.add_s for s in ok]),
        "del_ms": ms([s.del_s for s in ok]),
        "ovn_installed_ms": ms([s.ovn_installed_s for s in ok]),
        "steps_mean_ms": {k: sum(v) / len(v) for k, v in steps.items()},
        "pods_per_s": _rate(ok),
        "errors": [s.error for s in samples if s.error is not None],
        "retries": sum(s.retries for s in samples),
        "samples_ms": [round(s.ready_s * 1000, 3) for s in ok if s.ready_s is not None],
    }


def sysfs_discovery_ms(plan: LabPlan, pair: NicPair, repeat: int = 5) -> dict[str, float]:
    """Median time of the host agent's VF discovery on the emulated (FUSE) sysfs and on a
    copy of the same tree on a regular filesystem (what a real /sys costs)."""
    from dpunet.bench.stats import percentile
    from dpunet.hw.pools import discover_pool_devices
    from dpunet.hw.sysfs import Sysfs

    root = plan.sysfs_root(pair.host)
    assert root is not None
    copy = Path(tempfile.mkdtemp(prefix="dpunet-bench-sysfs-"))
    try:
        # attributes the kernel refuses to read (EOPNOTSUPP) are left empty by the copy
        subprocess.run(["cp", "-a", f"{root}/.", str(copy)], capture_output=True, check=False)
        out = {}
        for label, tree in (("emulated_fuse", root), ("regular_fs_copy", copy)):
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                discover_pool_devices(Sysfs(tree))
                times.append((time.perf_counter() - started) * 1000)
            out[label] = percentile(times, 50)
        return out
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def run_mode(
    plan: LabPlan, pods: int, concurrency: int, rounds: int, floor: bool,
    say: Callable[[str], None],
) -> dict[str, Any]:  # fmt: skip
    """dpunet and its floor for one (pods, concurrency) setting on the first pair."""
    return run_pairs(plan, [(plan.pairs[0], pods)], concurrency, rounds, floor, say)


def run_all_pairs_burst(
    plan: LabPlan, rounds: int, floor: bool, say: Callable[[str], None]
) -> dict[str, Any]:
    """Every free VF of every pair at once (dpunet, then its floors the same way)."""
    counts = [(pair, len(free_vfs(plan, pair))) for pair in plan.pairs]
    total = sum(n for _, n in counts)
    if total < 1:
        raise LabError("no free VF in the lab")
    return run_pairs(plan, counts, total, rounds, floor, say)


def run_pairs(
    plan: LabPlan, counts: Sequence[tuple[NicPair, int]], concurrency: int, rounds: int,
    floor: bool, say: Callable[[str], None],
) -> dict[str, Any]:  # fmt: skip
    """dpunet and its floor, `counts` pods on each pair, `concurrency` ADDs at once over
    all of them. With more than one pair: `pairs` and each pair's own summary
    (`per_pair`), and the phases over every pair's daemons."""
    pairs = [pair for pair, _ in counts]
    before = [scrape_all(plan, pair) for pair in pairs]
    dpunet = run_dpunet(plan, counts, concurrency, rounds, say)
    after = [scrape_all(plan, pair) for pair in pairs]
    result: dict[str, Any] = {
        "pods": sum(n for _, n in counts),
        "concurrency": concurrency,
        "rounds": rounds,
        "dpunet": summarize_run(dpunet),
        "phases_mean_s": phase_split(merge_scrapes(before), merge_scrapes(after)),
    }
    modes = {"dpunet": dpunet}
    if floor:
        modes["floor"] = run_floor(plan, counts, concurrency, rounds, say)
        modes["floor_sb"] = run_floor(plan, counts, concurrency, rounds, say, sb_up=True)
        result["floor"] = summarize_run(modes["floor"])
        result["floor_sb"] = summarize_run(modes["floor_sb"])
        d, f = result["dpunet"]["ready_ms"], result["floor"]["ready_ms"]
        result["ratio_median"] = ratio(d.get("median"), f.get("median"))
        result["ratio_p99"] = ratio(d.get("p99"), f.get("p99"))
        f = result["floor_sb"]["ready_ms"]
        result["ratio_median_floor_sb"] = ratio(d.get("median"), f.get("median"))
        result["ratio_p99_floor_sb"] = ratio(d.get("p99"), f.get("p99"))
    if len(counts) > 1:
        result["pairs"] = {pair.host.name: n for pair, n in counts}
        result["per_pair"] = per_pair_summary(modes)
    return result


def merge_scrapes(scrapes: Sequence[Scrapes]) -> Scrapes:
    """Several pairs' scrapes as one: host and DPU agent samples summed over the pairs
    (their histograms add up), the controller's (one daemon) from the first."""

    def total(samples: Sequence[Samples]) -> Samples:
        out: Samples = {}
        for one in samples:
            for key, value in one.items():
                out[key] = out.get(key, 0.0) + value
        return out

    return Scrapes(
        total([s.host for s in scrapes]),
        scrapes[0].controller if scrapes else {},
        total([s.dpu for s in scrapes]),
    )


def per_pair_summary(modes: Mapping[str, Sequence[PodSample]]) -> dict[str, dict[str, Any]]:
    """Per pair and mode: ready latency (ms), pods/s and how many failed."""
    out: dict[str, dict[str, Any]] = {}
    for mode, samples in modes.items():
        for pair in sorted({s.pair for s in samples}):
            mine = [s for s in samples if s.pair == pair]
            ok = [s for s in mine if s.error is None]
            out.setdefault(pair, {})[mode] = {
                "ready_ms": summarize([s.ready_s * 1000 for s in ok if s.ready_s is not None]),
                "pods_per_s": _rate(ok),
                "errors": len(mine) - len(ok),
            }
    return out
