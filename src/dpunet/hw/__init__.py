"""Hardware layer: SR-IOV PFs/VFs, switchdev representors and device pools, read from sysfs."""
