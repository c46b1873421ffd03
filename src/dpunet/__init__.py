"""dpunet: SR-IOV VFs of a DPU NIC as pod interfaces, switched by OVS/OVN on the DPU."""

__version__ = "0.1.0"
