"""The lab's emulated SR-IOV NIC: sysfs layout, sriov_numvfs semantics, VF lifecycle.

Each lab test starts its own `python -m dpunet.lab.nicd` on two throwaway
namespaces (a host and a DPU with a `p0` veth) and removes everything after.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from polling import wait_until
from pydantic import ValidationError

from dpunet.lab.nic import EmulatedNic, Link, NetnsSide, parse_kstrtou16, vf_address
from dpunet.lab.nic_config import NicDaemonConfig, NicPairConfig, PciAddress
from dpunet.linux.netns import iproute_at

LAB = "nictest"
PF_MAC = "02:d5:7e:01:00:01"
VF_PREFIX = "02:d5:7e:01"
SWITCH_ID = "d57e0100a1b2c3d4"
VF_ADDRS = ["0000:02:00.3", "0000:02:00.4", "0000:02:00.5"]
_counter = itertools.count()


def vf_mac(n: int) -> str:
    return f"{VF_PREFIX}:01:{n:02x}"


# -- pure logic ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "value"),
    [(b"0", 0), (b"3\n", 3), (b"+7", 7), (b"0x10", 16), (b"010", 8), (b"65535", 65535)],
)
def test_kstrtou16_accepts_what_the_kernel_accepts(data: bytes, value: int) -> None:
    assert parse_kstrtou16(data) == value


@pytest.mark.parametrize(
    "data", [b"", b"\n", b"abc", b"-1", b" 3", b"3 ", b"3\n\n", b"08", b"0x", b"65536", b"1_0"]
)
def test_kstrtou16_rejects_what_the_kernel_rejects(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_kstrtou16(data)


def test_vf_addresses_follow_ari_routing_ids() -> None:
    pf = PciAddress.parse("0000:02:00.0")
    assert [str(vf_address(pf, n)) for n in range(3)] == VF_ADDRS
    assert str(vf_address(pf, 5)) == "0000:02:01.0"
    assert str(vf_address(pf, 252)) == "0000:02:1f.7"
    assert str(vf_address(pf, 253)) == "0000:03:00.0"


def _link(name: str, alias: str = "", index: int = 7) -> Link:
    return Link(
        index, name, alias, vf_mac(1), "ff:ff:ff:ff:ff:ff", 1500, 0, "down", 0, 1, None, None
    )


def test_a_pair_end_being_created_is_not_a_device_until_marked() -> None:
    """The engine knows a half-made pair by its names; sysfs shows it only once whole (a
    client acting on a VF the kernel returned must find it complete, as the kernel hands
    it over)."""
    pair = NicPairConfig(
        host_node="host1", host_netns="h", dpu_node="dpu1", dpu_netns="d", numvfs=3,
        pf_mac=PF_MAC, vf_mac_prefix=VF_PREFIX, phys_switch_id=SWITCH_ID,
    )  # fmt: skip
    host, dpu = NetnsSide.__new__(NetnsSide), NetnsSide.__new__(NetnsSide)  # no sockets
    host.links, dpu.links = {}, {}
    nic = EmulatedNic(LAB, pair, host, dpu, logging.getLogger(__name__), threading.RLock())
    nic.numvfs = 3
    nic.pending = {"eth0": (1, False), "pf0vf1": (1, True)}
    host.links[7], dpu.links[9] = _link("eth0"), _link("pf0vf1", index=9)
    assert nic.find(1, rep=False) == host.links[7]
    assert nic.find(1, rep=True) == dpu.links[9]
    assert nic.host_device(host.links[7]) is None
    assert nic.port_name(dpu.links[9]) is None
    host.links[7] = _link("eth0", nic.marker(1, rep=False))
    dpu.links[9] = _link("pf0vf1", nic.marker(1, rep=True), index=9)
    assert str(nic.host_device(host.links[7])) == VF_ADDRS[1]
    assert nic.port_name(dpu.links[9]) == "pf0vf1"


def test_config_rejects_a_pf_mac_among_the_vf_macs() -> None:
    pair = {
        "host_node": "h",
        "host_netns": "h",
        "dpu_node": "d",
        "dpu_netns": "d",
        "pf_mac": vf_mac(2),
        "vf_mac_prefix": VF_PREFIX,
        "phys_switch_id": SWITCH_ID,
    }
    with pytest.raises(ValidationError, match="pf_mac"):
        NicPairConfig.model_validate(pair)
    with pytest.raises(ValidationError, match="numvfs"):
        NicPairConfig.model_validate(pair | {"pf_mac": PF_MAC, "numvfs": 17})


# -- helpers of the lab tests ----------------------------------------------------


def run(*cmd: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return proc.stdout


def links(ns: str) -> dict[str, dict[str, object]]:
    """`ip -j link` of a netns, by name."""
    return {link["ifname"]: link for link in json.loads(run("ip", "-j", "-n", ns, "link", "show"))}


def write_attr(path: Path, data: str) -> None:
    """One write(2), as `echo N > sriov_numvfs` does."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)


