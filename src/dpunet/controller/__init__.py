"""dpunet-controller: OVN Northbound topology, IPAM, gateway and the port API."""
