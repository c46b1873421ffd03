"""`dpunet-dpu`: the DPU daemon (plug mode `agent` of ARCHITECTURE.md section 3).

- `config`  the daemon's pydantic config (file + `DPUNET_*` env + flags);
- `sb`      read-only, conditional monitor of the OVN Southbound database;
- `ovs`     br-int ports the agent owns, through ovsdbapp;
- `netdev`  representor MTU, link state and the management-port rename (pyroute2);
- `plug`    the reconcile: desired set from SB vs. owned ports -> actions (pure), executor;
- `metrics` Prometheus metrics and the small HTTP server for `/metrics`, `/healthz`, `/readyz`;
- `agent`   the asyncio main loop (level-triggered);
- `logs`    one-line key=value event logs.
"""
