"""The Logical_Switch_Port schema: names, options and external ids the controller writes
on pod and management ports, and their strict parsers for the readers (the DPU agent
reads the options northd copies into SB Port_Binding; verify reads SB; the controller
reads its own NB rows back).

Parsers raise `ValueError` (or `KeyError` for a missing key) on anything they would not
have written: the data comes from another process, and each caller turns the error into
the refusal of that one record.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

# ------------------------------------------------------------------ options
REQUESTED_CHASSIS = "requested-chassis"
IFACE_ID_VER = "iface-id-ver"
REPRESENTOR = "representor"
PLUG = "dpunet-plug"  # plug mode `agent`: dpunet-dpu plugs the representor
PLUG_PF_MAC = "dpunet-plug:pf-mac"
PLUG_VF_NUM = "dpunet-plug:vf-num"
PLUG_MTU = "dpunet-plug-mtu-request"
OVN_PLUG = "vif-plug-type"  # plug mode `ovn`: ovn-controller's representor plug provider
OVN_PLUG_PF_MAC = "vif-plug:representor:pf-mac"
OVN_PLUG_VF_NUM = "vif-plug:representor:vf-num"
OVN_PLUG_MTU = "vif-plug-mtu-request"

# ------------------------------------------------------- external ids of a pod port
NAMESPACE = "dpunet:namespace"
POD = "dpunet:pod"
UID = "dpunet:uid"
SANDBOX = "dpunet:sandbox"
IFNAME = "dpunet:ifname"
NETWORK = "dpunet:network"  # absent on a pod's primary port
PCI = "dpunet:pci"
PF_MAC = "dpunet:pf-mac"
VF_NUM = "dpunet:vf-num"
LABEL_PREFIX = "dpunet:label:"  # a pod port's labels (service selectors match them)
PORT_PREFIX = "dpunet:port:"  # a pod's named container ports: <name> = <number>/<PROTOCOL>

DEFAULT_IFNAME = "eth0"
_MAC_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_DECIMAL_RE = re.compile(r"[0-9]{1,9}")  # ASCII only: str.isdigit() also accepts "²"
_NETWORK_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class PlugMode(StrEnum):
    """Who plugs the VF representor into br-int on the DPU."""

    AGENT = "agent"  # dpunet-dpu, from `options:dpunet-plug*`
    OVN = "ovn"  # ovn-controller's representor plug provider, from `options:vif-plug*`


# -------------------------------------------------------------------- names
def gateway_external_port(node: str) -> str:
    """`rtoe-GR_<node>`: the gateway router's port on the external switch, whose SB
    Port_Binding `mac` (`<mac> <node ip>/<len>`) the bridge's agent builds its flows from."""
    return f"rtoe-GR_{node}"


def pod_lsp_name(namespace: str, pod: str, network: str | None = None) -> str:
    """A pod's LSP: `<ns>_<pod>` for its primary port; for a secondary network
    OVN-Kubernetes' form, the network name with `-` and `/` as `.`, then `_<ns>_<pod>`
    (`GetSecondaryNetworkLogicalPortName`)."""
    primary = f"{namespace}_{pod}"
    if network is None:
        return primary
    return network.replace("-", ".").replace("/", ".") + "_" + primary


# ------------------------------------------------------------------ builders
@dataclass(frozen=True)
class VfPlug:
    """Which VF's representor the DPU side plugs for a port, and its MTU."""

    pf_mac: str
    vf_num: int
    mtu: int | None = None


def lsp_options(
    chassis: str,
    plug: VfPlug | None = None,
    mode: PlugMode = PlugMode.AGENT,
    iface_id_ver: str | None = None,
) -> dict[str, str]:
    """The options of a pod or management LSP bound on `chassis` (plug options for a VF)."""
    options = {REQUESTED_CHASSIS: chassis}
    if iface_id_ver is not None:
        options[IFACE_ID_VER] = iface_id_ver
    if plug is None:
        return options
    keys = (
        (OVN_PLUG, OVN_PLUG_PF_MAC, OVN_PLUG_VF_NUM, OVN_PLUG_MTU)
        if mode is PlugMode.OVN
        else (PLUG, PLUG_PF_MAC, PLUG_VF_NUM, PLUG_MTU)
    )
    kind, pf_mac, vf_num, mtu = keys
    options |= {kind: REPRESENTOR, pf_mac: plug.pf_mac, vf_num: str(plug.vf_num)}
    if plug.mtu is not None:
        options[mtu] = str(plug.mtu)
    return options