def read_errno(path: Path) -> int | None:
    try:
        path.read_text()
    except OSError as exc:
        return exc.errno
    return None


@dataclass
class NicLab:
    """A running daemon on throwaway namespaces."""

    host_ns: str
    dpu_ns: str
    ns_prefix: str
    workdir: Path
    mountpoint: Path
    config: NicDaemonConfig
    proc: subprocess.Popen[bytes]

    @property
    def host(self) -> Path:
        return self.mountpoint / "host1"

    @property
    def dpu(self) -> Path:
        return self.mountpoint / "dpu1"

    @property
    def numvfs(self) -> Path:
        return self.host / "bus/pci/devices/0000:02:00.0/sriov_numvfs"

    def netns(self, suffix: str) -> str:
        """Create a further throwaway netns (a pod)."""
        name = f"{self.ns_prefix}-{suffix}"
        run("ip", "netns", "add", name)
        return name

    def wait_ready(self) -> None:
        proc = self.proc
        ready = self.config.ready_file

        def ready_or_exited() -> bool:
            with contextlib.suppress(FileNotFoundError):
                return ready.read_text() == f"{proc.pid}\n"
            return proc.poll() is not None

        wait_until("the daemon's ready file", ready_or_exited, 20)
        assert proc.poll() is None, f"nicd exited: {self.log()}"

    def log(self) -> str:
        return (self.workdir / "nicd.log").read_text() + (self.workdir / "nicd.out").read_text()

    def marked(self, ns: str) -> list[str]:
        """Links of `ns` that are an end of one of the NIC's pairs (by the daemon's marker)."""
        return sorted(
            n
            for n, link in links(ns).items()
            if str(link.get("ifalias", "")).startswith(f"dpunet-lab:{LAB}:host1:")
        )


