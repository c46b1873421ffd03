"""The lab as a whole: `up`, `down`, `status` and `exec`.

`up` builds the seed's deployment in namespaces (see topology.py for names and
addresses), step by step; if a step fails it tears down what was built and
keeps the daemons' logs for inspection. `down` needs nothing but the lab's
name: it finds namespaces by prefix and processes by namespace, so it also
cleans up after a crashed or half-built lab.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from dpunet.lab import daemons, image, nic_control, pods, services
from dpunet.lab.cri import engine as cri
from dpunet.lab.inventory import nic_inventory
from dpunet.lab.runner import (
    LabError,
    ip,
    list_netns,
    netns_pids,
    pid_alive,
    read_pid,
    run,
    terminate,
    wait_for,
)
from dpunet.lab.steps import Step, StepReporter, run_steps, timing_record
from dpunet.lab.topology import (
    CP_BRIDGE,
    DPU_BRIDGE,
    DPU_HOST_PF_REP,
    DPU_PF_PCI,
    DPU_UPLINK,
    EXT_ADDRESS,
    HOST_PF_NAME,
    RUN_ROOT,
    UNDERLAY_MTU,
    LabPlan,
    LabSpec,
    NicPair,
    Node,
)
from dpunet.setup import units
from dpunet.setup.plan import SetupError

WIRE_BRIDGE = "ul"
NIC_MARKER = "dpunet-lab:"  # ifalias prefix of the emulated NIC's netdevs (lab.nic)
PERSISTED_OVS_FILES = ("conf.db", ".conf.db.~lock~")  # on a BlueField's eMMC: /etc/openvswitch
FAILED_LOGS_ROOT = Path("/tmp")
UP_WORKERS = 4  # steps of `up` at once (mostly waiting on daemons; 2 cores suffice)


def load_plan(name: str) -> LabPlan:
    """The plan of an existing lab, from its state file."""
    state = RUN_ROOT / name / "lab.json"
    try:
        spec = LabSpec.model_validate(json.loads(state.read_text())["spec"])
    except FileNotFoundError:
        raise LabError(
            f"no lab named {name!r} is up (start one with `dpunet lab up --name {name}`)"
        ) from None
    except (ValueError, KeyError) as exc:
        raise LabError(
            f"lab state {state} is unreadable ({exc}); run `dpunet lab down --name {name}`"
        ) from exc
    return LabPlan(spec)


def up_times(name: str) -> dict[str, Any] | None:
    """The times `lab up` recorded for lab `name` (steps.timing_record), None when its
    state has none (brought up by an older dpunet)."""
    try:
        times = json.loads((RUN_ROOT / name / "lab.json").read_text()).get("up")
    except (OSError, ValueError, AttributeError):
        return None
    return times if isinstance(times, dict) else None


class Lab:
    """Bring-up and inspection of one lab."""

    def __init__(self, plan: LabPlan) -> None:
        self.plan = plan

    # ----------------------------------------------------------------- up
    def up(self, report: StepReporter, workers: int = UP_WORKERS) -> dict[str, Any]:
        """Build the whole lab, the pairs side by side (`workers` steps at once); on
        failure clean up and raise LabError. Returns the times (see steps.timing_record),
        also kept in lab.json as `up`."""
        self._check_free()
        self.plan.run_dir.mkdir(parents=True)
        state: dict[str, Any] = {"spec": self.plan.spec.model_dump(), "created": time.time()}
        self.plan.state_file.write_text(json.dumps(state))
        try:
            times = timing_record(run_steps(self.steps(), report, workers), workers)
        except BaseException as exc:
            logs = self._save_logs()
            down(self.plan.name)
            if isinstance(exc, LabError):
                hint = f" (daemon logs kept in {logs})" if logs else ""
                raise LabError(f"lab up failed: {exc}{hint}") from exc
            raise
        self.plan.state_file.write_text(json.dumps({**state, "up": times}))
        return times

    def _check_free(self) -> None:
        daemons.require_tools()
        if os.geteuid() != 0:
            raise LabError("the lab needs root (network namespaces, OVS, FUSE)")
        if self.plan.spec.image is not None and not self.plan.spec.bare:
            image.require_image(self.plan.spec.image)
        taken = sorted(n for n in list_netns() if n.startswith(f"{self.plan.name}-"))
        if self.plan.run_dir.exists() or taken:
            raise LabError(
                f"lab {self.plan.name!r} already exists; use it, or remove it with "
                f"`dpunet lab down --name {self.plan.name}` (or pick another --name)"
            )

    def steps(self) -> list[Step]:
        """The bring-up sequence: shared parts and cp's daemons, and each pair's chain (its
        DPU's OVS, brp0, ovn-controller, the host's VFs, dpunet-dpu, dpunet-host) beside
        them and the other pairs'. Keys: what a later step waits for."""
        plan, cp = self.plan, self.plan.cp
        out = [
            Step(
                "TLS material (a CA, a certificate per component)",
                partial(daemons.make_pki, plan),
                key="pki",
                needs=(),
            ),
            Step("network namespaces", self._create_namespaces, key="netns", needs=()),
            Step("underlay wire and addresses", self._wire_underlay, key="wire", needs=("netns",)),
            Step(
                "emulated SR-IOV NICs (sysfs + VFs)", self._start_nics, key="nics", needs=("wire",)
            ),
            Step(
                f"Open vSwitch on {cp.name}",
                partial(daemons.start_ovs, plan, cp),
                key="ovs:cp",
                needs=("wire",),
            ),
            Step(
                "control plane bridge breth0",
                self._setup_cp_bridge,
                key="breth0",
                needs=("ovs:cp",),
            ),
            Step(
                "OVN central (NB, SB, northd) on cp",
                lambda: daemons.start_ovn_central(plan, cp),
                key="central",
                needs=("pki", "breth0"),
            ),
            Step(
                f"ovn-controller on {cp.name}",
                partial(self._start_controller, cp),
                key="ovn-controller:cp",
                needs=("central",),
            ),
        ]
        if not plan.spec.bare:  # listed first: the runner starts what is listed first
            out += [
                Step(
                    "dpunet-controller on cp",
                    partial(services.start_controller, plan),
                    key="dpunet-controller",
                    needs=("central", "ovn-controller:cp"),
                ),
                Step(
                    "dpunet-node on cp",
                    partial(services.start_full_node_agent, plan, cp),
                    needs=("dpunet-controller",),
                ),
            ]
        for pair in plan.pairs:
            out += self._pair_steps(pair)
        return out

    def _pair_steps(self, pair: NicPair) -> list[Step]:
        """One pair's chain of `up`."""
        plan = self.plan
        dpu, host, tag = pair.dpu.name, pair.host.name, pair.host.name
        out = [
            Step(
                f"Open vSwitch on {dpu}",
                partial(daemons.start_ovs, plan, pair.dpu),
                key=f"ovs:{dpu}",
                needs=("nics",),
                pair=tag,
            ),
            Step(
                f"DPU bridge brp0 on {dpu}",
                partial(self._setup_dpu, pair.dpu),
                key=f"brp0:{dpu}",
                needs=(f"ovs:{dpu}",),
                pair=tag,
            ),
            Step(
                f"ovn-controller on {dpu}",
                partial(self._start_controller, pair.dpu),
                key=f"ovn-controller:{dpu}",
                needs=("central", f"brp0:{dpu}"),
                pair=tag,
            ),
            Step(
                f"host setup on {host}",
                partial(self._setup_host, pair.host),
                key=f"host:{host}",
                needs=(f"brp0:{dpu}",),
                pair=tag,
            ),
        ]
        if plan.spec.bare:
            return out
        return [
            *out,
            Step(
                f"dpunet-dpu on {dpu}",
                partial(services.start_dpu_agent, plan, pair.dpu),
                key=f"dpunet-dpu:{dpu}",
                needs=("dpunet-controller", f"ovn-controller:{dpu}", f"host:{host}"),
                pair=tag,
            ),
            Step(
                f"dpunet-host on {host}",
                partial(services.start_host_agent, plan, pair.host),
                needs=(f"dpunet-dpu:{dpu}",),
                pair=tag,
            ),
        ]

    # --------------------------------------------------------------- steps
    def _create_namespaces(self) -> None:
        for node in self.plan.nodes:
            ip("netns", "add", node.netns)
            ip("link", "set", "lo", "up", netns=node.netns)
            # arp_ignore: the userspace datapath leaves OVS ports (veth host ends) live in the
            # node's stack, which must not answer ARP for the node's own addresses on them
            # (a pod would then reach ovn-k8s-mp0 around OVN, e.g. past a service's un-DNAT)
            for key in (
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv4.conf.all.arp_ignore=1",
            ):
                run(["sysctl", "-qw", key], netns=node.netns)

    def _wire(self, node: Node, ifname: str) -> None:
        """A veth from `node`'s `ifname` to the underlay bridge (port named after the node)."""
        wire = self.plan.wire.netns
        ip(
            "link", "add", ifname, "netns", node.netns, "mtu", str(UNDERLAY_MTU),
            "type", "veth", "peer", "name", node.name, "netns", wire,
        )  # fmt: skip
        ip("link", "set", node.name, "master", WIRE_BRIDGE, "up", netns=wire)
        # The userspace OVS datapath cannot finish checksums that veths offload.
        for ns, dev in ((node.netns, ifname), (wire, node.name)):
            run(["ethtool", "-K", dev, "tx", "off"], netns=ns)
        ip("link", "set", ifname, "up", netns=node.netns)

    def _wire_underlay(self) -> None:
        plan = self.plan
        ip("link", "add", WIRE_BRIDGE, "type", "bridge", netns=plan.wire.netns)
        ip("link", "set", WIRE_BRIDGE, "up", netns=plan.wire.netns)
        prefix = plan.underlay_prefix
        self._wire(plan.ext, "eth0")
        ip("addr", "add", f"{EXT_ADDRESS}/{prefix}", "dev", "eth0", netns=plan.ext.netns)
        self._wire(plan.cp, "eth0")
        for pair in plan.pairs:
            self._wire(pair.dpu, DPU_UPLINK)
            self._dpu_network(pair.dpu)

    def _dpu_network(self, dpu: Node) -> None:
        """The DPU's own network configuration, applied at every boot (netplan on a
        BlueField): as before `dpu setup`, the underlay address and default route on p0."""
        prefix = self.plan.underlay_prefix
        ip("link", "set", DPU_UPLINK, "up", netns=dpu.netns)
        ip("addr", "add", f"{dpu.underlay_ip}/{prefix}", "dev", DPU_UPLINK, netns=dpu.netns)
        ip("route", "add", "default", "via", str(EXT_ADDRESS), netns=dpu.netns)

    def _start_nics(self) -> None:
        nic_control.start(self.plan)

    def _setup_cp_bridge(self) -> None:
        """The full node's OVS settings and breth0 (the seed's ovs-node and ovnkube-node in
        full mode), through `dpunet node setup`, installed as cp's boot unit; then the
        default route (the node's own network configuration)."""
        plan, cp = self.plan, self.plan.cp
        self._dpunet(
            cp,
            "node", "setup",
            "--uplink", "eth0",
            "--bridge", CP_BRIDGE,
            "--address", f"{cp.underlay_ip}/{plan.underlay_prefix}",
            "--system-id", cp.name,
            "--hostname", cp.name,
            "--ovn-remote", plan.sb_remote,
            "--datapath-type", "netdev",
        )  # fmt: skip
        ip("route", "add", "default", "via", str(EXT_ADDRESS), netns=cp.netns)

    def _dpunet(self, node: Node, *args: str) -> None:
        """A `dpunet ... setup` command in `node`, installed as its boot unit too."""
        run(
            [
                sys.executable, "-m", "dpunet.cli.main", *args,
                "--install-unit", "--unit-root", str(self.plan.unit_root(node)),
            ],
            netns=node.netns,
            env=self.plan.node_env(node),
            timeout=60,
        )  # fmt: skip

    def boot_units(self, node: Node) -> None:
        """Run the boot units installed on `node`, as systemd would at boot (the lab has no
        systemd: each unit's ExecStart in the node, in name order)."""
        directory = self.plan.unit_root(node) / units.UNIT_DIR
        found = sorted(directory.glob("*.service"))
        if not found:
            raise LabError(f"{node.name} has no boot unit under {directory}")
        for path in found:
            try:
                argv = units.exec_start(path.read_text())
            except SetupError as exc:
                raise LabError(f"{path}: {exc}") from exc
            run(argv, netns=node.netns, env=self.plan.node_env(node), timeout=60)

    def _setup_dpu(self, dpu: Node) -> None:
        """The seed's "Worker-dpu Open vSwitch" section, through `dpunet dpu setup`."""
        host = self.plan.node(dpu.peer or "")
        self._dpunet(
            dpu,
            "dpu", "setup",
            "--host-node", host.name,
            "--uplink", DPU_UPLINK,
            "--host-pf-rep", DPU_HOST_PF_REP,
            "--bridge", DPU_BRIDGE,
            "--gw-nexthop", str(EXT_ADDRESS),
            "--address", f"{dpu.underlay_ip}/{self.plan.underlay_prefix}",
            "--system-id", dpu.name,
            "--hostname", dpu.name,
            "--ovn-remote", self.plan.sb_remote,
            "--datapath-type", "netdev",
        )  # fmt: skip

    def _setup_host(self, host: Node) -> None:
        """The seed's "Worker-host SR-IOV Configuration", through `dpunet host setup`
        (the emulated NIC starts with no VFs), then the host's underlay address."""
        ns = host.netns
        self._dpunet(
            host,
            "host", "setup",
            "--pf", HOST_PF_NAME, "--num-vfs", str(self.plan.spec.vfs), "--mgmt-vf", "0",
        )  # fmt: skip
        prefix = self.plan.underlay_prefix
        ip("addr", "add", f"{host.underlay_ip}/{prefix}", "dev", HOST_PF_NAME, netns=ns)
        ip("route", "add", "default", "via", str(EXT_ADDRESS), netns=ns)

    def _start_controller(self, node: Node) -> None:
        daemons.start_ovn_controller(self.plan, node)
        daemons.wait_chassis(self.plan, node)

    # ------------------------------------------------------------- reboot
    def reboot(self, node_name: str, report: StepReporter, lose_ovs_db: bool = False) -> None:
        """Reboot a DPU as the hardware does (see reboot_steps); LabError on failure
        (the DPU is then left as far as its boot got)."""
        run_steps(self.reboot_steps(node_name, lose_ovs_db), report)

    def reboot_steps(self, node_name: str, lose_ovs_db: bool = False) -> list[Step]:
        """A DPU's power cycle, then its boot path: the same start-up code as `up`.
        `lose_ovs_db`: OVS's conf.db is lost too (a DPU reinstalled, its disk replaced)."""
        dpu = self._dpu(node_name)
        lost = "run directories and OVS's conf.db" if lose_ovs_db else "run directories"
        steps = [
            Step(f"{dpu.name}: every process killed (-9)", partial(self._kill_all, dpu)),
            Step(f"{dpu.name}: kernel state lost", partial(self._lose_kernel_state, dpu)),
            Step(
                f"{dpu.name}: NIC reset (uplink, representors recreated)",
                partial(self._reset_nic, dpu),
            ),
            Step(f"{dpu.name}: {lost} lost", partial(self._lose_files, dpu, lose_ovs_db)),
            Step(f"boot: {dpu.name} network configuration", partial(self._dpu_network, dpu)),
            Step(f"boot: Open vSwitch on {dpu.name}", partial(daemons.start_ovs, self.plan, dpu)),
            Step(
                f"boot: {dpu.name}'s boot units (dpu setup: brp0)",
                partial(self.boot_units, dpu),
            ),
            Step(f"boot: ovn-controller on {dpu.name}", partial(self._start_controller, dpu)),
        ]
        if not self.plan.spec.bare:
            steps.append(
                Step(
                    f"boot: dpunet-dpu on {dpu.name}",
                    partial(services.start_dpu_agent, self.plan, dpu),
                )
            )
        return steps

    def _dpu(self, node_name: str) -> Node:
        dpus = [pair.dpu for pair in self.plan.pairs]
        for dpu in dpus:
            if dpu.name == node_name:
                if dpu.netns not in list_netns():
                    raise LabError(f"{node_name} of lab {self.plan.name!r} has no namespace")
                return dpu
        names = ", ".join(d.name for d in dpus)
        raise LabError(f"{node_name} is not a DPU of lab {self.plan.name!r} (DPUs: {names})")

    def _kill_all(self, dpu: Node) -> None:
        """SIGKILL every process of the DPU (OVS, OVN, dpunet-dpu, anything else there)."""
        pids = netns_pids(dpu.netns)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_for(
            f"the processes of {dpu.name} to die",
            lambda: not any(pid_alive(pid) for pid in pids),
            timeout=10,
        )

    def _lose_kernel_state(self, dpu: Node) -> None:
        """Netdevs the DPU's kernel made are gone after a reboot (OVS's taps are persistent
        and outlive ovs-vswitchd, with the addresses and routes on them). The NIC's own
        netdevs, known by their marker, are the NIC's to reset; the uplink's sysctls are
        the kernel's defaults again."""
        out = ip("-j", "link", "show", netns=dpu.netns).stdout
        for link in json.loads(out or "[]"):
            name = link.get("ifname", "")
            if name != "lo" and not link.get("ifalias", "").startswith(NIC_MARKER):
                ip("link", "del", name, netns=dpu.netns, check=False)
        default = run(["sysctl", "-n", "net.ipv4.conf.default.arp_ignore"], netns=dpu.netns)
        run(
            ["sysctl", "-qw", f"net.ipv4.conf.{DPU_UPLINK}.arp_ignore={default.stdout.strip()}"],
            netns=dpu.netns,
        )

    def _reset_nic(self, dpu: Node) -> None:
        """What a reboot does to the NIC: a reset of the DPU's PCI function (the emulated
        NIC recreates the uplink and the representors; the host's VFs stay in their pods)."""
        sysfs = self.plan.sysfs_root(dpu)
        assert sysfs is not None
        reset = sysfs / "bus" / "pci" / "devices" / DPU_PF_PCI / "reset"
        try:
            reset.write_text("1\n")
        except OSError as exc:
            raise LabError(f"resetting {dpu.name}'s NIC function ({reset}) failed: {exc}") from exc

    def _lose_files(self, dpu: Node, lose_ovs_db: bool) -> None:
        """/run is a tmpfs: sockets, pid and control files go. What a BlueField keeps on
        its eMMC stays: OVS's conf.db (unless `lose_ovs_db`), the logs, dpunet-dpu's
        config and token."""
        plan = self.plan
        kept = () if lose_ovs_db else PERSISTED_OVS_FILES
        for directory in (plan.ovs_dir(dpu), plan.ovn_dir(dpu)):
            for path in directory.iterdir():
                if path.name not in kept and path.suffix != ".log":
                    path.unlink()
        for pidfile in plan.node_dir(dpu).glob("*.pid"):
            pidfile.unlink()

    # --------------------------------------------------------------- logs
    def _save_logs(self) -> Path | None:
        """Copy every *.log of the lab to /tmp before a failed `up` removes the run dir."""
        logs = sorted(self.plan.run_dir.rglob("*.log")) if self.plan.run_dir.exists() else []
        if not logs:
            return None
        dest = FAILED_LOGS_ROOT / f"dpunet-lab-{self.plan.name}-logs"
        shutil.rmtree(dest, ignore_errors=True)
        for log in logs:
            target = dest / log.relative_to(self.plan.run_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(log, target)
        return dest

    # ------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        """Nodes, processes (alive or not), addresses, VFs and representors."""
        plan = self.plan
        existing = list_netns()
        nodes: list[dict[str, Any]] = []
        for node in plan.nodes:
            present = node.netns in existing
            nodes.append(
                {
                    "name": node.name,
                    "role": node.role.value,
                    "netns": node.netns,
                    "present": present,
                    "underlay_ip": str(node.underlay_ip) if node.underlay_ip else None,
                    "addresses": _addresses(node.netns) if present else [],
                    "processes": [
                        _process_status(d.name, d.pidfile)
                        for d in [
                            *daemons.node_daemons(plan, node),
                            *services.node_services(plan, node),
                            *cri.node_daemons(plan, node),
                        ]
                    ],
                }
            )
        nicd = _process_status("dpunet-lab-nicd", nic_control.pidfile(plan.run_dir))
        healthy = (
            all(n["present"] for n in nodes)
            and all(p["alive"] for n in nodes for p in n["processes"])
            and nicd["alive"]
        )
        return {
            "name": plan.name,
            "run_dir": str(plan.run_dir),
            "healthy": healthy,
            "nic_daemon": nicd,
            "nodes": nodes,
            "nics": [nic_inventory(plan, pair) for pair in plan.pairs],
        }


def _process_status(name: str, pidfile: Path) -> dict[str, Any]:
    pid = read_pid(pidfile)
    return {"name": name, "pid": pid, "alive": pid_alive(pid)}


def _addresses(netns: str) -> list[str]:
    out = ip("-j", "-4", "addr", "show", netns=netns, check=False).stdout
    try:
        links = json.loads(out or "[]")
    except json.JSONDecodeError:
        return []
    return [
        f"{link['ifname']} {a['local']}/{a['prefixlen']}"
        for link in links
        if link.get("ifname") != "lo"
        for a in link.get("addr_info", [])
    ]


# --------------------------------------------------------------------- down
def down(name: str) -> list[str]:
    """Remove every namespace, process, mount and file of lab `name`; returns what was removed."""
    removed: list[str] = []
    run_dir = RUN_ROOT / name
    from_image = False
    with contextlib.suppress(LabError):  # no readable state: no pods were started through it
        plan = load_plan(name)
        from_image = plan.spec.image is not None
        removed += pods.remove_all_pods(plan)
    removed += cri.stop_all(run_dir)  # and what their sandboxes still hold
    if nic_control.stop(run_dir):
        removed.append("emulated NIC daemon")
    namespaces = sorted(n for n in list_netns() if n.startswith(f"{name}-"))
    pids = [pid for ns in namespaces for pid in netns_pids(ns)]
    if pids:
        terminate(pids)
        removed.append(f"{len(pids)} processes")
    if from_image:  # the daemons' containers, should their podman not have removed them
        removed += image.remove_lab_containers(name)
    for ns in namespaces:
        ip("netns", "del", ns, check=False)
    wait_for(
        "lab namespaces to disappear", lambda: not (set(namespaces) & list_netns()), timeout=10
    )
    removed += [f"netns {ns}" for ns in namespaces]
    if run_dir.exists():
        _unmount_below(run_dir)
        shutil.rmtree(run_dir)
        removed.append(str(run_dir))
    return removed


def _unmount_below(path: Path) -> None:
    """Detach mounts a runtime may have left under the lab's run dir (e.g. container shm)."""
    prefix = str(path) + "/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", mount], check=False, capture_output=True)


def lab_names() -> list[str]:
    """Labs that have a run directory."""
    if not RUN_ROOT.is_dir():
        return []
    return sorted(p.name for p in RUN_ROOT.iterdir() if (p / "lab.json").exists())


def exec_argv(plan: LabPlan, node_name: str, command: Sequence[str]) -> list[str]:
    """argv that runs `command` inside a node with that node's OVS/OVN/sysfs environment."""
    node = plan.node(node_name)
    if node.netns not in list_netns():
        raise LabError(f"node {node_name} of lab {plan.name!r} has no namespace (is the lab up?)")
    # dpunet's own commands resolve to the installation running this one.
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", os.defpath)])
    env = {**plan.node_env(node), "PATH": path}
    return [
        "ip",
        "netns",
        "exec",
        node.netns,
        "env",
        *(f"{k}={v}" for k, v in env.items()),
        *command,
    ]


def exec_in_node(plan: LabPlan, node_name: str, command: Sequence[str]) -> int:
    """Run `command` inside a node, attached to this terminal; returns its exit code."""
    return subprocess.call(exec_argv(plan, node_name, command))