@dataclass(frozen=True)
class PodIds:
    """The `dpunet:*` external ids of a pod LSP: which attachment it is."""

    namespace: str
    pod: str
    uid: str
    sandbox: str
    ifname: str = DEFAULT_IFNAME
    network: str | None = None  # None: the pod's primary port
    pci: str | None = None
    pf_mac: str | None = None
    vf_num: int | None = None
    labels: tuple[tuple[str, str], ...] = ()  # sorted (key, value) pairs
    named_ports: tuple[tuple[str, str, int], ...] = ()  # sorted (name, protocol, number)

    def external_ids(self) -> dict[str, str]:
        """The external ids (without the owner marks the controller adds)."""
        ids = {
            NAMESPACE: self.namespace,
            POD: self.pod,
            UID: self.uid,
            SANDBOX: self.sandbox,
            IFNAME: self.ifname,
        }
        if self.network is not None:
            ids[NETWORK] = self.network
        if self.pci is not None:
            ids[PCI] = self.pci
        if self.pf_mac is not None and self.vf_num is not None:
            ids[PF_MAC] = self.pf_mac
            ids[VF_NUM] = str(self.vf_num)
        ids |= {LABEL_PREFIX + k: v for k, v in self.labels}
        ids |= {PORT_PREFIX + name: f"{number}/{proto}" for name, proto, number in self.named_ports}
        return ids

    @classmethod
    def parse(cls, external_ids: Mapping[str, str]) -> PodIds:
        """The ids `external_ids` holds; KeyError/ValueError when they are not ones
        `external_ids()` writes."""
        network = external_ids.get(NETWORK)
        if network is not None and not _NETWORK_RE.fullmatch(network):
            raise ValueError(f"{NETWORK}={network!r} is not a network name")
        pf_mac, vf = external_ids.get(PF_MAC), external_ids.get(VF_NUM)
        if (pf_mac is None) != (vf is None):
            raise ValueError(f"{PF_MAC} and {VF_NUM} go together")
        return cls(
            namespace=external_ids[NAMESPACE],
            pod=external_ids[POD],
            uid=external_ids[UID],
            sandbox=external_ids[SANDBOX],
            ifname=external_ids.get(IFNAME, DEFAULT_IFNAME),
            network=network,
            pci=external_ids.get(PCI),
            pf_mac=pf_mac,
            vf_num=None if vf is None else decimal(vf, VF_NUM),
            labels=tuple(
                sorted(
                    (k.removeprefix(LABEL_PREFIX), v)
                    for k, v in external_ids.items()
                    if k.startswith(LABEL_PREFIX)
                )
            ),
            named_ports=tuple(
                sorted(
                    _named_port(k.removeprefix(PORT_PREFIX), v)
                    for k, v in external_ids.items()
                    if k.startswith(PORT_PREFIX)
                )
            ),
        )

    @property
    def lsp_name(self) -> str:
        """The LSP these ids belong on."""
        return pod_lsp_name(self.namespace, self.pod, self.network)


# ------------------------------------------------------------------- parsers
def _named_port(name: str, value: str) -> tuple[str, str, int]:
    """(name, protocol, number) of a `dpunet:port:<name>` = `<number>/<PROTOCOL>` id."""
    number, _, proto = value.partition("/")
    if proto not in ("TCP", "UDP", "SCTP"):
        raise ValueError(f"{PORT_PREFIX}{name}={value!r} is not <number>/<TCP|UDP|SCTP>")
    return name, proto, decimal(number, PORT_PREFIX + name)


def decimal(text: str, key: str) -> int:
    """A non-negative integer in ASCII digits (surrounding blanks allowed)."""
    if not _DECIMAL_RE.fullmatch(text.strip()):
        raise ValueError(f"{key}={text!r} is not a non-negative integer")
    return int(text.strip())


def is_mac(text: str) -> bool:
    """`text` is a MAC address in lowercase colon form."""
    return bool(_MAC_RE.fullmatch(text))


def requested_chassis(options: Mapping[str, str]) -> str:
    """The main chassis a port is requested on (the first of `requested-chassis`)."""
    return options.get(REQUESTED_CHASSIS, "").split(",")[0].strip()


def agent_plugs(options: Mapping[str, str]) -> bool:
    """dpunet-dpu is to plug a representor for the port (plug mode `agent`)."""
    return options.get(PLUG) == REPRESENTOR


def representor_wanted(options: Mapping[str, str]) -> bool:
    """A representor is to be plugged for the port, by dpunet-dpu or by ovn-controller."""
    return agent_plugs(options) or options.get(OVN_PLUG) == REPRESENTOR


def parse_mtu(options: Mapping[str, str]) -> int | None:
    """The agent-mode MTU option: None when absent; ValueError when it is no MTU."""
    text = options.get(PLUG_MTU)
    if text is None:
        return None
    try:
        mtu = decimal(text, PLUG_MTU)
    except ValueError:
        mtu = 0
    if not 68 <= mtu <= 65535:
        raise ValueError(f"{PLUG_MTU}={text!r} is not an MTU")
    return mtu


def parse_vf_plug(options: Mapping[str, str]) -> VfPlug:
    """The agent-mode plug options; ValueError naming every unusable one."""
    problems = []
    pf_mac = options.get(PLUG_PF_MAC, "").strip().lower()
    if not is_mac(pf_mac):
        problems.append(f"{PLUG_PF_MAC}={options.get(PLUG_PF_MAC)!r} is not a MAC")
    vf_num = None
    try:
        vf_num = decimal(options.get(PLUG_VF_NUM) or "", PLUG_VF_NUM)
    except ValueError:
        problems.append(f"{PLUG_VF_NUM}={options.get(PLUG_VF_NUM)!r} is not a VF index")
    mtu = None
    try:
        mtu = parse_mtu(options)
    except ValueError as exc:
        problems.append(str(exc))
    if problems or vf_num is None:
        raise ValueError("; ".join(problems))
    return VfPlug(pf_mac, vf_num, mtu)


def pod_of(external_ids: Mapping[str, str]) -> str | None:
    """`<namespace>/<pod>` of a pod port's ids, when both are there (for logs)."""
    ns, name = external_ids.get(NAMESPACE), external_ids.get(POD)
    return f"{ns}/{name}" if ns and name else None
