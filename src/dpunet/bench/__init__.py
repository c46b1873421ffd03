"""`dpunet bench`: benchmarks in the emulated lab, each measured against its floor or peer.

- `podsetup`: CNI ADD -> the pod reaches its gateway, dpunet vs the same operations raw;
- `podman`: `podman run` with dpunet's CNI vs host-device + static;
- `cri`: a pod sandbox through containerd's CRI with dpunet's CNI vs host-device + static;
- `shim`: the CNI plugin's start-up vs a bare interpreter and a Go plugin;
- `controller`: port PUTs at N existing ports vs raw NB transactions (stand-in chassis);
- `memory`: the daemons' RSS idle and with every VF in use;
- `stats`, `metrics`, `icmp`, `ovsdb`, `labctx`, `results`, `plots`: the parts they share.
"""

DEFAULT_BENCH_LAB = "bench"
DEFAULT_BENCH_VFS = 8
