"""What the node daemons share: `dpunet-host` (VFs) and `dpunet-node` (veths).

- `sandboxes`  the crash-safe record of which sandbox holds which device;
- `pods`       the CNI flow against the controller's port API (ADD, DEL, CHECK,
               STATUS, GC, reconcile), parameterised by a device `Attacher`.
"""
