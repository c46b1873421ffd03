"""`dpunet-node`: the daemon of a full node (local OVS, veth pods, management port, the
shared gateway's flows on breth0)."""
