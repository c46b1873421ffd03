"""`dpunet-node`: the daemon of a full node (local OVS, veth pods, management port)."""
