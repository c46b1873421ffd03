"""A controller configuration, a dpu-host node and a pod port on it, as the controller keeps
them: the records the topology and port-name tests build NB rows from."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from dpunet.controller.config import ControllerConfig
from dpunet.controller.topology import NodeRecord, NodeRole, PodPort

CFG = ControllerConfig(cluster_cidr=IPv4Network("198.18.0.0/16"))
HOST1 = NodeRecord(
    name="host1",
    role=NodeRole.DPU_HOST,
    chassis="dpu1",
    node_ip=IPv4Interface("192.0.2.101/24"),
    next_hop=IPv4Address("192.0.2.1"),
    subnet=IPv4Network("198.18.1.0/24"),
    join_ip=IPv4Address("100.64.0.3"),
    gateway_mac="0a:58:c0:00:02:65",
    mgmt_pf_mac="02:d5:00:01:00:01",
    mgmt_vf_num=0,
)
POD = PodPort(
    namespace="default",
    pod="web",
    node="host1",
    uid="8f1c",
    sandbox="c0ffee",
    ifname="eth0",
    ip=IPv4Address("198.18.1.7"),
    pci="0000:02:00.3",
    pf_mac="02:d5:00:01:00:01",
    vf_num=1,
)
