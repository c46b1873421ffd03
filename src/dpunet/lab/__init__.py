"""The emulated DPU lab: the seed's nodes in network namespaces, with real OVS/OVN.

Layout of this package:
- `topology`  the lab's plan: nodes, namespaces, addresses, paths (pure);
- `runner`    running commands and daemons inside a node's namespace;
- `daemons`   OVS / OVN daemons of one node (start, stop, wait);
- `nic_config`, `nic`, `sysfs_fs`, `nicd`  the emulated SR-IOV NIC (its config and PCI
  addresses, the model, the sysfs tree, the daemon);
- `lab`       `up`, `down`, `status`: the lab as a whole;
- `selftest`  underlay and Geneve checks used by `lab check` and `lab demo` (rows: `checks`).
"""
