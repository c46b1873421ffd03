"""The reconcile of plug mode `agent`: SB Port_Bindings of this chassis -> representor
ports on br-int.

Pure part (no I/O, unit-tested): `wanted()` selects and parses the bindings,
`resolve()` maps each to its representor's current netdev (or refuses it),
`plan_ports()` diffs the desired ports against the ports on OVS, `plan_links()` lists
MTU/up fixes. `Reconciler.reconcile()` gathers the state, runs the pure part and carries
the plan out; it is blocking (ovsdbapp, pyroute2, sysfs) and meant for one worker thread.
Every pass starts from scratch, so any pass repairs whatever the previous one (or a
killed process) left behind.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from dpunet.contract import lsp
from dpunet.dpu.config import DpuAgentConfig, Identity
from dpunet.dpu.metrics import Metrics
from dpunet.dpu.sb import PortBindingRow, SbSnapshot
from dpunet.hw.representors import Representor, RepresentorKind, list_representors
from dpunet.hw.sysfs import Sysfs
from dpunet.linux.netlink import Link, Netlink
from dpunet.logs import event
from dpunet.ovsdb.local import (
    ATTACHED_MAC,
    IFACE_ID,
    IFACE_ID_VER,
    MANAGED_KEYS,
    OWNED_KEY,
    OWNED_VALUE,
    LocalOvs,
    OvsPort,
    OvsState,
)
from dpunet.ovsdb.vswitch import IdsChange

VSWITCHD_TIMEOUT = 10.0

log = logging.getLogger(__name__)


class Reason(StrEnum):
    """Why a binding is not plugged."""

    BAD_OPTIONS = "bad-options"
    UNKNOWN_PF = "unknown-pf-mac"
    NO_REPRESENTOR = "no-representor"
    AMBIGUOUS = "ambiguous-representor"
    MGMT_VF = "mgmt-vf"
    CONFLICT = "conflict"
    NOT_OWNED = "port-not-owned"
    NO_BRIDGE = "no-bridge"
    NAME_TAKEN = "name-taken"


@dataclass(frozen=True)
class Refusal:
    """A binding (or the management port) the agent will not plug, and why."""

    logical_port: str
    reason: Reason
    detail: str


@dataclass(frozen=True)
class PlugRequest:
    """A Port_Binding of this chassis asking for a representor, parsed."""

    logical_port: str
    pf_mac: str
    vf_num: int
    iface_id_ver: str | None = None
    attached_mac: str | None = None
    mtu: int | None = None
    pod: str | None = None
    sandbox: str | None = None


@dataclass(frozen=True)
class MgmtSpec:
    """The management port: which VF's representor, under which name, as which LSP."""

    pf_index: int
    vf_index: int
    name: str
    iface_id: str
    iface_id_ver: str | None = None
    attached_mac: str | None = None
    mtu: int | None = None


@dataclass(frozen=True)
class DesiredPort:
    """A port that must exist on br-int, named after the representor's current netdev."""

    name: str
    iface_id: str
    iface_id_ver: str | None = None
    attached_mac: str | None = None
    mtu: int | None = None
    mgmt: bool = False
    pod: str | None = None
    sandbox: str | None = None

    def external_ids(self) -> dict[str, str]:
        """The interface `external_ids` the agent owns for this port."""
        ids = {IFACE_ID: self.iface_id, OWNED_KEY: OWNED_VALUE}
        if self.iface_id_ver:
            ids[IFACE_ID_VER] = self.iface_id_ver
        if self.attached_mac:
            ids[ATTACHED_MAC] = self.attached_mac
        return ids


@dataclass
class PortPlan:
    """What to change on OVS."""

    remove: list[str] = field(default_factory=list)
    add: dict[str, DesiredPort] = field(default_factory=dict)
    update: list[IdsChange] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    blocked: set[str] = field(default_factory=set)
    again: bool = False

    @property
    def empty(self) -> bool:
        """Nothing to change."""
        return not (self.remove or self.add or self.update)


@dataclass(frozen=True)
class LinkFix:
    """MTU and/or admin-up to apply to one representor."""

    name: str
    index: int
    mtu: int | None
    up: bool


