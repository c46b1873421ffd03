"""The CNI layer: the `dpunet-cni` shim and the node daemons' CNI server (see docs/cni.md)."""
