"""Builds sysfs fixture trees with the kernel's layout, for the hardware-layer tests.

Layout (as on a real machine):
  devices/pci0000:00/<bridge>/<addr>/          one dir per PCI function
  bus/pci/devices/<addr> -> ../../../devices/pci0000:00/<bridge>/<addr>
  <addr>/driver -> ../../../../bus/pci/drivers/<driver>
  <pf>/virtfnN -> ../<vf addr>,  <vf>/physfn -> ../<pf addr>
  <addr>/net/<name>/                          netdev dir of a PCI netdev
  devices/virtual/net/<name>/                 netdev dir of a virtual netdev
  class/net/<name> -> ../../<netdev dir>,  <netdev dir>/device -> ../../../<addr>
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from dpunet.hw.sysfs import Sysfs

MELLANOX = "0x15b3"
CX6DX_PF = "0x101d"
CX6DX_VF = "0x101e"
BRIDGE = "0000:00:01.0"

SEED_PF = "enp2s0f0np0"
SEED_PF_ADDRESS = "0000:02:00.0"
SEED_PF_MAC = "10:70:fd:09:81:aa"
SEED_VF_OFFSET = 3

# The seed procedure's ConfigMap, verbatim.
SEED_CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: sriovdp-config
  namespace: kube-system
data:
  config.json: |
    {
        "resourceList": [{
                "resourceName": "mlnx_sriov_cx6",
                "selectors": {
                    "vendors": ["15b3"],
                    "devices": ["101e"],
                    "drivers": ["mlx5_core"],
                    "pfNames": ["enp2s0f0np0#1-2"]
                }
            }
        ]
    }
"""


def ari_address(pf_address: str, first_vf_offset: int, stride: int, vf_index: int) -> str:
    """The PCI address of VF `vf_index` under ARI: PF routing id + offset + index * stride."""
    domain, bus, devfn = pf_address.split(":")
    device, function = devfn.split(".")
    routing_id = (int(bus, 16) << 8) | (int(device, 16) << 3) | int(function, 16)
    routing_id += first_vf_offset + vf_index * stride
    return f"{domain}:{routing_id >> 8:02x}:{(routing_id >> 3) & 0x1F:02x}.{routing_id & 0x7:x}"


def _link(link: Path, target: Path) -> None:
    """A relative symlink ending in the target's name, as sysfs has them."""
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.join(os.path.relpath(target.parent, link.parent), target.name))


class SysfsTree:
    """A fixture sysfs under `root`, grown one device or netdev at a time."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._next_ifindex = 2
        for sub in ("bus/pci/devices", "bus/pci/drivers", "class/net", "devices/virtual/net"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    @property
    def sysfs(self) -> Sysfs:
        """The library's view of this tree."""
        return Sysfs(self.root)

    def device_dir(self, address: str) -> Path:
        """The real (non-symlink) directory of a PCI function."""
        return self.root / "devices" / "pci0000:00" / BRIDGE / address

    def netdev_dir(self, name: str) -> Path:
        """The real directory of a netdev."""
        return (self.root / "class" / "net" / name).resolve()

    def pci_function(
        self,
        address: str,
        *,
        vendor: str = MELLANOX,
        device: str = CX6DX_PF,
        driver: str | None = "mlx5_core",
        numa_node: int = 0,
        pci_class: str | None = "0x020000",
    ) -> Path:
        """A PCI function with its identity files and driver link."""
        path = self.device_dir(address)
        path.mkdir(parents=True)
        (path / "vendor").write_text(f"{vendor}\n")
        (path / "device").write_text(f"{device}\n")
        (path / "numa_node").write_text(f"{numa_node}\n")
        if pci_class is not None:
            (path / "class").write_text(f"{pci_class}\n")
        if driver is not None:
            driver_dir = self.root / "bus" / "pci" / "drivers" / driver
            driver_dir.mkdir(parents=True, exist_ok=True)
            _link(path / "driver", driver_dir)
        _link(self.root / "bus" / "pci" / "devices" / address, path)
        return path

    def sriov_pf(
        self, address: str, netdev: str | None, *, total_vfs: int = 16, mac: str = ""
    ) -> Path:
        """An SR-IOV capable PF with no VFs yet (and its netdev, when named)."""
        path = self.pci_function(address)
        (path / "sriov_totalvfs").write_text(f"{total_vfs}\n")
        (path / "sriov_numvfs").write_text("0\n")
        if netdev is not None:
            self.netdev(netdev, pci=address, mac=mac or "0c:42:a1:00:00:01")
        return path

    def vf(
        self,
        pf_address: str,
        index: int,
        address: str,
        *,
        netdev: str | None = None,
        driver: str = "mlx5_core",
        mac: str = "",
    ) -> Path:
        """VF `index` of a PF, linked both ways; with a netdev when `netdev` is named."""
        path = self.pci_function(address, device=CX6DX_VF, driver=driver)
        pf_path = self.device_dir(pf_address)
        _link(path / "physfn", pf_path)
        _link(pf_path / f"virtfn{index}", path)
        count = len(list(pf_path.glob("virtfn*")))
        (pf_path / "sriov_numvfs").write_text(f"{count}\n")
        if netdev is not None:
            self.netdev(
                netdev, pci=address, mac=mac or f"02:00:00:00:{index >> 8:02x}:{index & 0xFF:02x}"
            )
        return path

    def netdev(
        self,
        name: str,
        *,
        pci: str | None = None,
        mac: str = "02:00:00:00:00:ff",
        operstate: str = "up",
        mtu: int = 1500,
        phys_port_name: str | None = None,
        phys_switch_id: str | None = None,
        arphrd_type: int = 1,
    ) -> Path:
        """A netdev (below PCI function `pci`, else virtual) visible in class/net.

        `phys_port_name` / `phys_switch_id` left None are absent, as the kernel reports
        them for netdevs that are not switchdev ports.
        """
        path = (
            (self.device_dir(pci) / "net" / name)
            if pci
            else self.root / "devices/virtual/net" / name
        )
        path.mkdir(parents=True)
        attributes = {
            "address": mac,
            "operstate": operstate,
            "mtu": mtu,
            "ifindex": self._next_ifindex,
            "type": arphrd_type,
            "carrier": 1 if operstate == "up" else None,
            "phys_port_name": phys_port_name,
            "phys_switch_id": phys_switch_id,
        }
        for attribute, value in attributes.items():
            if value is not None:
                (path / attribute).write_text(f"{value}\n")
        self._next_ifindex += 1
        if pci:
            _link(path / "device", self.device_dir(pci))
        _link(self.root / "class" / "net" / name, path)
        return path

    def rename_netdev(self, old: str, new: str) -> None:
        """What `ip link set OLD name NEW` does to sysfs."""
        real = self.netdev_dir(old)
        (self.root / "class" / "net" / old).unlink()
        renamed = real.with_name(new)
        real.rename(renamed)
        _link(self.root / "class" / "net" / new, renamed)

    def move_to_other_netns(self, name: str) -> None:
        """The netdev leaves this namespace: gone from class/net and from the device's net/."""
        real = self.netdev_dir(name)
        (self.root / "class" / "net" / name).unlink()
        shutil.rmtree(real)
        if real.parent.name == "net" and not any(real.parent.iterdir()):
            real.parent.rmdir()

    def smart_nic_pf_config(self, uplink: str, host_pf_mac: str) -> None:
        """BlueField's `<uplink>/smart_nic/pf/config`, in the mlx5 driver's format."""
        path = self.netdev_dir(uplink) / "smart_nic" / "pf"
        path.mkdir(parents=True)
        (path / "config").write_text(
            f"MAC        : {host_pf_mac}\nMaxTxRate  : 0\nState      : Follow\n"
        )

    def rdma(self, address: str) -> None:
        """Give a PCI function an RDMA device (`infiniband/mlx5_N`)."""
        (self.device_dir(address) / "infiniband" / "mlx5_0").mkdir(parents=True)