# ----------------------------------------------------------------- pure part
def binding_mac(macs: Iterable[str]) -> str | None:
    """The Ethernet address of a Port_Binding's `mac` column (`"<mac> <ip>..."`), if any."""
    for entry in macs:
        first = entry.split()[0].lower() if entry.split() else ""
        if lsp.is_mac(first):
            return first
    return None


def is_ours(row: PortBindingRow, names: frozenset[str], chassis_uuid: str | None) -> bool:
    """The binding's requested (main) chassis is this one."""
    if chassis_uuid is not None and row.requested_chassis == chassis_uuid:
        return True
    main = lsp.requested_chassis(row.options)
    return bool(main) and main in names


def parse_mtu(options: Mapping[str, str]) -> int | Refusal | None:
    """The MTU option: None when absent, the MTU, or why it is unusable (as a Refusal
    without its port, filled in by the caller)."""
    try:
        return lsp.parse_mtu(options)
    except ValueError as exc:
        return Refusal("", Reason.BAD_OPTIONS, str(exc))


def parse_request(row: PortBindingRow) -> PlugRequest | Refusal:
    """A binding with `dpunet-plug=representor` as a PlugRequest, or why it is unusable."""
    try:
        plug = lsp.parse_vf_plug(row.options)
    except ValueError as exc:
        return Refusal(row.logical_port, Reason.BAD_OPTIONS, str(exc))
    return PlugRequest(
        logical_port=row.logical_port,
        pf_mac=plug.pf_mac,
        vf_num=plug.vf_num,
        iface_id_ver=row.options.get(lsp.IFACE_ID_VER) or None,
        attached_mac=binding_mac(row.mac),
        mtu=plug.mtu,
        pod=lsp.pod_of(row.external_ids),
        sandbox=row.external_ids.get(lsp.SANDBOX),
    )


def wanted(snapshot: SbSnapshot, names: frozenset[str]) -> tuple[list[PlugRequest], list[Refusal]]:
    """The bindings of this chassis that ask for a representor, parsed; unusable ones as
    refusals. One binding never stops the others: whatever goes wrong with one is its
    refusal."""
    requests: list[PlugRequest] = []
    refusals: list[Refusal] = []
    for row in snapshot.bindings:
        try:
            if not lsp.agent_plugs(row.options):
                continue
            if not is_ours(row, names, snapshot.chassis_uuid):
                continue
            parsed = parse_request(row)
        except Exception as exc:  # a record no check above foresaw
            parsed = Refusal(row.logical_port, Reason.BAD_OPTIONS, f"unreadable binding: {exc!r}")
        if isinstance(parsed, Refusal):
            refusals.append(parsed)
        else:
            requests.append(parsed)
    return requests, refusals


def find_mgmt_representor(
    representors: Sequence[Representor], pf_index: int, vf_index: int
) -> Representor | None:
    """The management VF's representor (the external-controller form first, as
    `hw.representors` prefers it)."""
    found = [
        r
        for r in representors
        if r.kind is RepresentorKind.VF and r.pf_index == pf_index and r.vf_index == vf_index
    ]
    found.sort(key=lambda r: r.controller is None)
    return found[0] if found else None