def start_daemon(workdir: Path) -> subprocess.Popen[bytes]:
    with open(workdir / "nicd.out", "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "dpunet.lab.nicd", str(workdir / "nicd.json")],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_daemon(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _remove_netns(prefix: str) -> None:
    for ns in run("ip", "netns", "list").split("\n"):
        name = ns.split(" ")[0]
        if name.startswith(prefix):
            subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def nic(tmp_path: Path) -> Iterator[NicLab]:
    """Two namespaces with `p0` in the DPU, and the daemon serving them (3 of 16 VFs)."""
    prefix = f"dnt{os.getpid()}x{next(_counter)}"
    host_ns, dpu_ns = f"{prefix}-host", f"{prefix}-dpu"
    mountpoint = tmp_path / "sys"
    cfg = NicDaemonConfig(
        lab=LAB,
        mountpoint=mountpoint,
        pidfile=tmp_path / "nicd.pid",
        ready_file=tmp_path / "nicd.ready",
        log_file=tmp_path / "nicd.log",
        pairs=[
            NicPairConfig(
                host_node="host1",
                host_netns=host_ns,
                dpu_node="dpu1",
                dpu_netns=dpu_ns,
                numvfs=3,
                pf_mac=PF_MAC,
                vf_mac_prefix=VF_PREFIX,
                phys_switch_id=SWITCH_ID,
            )
        ],
        sweep_interval=0.5,
    )
    (tmp_path / "nicd.json").write_text(cfg.model_dump_json())
    proc: subprocess.Popen[bytes] | None = None
    lab: NicLab | None = None
    try:
        run("ip", "netns", "add", host_ns)
        run("ip", "netns", "add", dpu_ns)
        run("ip", "-n", dpu_ns, "link", "add", "p0", "type", "veth", "peer", "name", "p0-wire")
        proc = start_daemon(tmp_path)
        lab = NicLab(host_ns, dpu_ns, prefix, tmp_path, mountpoint, cfg, proc)
        lab.wait_ready()
        yield lab
    finally:
        if lab is not None:
            proc = lab.proc  # a test may have replaced it
        if proc is not None:
            stop_daemon(proc)
        for _ in range(4):
            if f" {mountpoint} " in Path("/proc/mounts").read_text():
                subprocess.run(["umount", "-l", str(mountpoint)], check=False)
        _remove_netns(prefix)


# -- lab tests -------------------------------------------------------------------


@pytest.mark.lab
def test_host_side_layout_is_the_seeds(nic: NicLab) -> None:
    h = nic.host
    pf = h / "bus/pci/devices/0000:02:00.0"
    assert os.readlink(pf) == "../../../devices/pci0000:00/0000:02:00.0"
    assert (pf / "vendor").read_text() == "0x15b3\n"
    assert (pf / "device").read_text() == "0x101d\n"
    assert (pf / "class").read_text() == "0x020000\n"
    assert (pf / "sriov_totalvfs").read_text() == "16\n"
    assert (pf / "sriov_numvfs").read_text() == "3\n"
    assert os.readlink(pf / "driver") == "../../../bus/pci/drivers/mlx5_core"
    assert (pf / "driver").resolve() == (h / "bus/pci/drivers/mlx5_core").resolve()
    assert sorted(os.listdir(h / "bus/pci/drivers/mlx5_core")) == ["0000:02:00.0", *VF_ADDRS]
    virtfns = {n: os.readlink(pf / n) for n in os.listdir(pf) if n.startswith("virtfn")}
    assert virtfns == {f"virtfn{i}": f"../{a}" for i, a in enumerate(VF_ADDRS)}
    assert os.listdir(pf / "net") == ["enp2s0f0np0"]

    host_links = links(nic.host_ns)
    for i, addr in enumerate(VF_ADDRS):
        vf = h / "bus/pci/devices" / addr
        assert (vf / "vendor").read_text() == "0x15b3\n"
        assert (vf / "device").read_text() == "0x101e\n"
        assert os.readlink(vf / "physfn") == "../0000:02:00.0"
        assert (vf / "driver").resolve().name == "mlx5_core"
        assert os.listdir(vf / "net") == [f"enp2s0f0v{i}"]
        netdev = vf / "net" / f"enp2s0f0v{i}"
        assert (netdev / "address").read_text() == f"{vf_mac(i)}\n"
        assert (netdev / "ifindex").read_text() == f"{host_links[f'enp2s0f0v{i}']['ifindex']}\n"
        assert (netdev / "device").resolve() == vf.resolve()

    assert sorted(os.listdir(h / "class/net")) == [
        "enp2s0f0np0",
        "enp2s0f0v0",
        "enp2s0f0v1",
        "enp2s0f0v2",
        "lo",
    ]
    assert os.readlink(h / "class/net/enp2s0f0v1") == (
        "../../devices/pci0000:00/0000:02:00.4/net/enp2s0f0v1"
    )
    assert os.readlink(h / "class/net/lo") == "../../devices/virtual/net/lo"
    assert (h / "class/net/enp2s0f0np0/device/sriov_numvfs").read_text() == "3\n"
    assert (h / "class/net/enp2s0f0np0/address").read_text() == f"{PF_MAC}\n"

    v1 = h / "class/net/enp2s0f0v1"
    assert (v1 / "mtu").read_text() == "1500\n"
    assert (v1 / "operstate").read_text() == "up\n"
    assert (v1 / "carrier").read_text() == "1\n"
    assert read_errno(v1 / "phys_port_name") == errno.EOPNOTSUPP
    assert read_errno(v1 / "phys_switch_id") == errno.EOPNOTSUPP
    run("ip", "-n", nic.host_ns, "link", "set", "enp2s0f0v1", "down", "mtu", "1400")
    assert (v1 / "operstate").read_text() == "down\n"
    assert (v1 / "mtu").read_text() == "1400\n"
    assert read_errno(v1 / "carrier") == errno.EINVAL
    assert "tx-checksumming: off" in run(
        "ip", "netns", "exec", nic.host_ns, "ethtool", "-k", "enp2s0f0v1"
    )


@pytest.mark.lab
def test_dpu_side_layout(nic: NicLab) -> None:
    d = nic.dpu
    assert os.listdir(d / "bus/pci/devices") == ["0000:03:00.0"]
    ports = {
        "p0": "p0",
        "pf0hpf": "pf0",
        "pf0vf0": "pf0vf0",
        "pf0vf1": "pf0vf1",
        "pf0vf2": "pf0vf2",
    }
    assert sorted(os.listdir(d / "class/net")) == sorted([*ports, "lo", "p0-wire"])
    for name, port in ports.items():
        netdev = d / "class/net" / name
        assert (netdev / "phys_port_name").read_text() == f"{port}\n"
        assert (netdev / "phys_switch_id").read_text() == f"{SWITCH_ID}\n"
        assert (netdev / "device").resolve() == (d / "devices/pci0000:00/0000:03:00.0").resolve()
    for name in ("lo", "p0-wire"):
        assert read_errno(d / "class/net" / name / "phys_switch_id") == errno.EOPNOTSUPP
        assert read_errno(d / "class/net" / name / "phys_port_name") == errno.EOPNOTSUPP
    config = (d / "class/net/p0/smart_nic/pf/config").read_text().splitlines()
    macs = [line.split(":", 1)[1].strip() for line in config if line.split(":")[0].strip() == "MAC"]
    assert macs == [(nic.host / "class/net/enp2s0f0np0/address").read_text().strip()]
    assert links(nic.dpu_ns)["p0"]["ifalias"] == f"dpunet-lab:{LAB}:dpu1:uplink"
    assert "tx-checksumming: off" in run(
        "ip", "netns", "exec", nic.dpu_ns, "ethtool", "-k", "pf0vf2"
    )


@pytest.mark.lab
def test_sriov_numvfs_creates_and_destroys_pairs(nic: NicLab) -> None:
    pf = nic.host / "bus/pci/devices/0000:02:00.0"
    write_attr(nic.numvfs, "0")
    assert nic.numvfs.read_text() == "0\n"
    assert not [n for n in os.listdir(pf) if n.startswith("virtfn")]
    assert nic.marked(nic.host_ns) == ["enp2s0f0np0"]
    assert nic.marked(nic.dpu_ns) == ["pf0hpf"]
    assert sorted(os.listdir(nic.host / "bus/pci/devices")) == ["0000:02:00.0"]

    write_attr(nic.numvfs, "3\n")
    assert nic.numvfs.read_text() == "3\n"
    assert nic.marked(nic.host_ns) == ["enp2s0f0np0", "enp2s0f0v0", "enp2s0f0v1", "enp2s0f0v2"]
    assert nic.marked(nic.dpu_ns) == ["pf0hpf", "pf0vf0", "pf0vf1", "pf0vf2"]
    for i, addr in enumerate(VF_ADDRS):
        assert os.readlink(pf / f"virtfn{i}") == f"../{addr}"
        assert os.listdir(nic.host / "bus/pci/devices" / addr / "net") == [f"enp2s0f0v{i}"]
        rep = nic.dpu / "class/net" / f"pf0vf{i}"
        assert (rep / "phys_port_name").read_text() == f"pf0vf{i}\n"

    write_attr(nic.numvfs, "0")
    assert nic.marked(nic.host_ns) == ["enp2s0f0np0"]
    assert nic.marked(nic.dpu_ns) == ["pf0hpf"]

    write_attr(nic.numvfs, "6")
    assert os.readlink(pf / "virtfn5") == "../0000:02:01.0"
    assert os.listdir(nic.host / "bus/pci/devices/0000:02:01.0/net") == ["enp2s0f0v5"]
    write_attr(nic.numvfs, "0")
    assert not (nic.host / "bus/pci/devices/0000:02:01.0").exists()


@pytest.mark.lab
def test_sriov_numvfs_errors_leave_no_partial_state(nic: NicLab) -> None:
    def state() -> tuple[str, list[str], list[str], list[str]]:
        return (
            nic.numvfs.read_text(),
            nic.marked(nic.host_ns),
            nic.marked(nic.dpu_ns),
            sorted(os.listdir(nic.host / "bus/pci/devices")),
        )

    before = state()
    for data, code in [("5", errno.EBUSY), ("17", errno.ERANGE), ("abc", errno.EINVAL)]:
        with pytest.raises(OSError) as exc:
            write_attr(nic.numvfs, data)
        assert exc.value.errno == code, data
        assert state() == before
    for data in ("-1", "3 ", "0x", "1_0"):
        with pytest.raises(OSError) as exc:
            write_attr(nic.numvfs, data)
        assert exc.value.errno == errno.EINVAL, data
    write_attr(nic.numvfs, "3")  # same count: success, nothing changes
    assert state() == before

    # A creation that fails half-way (the name of the third representor is taken)
    # rolls back the pairs it already made.
    write_attr(nic.numvfs, "0")
    empty = state()
    run("ip", "-n", nic.dpu_ns, "link", "add", "pf0vf2", "type", "veth", "peer", "name", "blocker")
    with pytest.raises(OSError) as exc:
        write_attr(nic.numvfs, "3")
    assert exc.value.errno == errno.EEXIST
    assert state() == empty
    assert not [n for n in links(nic.host_ns) if n.startswith("enp2s0f0v")]
    run("ip", "-n", nic.dpu_ns, "link", "del", "pf0vf2")
    write_attr(nic.numvfs, "3")
    assert state() == before


@pytest.mark.lab
def test_renamed_netdevs_show_under_their_current_names(nic: NicLab) -> None:
    run("ip", "-n", nic.dpu_ns, "link", "set", "pf0vf0", "down")
    run("ip", "-n", nic.dpu_ns, "link", "set", "pf0vf0", "name", "ovn-k8s-mp0", "up")
    names = os.listdir(nic.dpu / "class/net")
    assert "ovn-k8s-mp0" in names and "pf0vf0" not in names
    rep = nic.dpu / "class/net/ovn-k8s-mp0"
    assert (rep / "phys_port_name").read_text() == "pf0vf0\n"
    assert os.readlink(rep) == "../../devices/pci0000:00/0000:03:00.0/net/ovn-k8s-mp0"

    run("ip", "-n", nic.host_ns, "link", "set", "enp2s0f0v2", "down")
    run("ip", "-n", nic.host_ns, "link", "set", "enp2s0f0v2", "name", "mgmt0")
    assert os.listdir(nic.host / "bus/pci/devices/0000:02:00.5/net") == ["mgmt0"]
    assert os.readlink(nic.host / "class/net/mgmt0").endswith("0000:02:00.5/net/mgmt0")


@pytest.mark.lab
def test_vf_moved_into_a_netns_leaves_the_host_tree(nic: NicLab) -> None:
    pod = nic.netns("pod")
    vf_dir = nic.host / "bus/pci/devices/0000:02:00.4"
    run("ip", "-n", nic.host_ns, "link", "set", "enp2s0f0v1", "netns", pod)
    assert os.listdir(vf_dir / "net") == []
    assert "enp2s0f0v1" not in os.listdir(nic.host / "class/net")
    assert os.readlink(nic.host / "bus/pci/devices/0000:02:00.0/virtfn1") == "../0000:02:00.4"
    assert (nic.dpu / "class/net/pf0vf1/phys_port_name").read_text() == "pf0vf1\n"
    run("ip", "-n", pod, "link", "set", "enp2s0f0v1", "netns", nic.host_ns)
    assert os.listdir(vf_dir / "net") == ["enp2s0f0v1"]


@pytest.mark.lab
def test_vf_outlives_the_netns_it_was_moved_into(nic: NicLab) -> None:
    dpu = nic.dpu_ns
    run("ip", "-n", dpu, "link", "set", "pf0vf1", "down")
    run("ip", "-n", dpu, "link", "set", "pf0vf1", "name", "rep-pod1", "mtu", "1400", "up")
    rep_before = links(dpu)["rep-pod1"]

    # A pod gets VF 1 as eth0 with its own MAC, then dies without CNI DEL.
    pod = nic.netns("pod1")
    run("ip", "-n", nic.host_ns, "link", "set", "enp2s0f0v1", "netns", pod)
    run("ip", "-n", pod, "link", "set", "enp2s0f0v1", "name", "eth0")
    run("ip", "-n", pod, "link", "set", "eth0", "address", "02:aa:00:00:00:01", "mtu", "1400", "up")
    run("ip", "netns", "del", pod)
    wait_until("VF 1 back in the host netns", lambda: "eth0" in nic.marked(nic.host_ns))
    vf = links(nic.host_ns)["eth0"]
    assert (vf["address"], vf["mtu"]) == ("02:aa:00:00:00:01", 1400)
    assert "UP" not in vf["flags"]  # a VF returned by the kernel is down
    rep = links(dpu)["rep-pod1"]
    assert (rep["address"], rep["mtu"]) == (rep_before["address"], 1400)
    assert "UP" in rep["flags"]  # administratively as it was
    assert os.listdir(nic.host / "bus/pci/devices/0000:02:00.4/net") == ["eth0"]
    assert (nic.dpu / "class/net/rep-pod1/phys_port_name").read_text() == "pf0vf1\n"
    assert nic.marked(nic.host_ns) == sorted(["enp2s0f0np0", "enp2s0f0v0", "eth0", "enp2s0f0v2"])

    # Again, but the host netns has an eth0 of its own by then: the VF comes back as dev<ifindex>.
    pod = nic.netns("pod2")
    run("ip", "-n", nic.host_ns, "link", "set", "eth0", "netns", pod)
    ifindex = links(pod)["eth0"]["ifindex"]
    run("ip", "-n", nic.host_ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0-peer")
    run("ip", "netns", "del", pod)
    wait_until(f"VF 1 back as dev{ifindex}", lambda: f"dev{ifindex}" in nic.marked(nic.host_ns))
    assert links(nic.host_ns)[f"dev{ifindex}"]["address"] == "02:aa:00:00:00:01"
    assert os.listdir(nic.host / "bus/pci/devices/0000:02:00.4/net") == [f"dev{ifindex}"]
    assert "rep-pod1" in links(dpu)


@pytest.mark.lab
def test_a_returned_vf_renamed_the_moment_it_appears(nic: NicLab) -> None:
    """As a CNI DEL does: a client renames a VF the kernel returned as soon as sysfs shows
    it, round after round. The emulation neither loses the VF nor dies (it once died reading
    the peer of a representor whose VF sat in a namespace without an id)."""
    vf_net = nic.host / "bus/pci/devices/0000:02:00.4/net"
    for n in range(8):
        pod = nic.netns(f"gone{n}")
        run("ip", "-n", nic.host_ns, "link", "set", "enp2s0f0v1", "netns", pod, "name", "eth0")
        run("ip", "netns", "del", pod)
        deadline = time.monotonic() + 10
        while not (names := os.listdir(vf_net)) and time.monotonic() < deadline:
            pass  # no sleep: the rename must follow the VF's appearance at once
        assert names == ["eth0"]
        with iproute_at(f"/run/netns/{nic.host_ns}") as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="eth0")[0], ifname="enp2s0f0v1")
        wait_until("the renamed VF marked", lambda: "enp2s0f0v1" in nic.marked(nic.host_ns))
    assert nic.proc.poll() is None, nic.log()
    assert os.listdir(vf_net) == ["enp2s0f0v1"]
    assert nic.marked(nic.host_ns) == sorted(
        ["enp2s0f0np0", "enp2s0f0v0", "enp2s0f0v1", "enp2s0f0v2"]
    )