def seed_host(root: Path, num_vfs: int = 3) -> SysfsTree:
    """The seed's dpu-host: PF enp2s0f0np0 at 0000:02:00.0 (16 VFs possible), `num_vfs`
    VFs enp2s0f0v<N> at ARI addresses 02:00.3, .4, ..., and the management NIC eno1."""
    tree = SysfsTree(root)
    tree.pci_function("0000:00:1f.6", vendor="0x8086", device="0x15bb", driver="e1000e")
    tree.netdev("eno1", pci="0000:00:1f.6", mac="3c:ec:ef:00:00:01")
    tree.sriov_pf(SEED_PF_ADDRESS, SEED_PF, total_vfs=16, mac=SEED_PF_MAC)
    for index in range(num_vfs):
        tree.vf(
            SEED_PF_ADDRESS,
            index,
            ari_address(SEED_PF_ADDRESS, SEED_VF_OFFSET, 1, index),
            netdev=f"enp2s0f0v{index}",
        )
    tree.netdev("lo", mac="00:00:00:00:00:00", operstate="unknown", arphrd_type=772)
    return tree


DPU_SWITCH_IDS = {0: "c2cfc60003a1420c", 1: "c2cfc60003a1420d"}
DPU_HOST_PF_MACS = {0: "10:70:fd:09:81:aa", 1: "10:70:fd:09:81:ab"}


def bluefield2_dpu(root: Path, vfs_per_pf: int = 3, controller: int | None = None) -> SysfsTree:
    """A BlueField-2 DPU's Arm side: ECPFs 0000:03:00.0/.1 with uplinks p0/p1, host PF
    representors pf0hpf/pf1hpf and VF representors pf<N>vf<M> (phys_port_name
    `c<controller>pf<N>vf<M>` when `controller` is given), plus tmfifo_net0."""
    tree = SysfsTree(root)
    prefix = f"c{controller}" if controller is not None else ""
    for pf in (0, 1):
        address = f"0000:03:00.{pf}"
        switch_id = DPU_SWITCH_IDS[pf]
        tree.sriov_pf(address, None, total_vfs=8)
        tree.netdev(
            f"p{pf}",
            pci=address,
            mac=f"0c:42:a1:00:00:{pf:02x}",
            phys_port_name=f"p{pf}",
            phys_switch_id=switch_id,
        )
        tree.smart_nic_pf_config(f"p{pf}", DPU_HOST_PF_MACS[pf].upper())
        tree.netdev(
            f"pf{pf}hpf",
            pci=address,
            mac=f"0c:42:a1:00:01:{pf:02x}",
            phys_port_name=f"{prefix}pf{pf}",
            phys_switch_id=switch_id,
        )
        for vf in range(vfs_per_pf):
            tree.netdev(
                f"pf{pf}vf{vf}",
                pci=address,
                mac=f"0c:42:a1:00:1{pf}:{vf:02x}",
                phys_port_name=f"{prefix}pf{pf}vf{vf}",
                phys_switch_id=switch_id,
            )
    tree.netdev("tmfifo_net0", mac="00:1a:ca:ff:ff:01")
    return tree
