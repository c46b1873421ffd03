"""Starting and stopping the lab's emulated-NIC daemon (`python -m dpunet.lab.nicd`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dpunet.lab.nic_config import NicDaemonConfig, NicPairConfig
from dpunet.lab.runner import LabError, pid_alive, read_pid, terminate, wait_for
from dpunet.lab.topology import (
    DPU_PF_PCI,
    DPU_UPLINK,
    HOST_PF_NAME,
    HOST_PF_PCI,
    UNDERLAY_MTU,
    LabPlan,
)


def pidfile(run_dir: Path) -> Path:
    """Where the NIC daemon of the lab in `run_dir` records its pid."""
    return run_dir / "nicd.pid"


def daemon_config(plan: LabPlan) -> NicDaemonConfig:
    """The daemon's configuration for every host/DPU pair of the lab."""
    run_dir = plan.run_dir
    return NicDaemonConfig(
        lab=plan.name,
        mountpoint=plan.sysfs_mount,
        pidfile=pidfile(run_dir),
        ready_file=run_dir / "nicd.ready",
        log_file=run_dir / "nicd.log",
        pairs=[
            NicPairConfig(
                host_node=pair.host.name,
                host_netns=pair.host.netns,
                dpu_node=pair.dpu.name,
                dpu_netns=pair.dpu.netns,
                pf_netdev=HOST_PF_NAME,
                pf_pci=HOST_PF_PCI,
                dpu_pci=DPU_PF_PCI,
                uplink_netdev=DPU_UPLINK,
                sriov_totalvfs=plan.spec.total_vfs,
                numvfs=0,  # `dpunet host setup` creates them, as on a real host
                pf_mac=pair.pf_mac(plan.lab_id),
                vf_mac_prefix=pair.vf_mac_prefix(plan.lab_id),
                phys_switch_id=pair.switch_id(plan.lab_id),
                mtu=UNDERLAY_MTU,
            )
            for pair in plan.pairs
        ],
    )


def start(plan: LabPlan) -> None:
    """Write the daemon's config, start it detached, wait until its sysfs is mounted."""
    cfg = daemon_config(plan)
    config_file = plan.run_dir / "nicd.json"
    config_file.write_text(cfg.model_dump_json(indent=2))
    with open(plan.run_dir / "nicd.out", "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dpunet.lab.nicd", str(config_file)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def ready() -> bool:
        if proc.poll() is not None:
            tail = (plan.run_dir / "nicd.out").read_text(errors="replace")[-2000:]
            raise LabError(f"the emulated NIC daemon exited ({proc.returncode}): {tail.strip()}")
        return cfg.ready_file.exists()

    try:
        wait_for("the emulated NIC daemon (sysfs mount and VFs)", ready, timeout=60)
    except LabError:
        if proc.poll() is None:
            terminate([proc.pid])
        raise


def stop(run_dir: Path) -> bool:
    """Stop the daemon (it unmounts its sysfs and removes the VF pairs); True if one ran.

    A mount left behind by a daemon that died is detached lazily.
    """
    pid = read_pid(pidfile(run_dir))
    running = pid_alive(pid)
    if running and pid is not None:
        terminate([pid], timeout=15)
    mountpoint = str(run_dir / "sys")
    if any(line.split()[1] == mountpoint for line in Path("/proc/mounts").read_text().splitlines()):
        subprocess.run(["umount", "-l", mountpoint], check=False, capture_output=True)
    return running
