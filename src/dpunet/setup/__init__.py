"""Node setup: the seed procedure's manual steps as idempotent, plan-first operations.

- `plan`   the step/plan model shared by both commands (pure);
- `dpu`    `dpunet dpu setup`: OVS external ids, hw-offload, `brp0`, underlay IP move;
- `host`   `dpunet host setup`: SR-IOV VFs on a PF, PF up, `hw-tc-offload`;
- `node`   `dpunet node setup`: a full node's OVS settings and `breth0` (the `dpu` plan);
- `units`  the commands as boot-time systemd oneshot units (`--install-unit`).

The local OVS database goes through `dpunet.ovsdb`, links and sysctls through `dpunet.linux`.
"""
