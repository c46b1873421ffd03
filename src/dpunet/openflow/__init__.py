"""OpenFlow 1.3 spoken by the agent that owns a bridge, without `ovs-ofctl`.

`protocol` encodes and decodes the few messages dpunet needs (hello, echo, error,
flow_mod, barrier, flow-stats multipart) with OXM and Nicira-extension matches and the
Nicira conntrack action; `client` speaks them over the bridge's management socket
(`unix:<OVS rundir>/<bridge>.mgmt`); `gateway` is the shared gateway's pipeline on the
external bridge and its level-triggered reconciler (docs/architecture.md, section 4a).
"""