def resolve(
    requests: Sequence[PlugRequest],
    representors: Sequence[Representor],
    mgmt: MgmtSpec | None,
    plugged_iface_ids: Mapping[str, str],
) -> tuple[dict[str, DesiredPort], list[Refusal]]:
    """Map each request to its representor's current netdev.

    Refused: a pf-mac that is not one of this DPU's host PFs, a VF without representor
    (or with several), the management VF, and several bindings for one representor (the
    one already plugged there keeps it; otherwise all are refused).
    `plugged_iface_ids` maps OVS port name -> iface-id of the owned ports now.
    """
    host_macs = {
        r.host_pf_mac for r in representors if r.kind is RepresentorKind.UPLINK and r.host_pf_mac
    }
    by_function: dict[tuple[str, int], list[Representor]] = {}
    for rep in representors:
        if rep.kind is RepresentorKind.VF and rep.host_pf_mac and rep.vf_index is not None:
            by_function.setdefault((rep.host_pf_mac, rep.vf_index), []).append(rep)
    desired: dict[str, DesiredPort] = {}
    refusals: list[Refusal] = []
    mgmt_rep = find_mgmt_representor(representors, mgmt.pf_index, mgmt.vf_index) if mgmt else None

    claims: dict[str, list[tuple[PlugRequest, Representor]]] = {}
    for req in requests:
        if req.pf_mac not in host_macs:
            known = ", ".join(sorted(host_macs)) or "none"
            refusals.append(
                Refusal(
                    req.logical_port,
                    Reason.UNKNOWN_PF,
                    f"pf-mac {req.pf_mac} is not a host PF of this DPU (host PFs: {known})",
                )
            )
            continue
        candidates = by_function.get((req.pf_mac, req.vf_num), [])
        external = [r for r in candidates if r.controller is not None]
        candidates = external or candidates
        if not candidates:
            refusals.append(
                Refusal(
                    req.logical_port,
                    Reason.NO_REPRESENTOR,
                    f"no representor for VF {req.vf_num} of the PF with MAC {req.pf_mac}",
                )
            )
            continue
        if len(candidates) > 1:
            names = ", ".join(r.netdev for r in candidates)
            refusals.append(
                Refusal(req.logical_port, Reason.AMBIGUOUS, f"several representors: {names}")
            )
            continue
        rep = candidates[0]
        if mgmt_rep is not None and rep.netdev == mgmt_rep.netdev:
            refusals.append(
                Refusal(
                    req.logical_port,
                    Reason.MGMT_VF,
                    f"VF {req.vf_num} is the management port's VF",
                )
            )
            continue
        claims.setdefault(rep.netdev, []).append((req, rep))

    for netdev, claimed in sorted(claims.items()):
        if len(claimed) > 1:
            holder = plugged_iface_ids.get(netdev)
            keep = [c for c in claimed if c[0].logical_port == holder]
            lports = ", ".join(sorted(c[0].logical_port for c in claimed))
            for req, _ in claimed:
                if keep and req is keep[0][0]:
                    continue
                refusals.append(
                    Refusal(
                        req.logical_port,
                        Reason.CONFLICT,
                        f"representor {netdev} is requested by several bindings: {lports}",
                    )
                )
            claimed = keep
        for req, rep in claimed:
            desired[rep.netdev] = DesiredPort(
                name=rep.netdev,
                iface_id=req.logical_port,
                iface_id_ver=req.iface_id_ver,
                attached_mac=req.attached_mac,
                mtu=req.mtu,
                pod=req.pod,
                sandbox=req.sandbox,
            )

    if mgmt is not None:
        if mgmt_rep is None:
            refusals.append(
                Refusal(
                    mgmt.iface_id,
                    Reason.NO_REPRESENTOR,
                    f"no representor for management VF {mgmt.vf_index} of PF {mgmt.pf_index}",
                )
            )
        elif mgmt_rep.netdev == mgmt.name:
            desired[mgmt.name] = DesiredPort(
                name=mgmt.name,
                iface_id=mgmt.iface_id,
                iface_id_ver=mgmt.iface_id_ver,
                attached_mac=mgmt.attached_mac,
                mtu=mgmt.mtu,
                mgmt=True,
            )
    return desired, refusals


def plan_ports(
    desired: Mapping[str, DesiredPort],
    ports: Sequence[OvsPort],
    bridge: str,
    keep: Iterable[str] = (),
) -> PortPlan:
    """Diff `desired` against the ports on OVS: remove owned ports nobody wants (or that
    sit on another bridge), add missing ones, fix the ids of the rest. Ports named in
    `keep` and ports dpunet does not own are never changed; a desired name held by a
    port dpunet does not own is refused (and `blocked`)."""
    plan = PortPlan()
    kept = set(keep)
    existing = {p.name: p for p in ports}
    for owned in ports:
        if not owned.owned or owned.name in kept:
            continue
        if owned.name not in desired or owned.bridge != bridge:
            plan.remove.append(owned.name)
    for name, want in sorted(desired.items()):
        port = existing.get(name)
        if port is None:
            plan.add[name] = want
            continue
        if not port.owned:
            plan.blocked.add(name)
            plan.refusals.append(
                Refusal(
                    want.iface_id,
                    Reason.NOT_OWNED,
                    f"port {name} exists on bridge {port.bridge} without {OWNED_KEY}=true",
                )
            )
            continue
        if port.bridge != bridge:
            plan.again = True  # removed now, added back on the next pass
            continue
        if name in kept:
            continue
        ids = want.external_ids()
        to_set = {k: v for k, v in ids.items() if port.external_ids.get(k) != v}
        to_remove = tuple(k for k in MANAGED_KEYS if k not in ids and k in port.external_ids)
        if to_set or to_remove:
            plan.update.append(IdsChange(name, to_set, to_remove))
    return plan


