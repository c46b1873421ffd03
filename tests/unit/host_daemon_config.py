"""The configuration of a `dpunet-host` daemon with the device plugin and PodResources on, over
the seed's sysfs tree and ConfigMap in a directory of its own (no controller)."""

from __future__ import annotations

from pathlib import Path

from hw_sysfs_tree import SEED_CONFIGMAP, seed_host

from dpunet.host.config import HostAgentConfig

RESOURCE = "mellanox.com/mlnx_sriov_cx6"  # the seed's pool


def config(base: Path) -> HostAgentConfig:
    """The daemon's settings, its files (sysfs, ConfigMap, token) written under `base`."""
    seed_host(base / "sys")
    (base / "cm.yaml").write_text(SEED_CONFIGMAP)
    (base / "token").write_text("t0k3n\n")
    return HostAgentConfig(
        node="dpu-host",
        controller_url=f"unix:{base}/no-controller.sock",
        token_file=base / "token",
        state_dir=base / "state",
        cni_socket=base / "cni.sock",
        sysfs_root=base / "sys",
        pool_config=base / "cm.yaml",
        metrics_address=None,
        reconcile_interval=0.2,
        device_plugin=True,
        pod_resources=True,
        kubelet_dir=base / "kubelet",
        device_info_dir=base / "devinfo",
        plugin_registration="kubelet",
    )
