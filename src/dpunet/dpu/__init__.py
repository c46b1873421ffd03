"""`dpunet-dpu`: the DPU daemon (the agent plug mode of docs/architecture.md).

- `config`  the daemon's pydantic config (file + `DPUNET_*` env + flags);
- `sb`      read-only, conditional monitor of the OVN Southbound database;
- `plug`    the reconcile: desired set from SB vs. owned ports -> actions (pure), executor;
- `gateway` the shared gateway's OpenFlow pipeline on the external bridge (brp0);
- `lease`   the health lease the agent renews at the controller;
- `heap`    glibc heap settings and trimming;
- `metrics` Prometheus metrics and the small HTTP server for `/metrics`, `/healthz`, `/readyz`;
- `agent`   the asyncio main loop (level-triggered).

br-int ports go through `dpunet.ovsdb.local`, representor links through `dpunet.linux`,
flows through `dpunet.openflow`.
"""
