"""The Linux layer every component uses for the kernel's networking (pyroute2, ioctls; no
`ip` or `ethtool` processes): links, addresses, routes and a pod's interface (`netlink`),
sockets in other network namespaces and what a CNI_NETNS path is (`netns`), ethtool
features (`ethtool`), per-interface sysctls (`sysctl`)."""
