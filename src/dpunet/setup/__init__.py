"""Node setup: the seed procedure's manual steps as idempotent, plan-first operations.

- `plan`   the step/plan model shared by both commands (pure);
- `ovsdb`  a small ovsdbapp connection to the local Open_vSwitch database;
- `netlink` pyroute2 reads/writes of links, addresses, routes, sysctls, features;
- `dpu`    `dpunet dpu setup`: OVS external ids, hw-offload, `brp0`, underlay IP move;
- `host`   `dpunet host setup`: SR-IOV VFs on a PF, PF up, `hw-tc-offload`.
"""
