"""The OVSDB layer every component builds on (ovsdbapp / python-ovs IDL).

- `remote`   where a database is and whether it answers: remote syntax, the local
             database's socket, the check before opening, the layer's errors.
- `rpc`      JSON-RPC with deadlines: one-shot requests, the schema from the first remote
             that answers, the schema helper an IDL is built from, SSL.
- `atoms`    column values in OVSDB's JSON notation (sets, maps) as raw replies give them.
- `monitor`  a python-ovs IDL run and kept connected by a thread of its own (the SB
             monitors of the controller and the DPU agent).
- `own`      the mixin that gives an ovsdbapp API a connection per instance, and the
             IDL base class that does not yield per row (`NoYieldIdl`).
- `api`      the OVN NB and SB ovsdbapp APIs with a connection per instance.
- `local`    the local Open_vSwitch database (`LocalOvs`, `connect`): the one API the DPU
             and node agents, the setup commands and verify read and write it with.
- `vswitch`  ovsdbapp's Open_vSwitch API with a connection per instance and transactions
             that bump `next_cfg` like ovs-vsctl; dpunet's commands.
"""