@pytest.mark.lab
def test_vf_followed_from_pod_to_pod(nic: NicLab) -> None:
    """Moved on from one pod netns to another, the VF is still tracked (periodic sweep)."""
    pod1, pod2 = nic.netns("pod1"), nic.netns("pod2")
    run("ip", "-n", nic.host_ns, "link", "set", "enp2s0f0v2", "netns", pod1)
    run("ip", "-n", pod1, "link", "set", "enp2s0f0v2", "netns", pod2)
    run(
        "ip",
        "-n",
        pod2,
        "link",
        "set",
        "enp2s0f0v2",
        "name",
        "net1",
        "address",
        "02:aa:00:00:00:02",
    )
    time.sleep(3 * nic.config.sweep_interval)
    run("ip", "netns", "del", pod2)
    wait_until("VF 2 back as net1", lambda: "net1" in nic.marked(nic.host_ns))
    assert links(nic.host_ns)["net1"]["address"] == "02:aa:00:00:00:02"
    assert os.listdir(nic.host / "bus/pci/devices/0000:02:00.5/net") == ["net1"]


@pytest.mark.lab
def test_a_deleted_pair_comes_back_as_it_was(nic: NicLab) -> None:
    """Physical functions cannot be deleted: the emulation recreates a pair someone deleted."""
    before = {n: links(nic.host_ns)[n]["address"] for n in ("enp2s0f0np0", "enp2s0f0v0")}
    run("ip", "-n", nic.dpu_ns, "link", "del", "pf0vf0")
    run("ip", "-n", nic.host_ns, "link", "del", "enp2s0f0np0")
    wait_until(
        "both pairs back",
        lambda: (
            {"pf0vf0", "pf0hpf"} <= set(nic.marked(nic.dpu_ns))
            and set(before) <= set(nic.marked(nic.host_ns))
        ),
    )
    host = links(nic.host_ns)
    assert {n: host[n]["address"] for n in before} == before
    assert all("UP" in host[n]["flags"] for n in before)
    assert (nic.dpu / "class/net/pf0hpf/phys_port_name").read_text() == "pf0\n"
    assert os.listdir(nic.host / "bus/pci/devices/0000:02:00.3/net") == ["enp2s0f0v0"]


