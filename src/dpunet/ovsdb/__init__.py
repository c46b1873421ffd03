"""The OVSDB layer every component builds on (ovsdbapp / python-ovs IDL).

- `remote`   where a database is and whether it answers: remote syntax, the local
             database's socket, the check before opening, the layer's errors.
- `vswitch`  the local Open_vSwitch database: the per-connection ovsdbapp API whose
             transactions bump `next_cfg` like ovs-vsctl.
"""