def plan_links(
    desired: Mapping[str, DesiredPort], links: Mapping[str, Link | None]
) -> list[LinkFix]:
    """MTU and admin-state fixes for the desired ports' links."""
    fixes = []
    for name, want in sorted(desired.items()):
        link = links.get(name)
        if link is None:
            continue
        mtu = want.mtu if want.mtu is not None and want.mtu != link.mtu else None
        if mtu is not None or not link.up:
            fixes.append(LinkFix(name, link.index, mtu, not link.up))
    return fixes


# ----------------------------------------------------------------- executor
@dataclass
class ReconcileResult:
    """What one pass did and whether it should be retried soon."""

    actions: dict[str, int] = field(default_factory=dict)
    refusals: list[Refusal] = field(default_factory=list)
    owned: int = 0
    retry: bool = False
    waiting_for: str | None = None

    def count(self, action: str, n: int = 1) -> None:
        """Record `n` actions of kind `action`."""
        if n:
            self.actions[action] = self.actions.get(action, 0) + n


class Reconciler:
    """One reconcile pass at a time, against the local OVS, sysfs and netlink."""

    def __init__(
        self,
        cfg: DpuAgentConfig,
        identity: Identity,
        ovs: LocalOvs,
        sysfs: Sysfs,
        metrics: Metrics,
        links_factory: Callable[[], Netlink] = Netlink,
    ) -> None:
        self.cfg = cfg
        self.identity = identity
        self.ovs = ovs
        self.sysfs = sysfs
        self.metrics = metrics
        self._links_factory = links_factory
        self._links: Netlink | None = None
        self._first_seen: dict[str, float] = {}
        self._refused: dict[str, Refusal] = {}
        self._port_errors: dict[str, str] = {}
        self._reps: list[Representor] = []
        self._rep_links: dict[int, str] | None = None

    @property
    def links(self) -> Netlink:
        """The netlink session of the pass (opened in the calling thread on first use,
        closed when the pass ends: pyroute2's IPRoute keeps a message of every request in a
        queue it never reads, so a session kept for the daemon's life grows with each)."""
        if self._links is None:
            self._links = self._links_factory()
        return self._links

    def close(self) -> None:
        """Release the netlink session."""
        if self._links is not None:
            self._links.close()
            self._links = None

    def mgmt_spec(self, sb: SbSnapshot) -> tuple[MgmtSpec | None, list[Refusal]]:
        """The management port wanted now (None when disabled or the host node unknown).
        The VF comes from the config; the `k8s-<node>` binding, when present, gives the
        MAC, `iface-id-ver` and MTU (its plug options, if any, are not needed). An unusable
        MTU option is refused and ignored: the port is plugged without it."""
        mp = self.cfg.mgmt_port
        lport = self.identity.mgmt_lport
        if not mp.enabled or lport is None:
            return None, []
        row = next((b for b in sb.bindings if b.logical_port == lport), None)
        mtu = mp.mtu
        refusals = []
        if row is not None and mtu is None:
            parsed = parse_mtu(row.options)
            if isinstance(parsed, Refusal):
                refusals.append(replace(parsed, logical_port=lport))
            else:
                mtu = parsed
        spec = MgmtSpec(
            pf_index=mp.pf_index,
            vf_index=mp.vf_index,
            name=mp.name,
            iface_id=lport,
            iface_id_ver=(row.options.get(lsp.IFACE_ID_VER) or None) if row else None,
            attached_mac=binding_mac(row.mac) if row is not None else None,
            mtu=mtu,
        )
        return spec, refusals

    def representors(self, rescan: bool) -> list[Representor]:
        """The representors under their current names. sysfs is read again when `rescan`
        or when links appeared or went; a mere rename is applied to the cached list (a
        rename does not change what a netdev represents)."""
        names = self.links.names()
        before = self._rep_links
        if rescan or before is None or names.keys() != before.keys():
            self._reps = list_representors(self.sysfs)
        else:
            renamed = {before[i]: names[i] for i in names if before[i] != names[i]}
            if renamed:
                self._reps = [
                    replace(r, netdev=renamed.get(r.netdev, r.netdev)) for r in self._reps
                ]
        self._rep_links = names
        return list(self._reps)

    def reconcile(self, sb: SbSnapshot, rescan: bool = True) -> ReconcileResult:
        """Bring br-int in line with `sb` (blocking); `rescan` re-reads all of sysfs. The
        pass's netlink session is closed at its end (see `links`)."""
        try:
            return self._reconcile(sb, rescan)
        finally:
            self.close()

    def _reconcile(self, sb: SbSnapshot, rescan: bool) -> ReconcileResult:
        result = ReconcileResult()
        ovs_state = self.ovs.state()
        bridge = self.cfg.integration_bridge
        if not ovs_state.synced:
            result.retry, result.waiting_for = True, "ovs"
            return result
        result.owned = sum(p.owned for p in ovs_state.ports)
        if bridge not in ovs_state.bridges:
            result.retry, result.waiting_for = True, f"bridge {bridge}"
            return result

        representors = self.representors(rescan)
        mgmt, result.refusals = self.mgmt_spec(sb)
        if mgmt is not None and self._ensure_mgmt_name(mgmt, representors, ovs_state, result):
            representors = self.representors(False)
            ovs_state = self.ovs.state()

        keep: list[str] = []
        requests: list[PlugRequest] = []
        if not sb.synced:
            # The desired set is unknown: add what is missing (the management port) but
            # change and remove nothing.
            keep = [p.name for p in ovs_state.ports if p.owned]
            result.waiting_for = "sb"
        elif self.cfg.plug_mode == "agent":
            requests, refused = wanted(sb, self.identity.chassis_names)
            if mgmt is not None:  # the management port's binding is served by `mgmt`
                requests = [r for r in requests if r.logical_port != mgmt.iface_id]
                refused = [r for r in refused if r.logical_port != mgmt.iface_id]
            result.refusals += refused
        plugged = {
            p.name: p.external_ids.get(IFACE_ID, "")
            for p in ovs_state.ports
            if p.owned and p.bridge == bridge
        }
        desired, refused = resolve(requests, representors, mgmt, plugged)
        plan = plan_ports(desired, ovs_state.ports, bridge, keep)
        result.refusals += refused + plan.refusals
        desired = {n: d for n, d in desired.items() if n not in plan.blocked}
        self._note_refusals(result.refusals)

        by_name = {p.name: p for p in ovs_state.ports}
        now = time.monotonic()
        for name, want in desired.items():
            port = by_name.get(name)
            if port is None or port.ofport is None or port.ofport < 0:
                self._first_seen.setdefault(want.iface_id, now)

        self._fix_links(desired, result)
        self._apply(plan, bridge, result)
        final = self.ovs.state() if not plan.empty else ovs_state
        result.owned = sum(p.owned for p in final.ports)
        self._observe_plugged(desired, final, result)
        for action, n in result.actions.items():
            self.metrics.actions.labels(action=action).inc(n)
        self.metrics.ports_owned.set(result.owned)
        result.retry = (
            result.retry or plan.again or bool(result.refusals) or result.waiting_for is not None
        )
        return result

    # ------------------------------------------------------------- steps
    def _ensure_mgmt_name(
        self,
        mgmt: MgmtSpec,
        representors: Sequence[Representor],
        ovs_state: OvsState,
        result: ReconcileResult,
    ) -> bool:
        """Rename the management representor to `mgmt.name` (unplugging it from OVS
        first when it is plugged under its old name); True when it renamed."""
        rep = find_mgmt_representor(representors, mgmt.pf_index, mgmt.vf_index)
        if rep is None or rep.netdev == mgmt.name:
            return False
        taken = self.links.state(mgmt.name)
        if taken is not None:
            result.refusals.append(
                Refusal(
                    mgmt.iface_id,
                    Reason.NAME_TAKEN,
                    f"cannot rename {rep.netdev} to {mgmt.name}: another netdev has that name",
                )
            )
            return False
        port = next((p for p in ovs_state.ports if p.name == rep.netdev), None)
        if port is not None and not port.owned:
            result.refusals.append(
                Refusal(
                    mgmt.iface_id,
                    Reason.NOT_OWNED,
                    f"{rep.netdev} is a port of bridge {port.bridge} that dpunet does not own",
                )
            )
            return False
        if port is not None:
            self._commit(remove=[port.name], add={}, update=[], bridge=self.cfg.integration_bridge)
            result.count("remove")
            event(log, "port-unplugged", port=port.name, lsp=port.external_ids.get(IFACE_ID))
        link = self.links.state(rep.netdev)
        if link is None:
            return False
        self.links.rename(link.index, mgmt.name)
        result.count("rename")
        event(log, "mgmt-renamed", old=rep.netdev, new=mgmt.name, lsp=mgmt.iface_id)
        return True

    def _fix_links(self, desired: Mapping[str, DesiredPort], result: ReconcileResult) -> None:
        links = {name: self.links.brief(name) for name in desired}
        for fix in plan_links(desired, links):
            if fix.mtu is not None:
                self.links.set_mtu(fix.index, fix.mtu)
                result.count("mtu")
                event(log, "link-mtu", port=fix.name, mtu=fix.mtu)
            if fix.up:
                self.links.set_up(fix.index)
                result.count("up")
                event(log, "link-up", port=fix.name)

    def _commit(
        self,
        remove: Sequence[str],
        add: Mapping[str, Mapping[str, str]],
        update: Sequence[IdsChange],
        bridge: str,
    ) -> None:
        next_cfg = self.ovs.apply(bridge, remove, add, update)
        if next_cfg is not None and not self.ovs.wait_applied(next_cfg, VSWITCHD_TIMEOUT):
            event(log, "vswitchd-slow", logging.WARNING, next_cfg=next_cfg)

    def _apply(self, plan: PortPlan, bridge: str, result: ReconcileResult) -> None:
        if plan.empty:
            return
        self._commit(
            plan.remove, {n: d.external_ids() for n, d in plan.add.items()}, plan.update, bridge
        )
        for name in plan.remove:
            result.count("remove")
            event(log, "port-unplugged", port=name)
        for change in plan.update:
            result.count("update")
            event(log, "port-updated", port=change.name, set=change.set, removed=change.remove)
        for name, want in plan.add.items():
            result.count("add")
            event(
                log,
                "port-added",
                port=name,
                lsp=want.iface_id,
                iface_id_ver=want.iface_id_ver,
                mac=want.attached_mac,
                mtu=want.mtu,
                mgmt=want.mgmt or None,
                pod=want.pod,
                sandbox=want.sandbox,
            )

    def _observe_plugged(
        self, desired: Mapping[str, DesiredPort], state: OvsState, result: ReconcileResult
    ) -> None:
        """Plug latency for ports that now have an ofport; ports vswitchd rejected."""
        by_name = {p.name: p for p in state.ports}
        errors: dict[str, str] = {}
        wanted_lports = {d.iface_id for d in desired.values()}
        for lport in list(self._first_seen):
            if lport not in wanted_lports:
                del self._first_seen[lport]
        for name, want in desired.items():
            port = by_name.get(name)
            if port is None:
                continue
            if port.error or port.ofport is None or port.ofport < 0:
                result.retry = True
                error = port.error or "no ofport"
                if self._port_errors.get(name) != error:
                    event(log, "port-error", logging.WARNING, port=name, error=error)
                errors[name] = error
                continue
            started = self._first_seen.pop(want.iface_id, None)
            if started is not None:
                latency = time.monotonic() - started
                self.metrics.plug_latency.observe(latency)
                event(
                    log,
                    "port-plugged",
                    port=name,
                    lsp=want.iface_id,
                    ofport=port.ofport,
                    seconds=round(latency, 4),
                )
        self._port_errors = errors

    def _note_refusals(self, refusals: Sequence[Refusal]) -> None:
        """Log and count refusals when they first appear (not on every pass)."""
        current = {r.logical_port: r for r in refusals}
        for lport, refusal in current.items():
            before = self._refused.get(lport)
            if before is None or before.reason != refusal.reason:
                self.metrics.refusals.labels(reason=refusal.reason.value).inc()
                event(
                    log,
                    "binding-refused",
                    logging.WARNING,
                    lsp=lport,
                    reason=refusal.reason.value,
                    detail=refusal.detail,
                )
        for lport in self._refused.keys() - current.keys():
            event(log, "binding-accepted", lsp=lport)
        self._refused = current
        for reason in Reason:
            self.metrics.refused.labels(reason=reason.value).set(
                sum(1 for r in refusals if r.reason is reason)
            )