@pytest.mark.lab
@pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="needs Open vSwitch")
def test_ovs_keeps_switching_a_recreated_representor(nic: NicLab) -> None:
    """Userspace OVS re-opens a port whose netdev was deleted and re-created (same name)."""
    rundir = nic.workdir / "ovs"
    rundir.mkdir()
    env = ["env", f"OVS_RUNDIR={rundir}", f"OVS_LOGDIR={rundir}", f"OVS_DBDIR={rundir}"]
    in_dpu = ["ip", "netns", "exec", nic.dpu_ns, *env]
    db = f"unix:{rundir}/db.sock"
    run("ovsdb-tool", "create", f"{rundir}/conf.db", "/usr/share/openvswitch/vswitch.ovsschema")
    try:
        for daemon, args in (
            ("ovsdb-server", [f"{rundir}/conf.db", f"--remote=punix:{rundir}/db.sock"]),
            ("ovs-vswitchd", [db]),
        ):
            if daemon == "ovs-vswitchd":
                run(*in_dpu, "ovs-vsctl", f"--db={db}", "--no-wait", "init")
            run(*in_dpu, daemon, *args, f"--pidfile={rundir}/{daemon}.pid", "--detach",
                f"--log-file={rundir}/{daemon}.log")  # fmt: skip
        vsctl = [*in_dpu, "ovs-vsctl", f"--db={db}"]
        run(*vsctl, "add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev")
        run(*vsctl, "add-port", "br-int", "pf0vf1")
        run(*vsctl, "add-port", "br-int", "gw0", "--", "set", "interface", "gw0", "type=internal")
        run("ip", "-n", nic.dpu_ns, "addr", "add", "192.0.2.1/24", "dev", "gw0")
        run("ip", "-n", nic.dpu_ns, "link", "set", "gw0", "up")

        pod = nic.netns("ovspod")
        run("ip", "-n", nic.host_ns, "link", "set", "enp2s0f0v1", "netns", pod)
        run("ip", "-n", pod, "addr", "add", "192.0.2.2/24", "dev", "enp2s0f0v1")
        run("ip", "-n", pod, "link", "set", "enp2s0f0v1", "up")
        run("ip", "netns", "exec", pod, "ping", "-c1", "-W2", "192.0.2.1")
        rep_index = links(nic.dpu_ns)["pf0vf1"]["ifindex"]
        run("ip", "netns", "del", pod)
        wait_until("VF 1 back", lambda: "enp2s0f0v1" in nic.marked(nic.host_ns))
        assert links(nic.dpu_ns)["pf0vf1"]["ifindex"] != rep_index
        run("ip", "-n", nic.host_ns, "addr", "add", "192.0.2.2/24", "dev", "enp2s0f0v1")
        run("ip", "-n", nic.host_ns, "link", "set", "enp2s0f0v1", "up")
        run("ip", "netns", "exec", nic.host_ns, "ping", "-c1", "-W3", "192.0.2.1")
    finally:
        for daemon in ("ovs-vswitchd", "ovsdb-server"):
            pidfile = rundir / f"{daemon}.pid"
            if pidfile.exists():
                subprocess.run(["kill", pidfile.read_text().strip()], check=False)


