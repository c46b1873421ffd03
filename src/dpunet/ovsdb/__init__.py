"""The OVSDB layer every component builds on (ovsdbapp / python-ovs IDL).

- `vswitch`  the local Open_vSwitch database: the per-connection ovsdbapp API whose
             transactions bump `next_cfg` like ovs-vsctl.
"""
