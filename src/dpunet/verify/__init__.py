"""`dpunet verify`: is a DPU's traffic offloaded (and why not), is its OVS laid out right,
which ACLs a pod's connection hits.

- `dpctl`, `tc`, `ethtool_stats`: parsers of the three offload signals (datapath flows,
  tc flower filters, representor counters) and the calls that read them;
- `unixctl`: ovs-vswitchd's control socket (JSON-RPC), for `dpctl/*`;
- `offload`: the per-pod verdict with a likely reason per software flow;
- `layout`: the expected OVS/host layout and its deviations, each with a fix;
- `policy`: a new connection traced by ovn-trace, its verdict and dpunet's ACLs it hits;
- `targets`: where to look (this machine, or a lab node through its namespace; OVN's
  databases).
"""