@pytest.fixture
def netns_process(nic: NicLab) -> Iterator[subprocess.Popen[bytes]]:
    """A process in the host netns, started like the lab starts its daemons
    (`ip netns exec`: its own copy of the mounts, made a slave)."""
    proc = subprocess.Popen(["ip", "netns", "exec", nic.host_ns, "sleep", "60"])
    sysfs = Path(f"/proc/{proc.pid}/root") / str(nic.numvfs).lstrip("/")
    wait_until("the netns process", lambda: Path(f"/proc/{proc.pid}/exe").resolve().name == "sleep")
    assert sysfs.read_text() == "3\n"
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.lab
def test_restarted_after_kill_it_adopts_everything(
    nic: NicLab, netns_process: subprocess.Popen[bytes]
) -> None:
    before = {n: link["ifindex"] for n, link in links(nic.host_ns).items()}
    nic.proc.kill()
    nic.proc.wait()
    assert read_errno(nic.numvfs) == errno.ENOTCONN
    nic.proc = start_daemon(nic.workdir)
    nic.wait_ready()
    assert {n: link["ifindex"] for n, link in links(nic.host_ns).items()} == before
    assert nic.numvfs.read_text() == "3\n"
    assert "event=adopted host=host1 numvfs=3" in nic.log()
    # A process that copied the mounts before the crash sees the new tree too.
    in_netns = Path(f"/proc/{netns_process.pid}/root") / str(nic.numvfs).lstrip("/")
    assert in_netns.read_text() == "3\n"


@pytest.mark.lab
def test_sigterm_leaves_nothing_behind(nic: NicLab, netns_process: subprocess.Popen[bytes]) -> None:
    pod = nic.netns("pod")
    run("ip", "-n", nic.host_ns, "link", "set", "enp2s0f0v0", "netns", pod)
    pid = nic.proc.pid
    started = time.monotonic()
    nic.proc.send_signal(signal.SIGTERM)
    assert nic.proc.wait(15) == 0, nic.log()
    assert time.monotonic() - started < 3
    copied = Path(f"/proc/{netns_process.pid}/mountinfo").read_text()
    assert f" {nic.mountpoint} " not in copied
    assert str(nic.mountpoint) not in Path("/proc/mounts").read_text()
    assert not nic.mountpoint.exists()
    assert not nic.config.pidfile.exists() and not nic.config.ready_file.exists()
    assert not Path(f"/proc/{pid}").exists()
    assert list(links(nic.host_ns)) == ["lo"]
    assert list(links(pod)) == ["lo"]
    assert sorted(links(nic.dpu_ns)) == ["lo", "p0", "p0-wire"]
    assert not links(nic.dpu_ns)["p0"].get("ifalias")
