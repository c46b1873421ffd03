"""Facts of the seed deployment that lab tests reuse."""

from __future__ import annotations

from typing import Any

PF = "enp2s0f0np0"
RESOURCE = "mellanox.com/mlnx_sriov_cx6"
# The seed's sriovdp-config ConfigMap: VF1 and VF2 of the PF (VF0 is the management port).
SEED_POOLS: dict[str, Any] = {
    "resourceList": [
        {
            "resourceName": "mlnx_sriov_cx6",
            "selectors": {
                "vendors": ["15b3"],
                "devices": ["101e"],
                "drivers": ["mlx5_core"],
                "pfNames": ["enp2s0f0np0#1-2"],
            },
        }
    ]
}
# The seed's NetworkAttachmentDefinition `kube-system/default`: its spec.config, verbatim.
SEED_NAD_CONFIG = (
    '{"cniVersion":"0.3.1","name":"ovn-kubernetes","type":"ovn-k8s-cni-overlay","ipam":{},"dns":{}}'
)
