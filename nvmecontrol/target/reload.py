"""A new configuration applied to a running nvmfd: SIGHUP, host-add, host-remove.

The change is computed against what is served and applied in two steps:

1. Prepare: open the namespaces that are new or changed and bind the new
   listeners.  Nothing served changes; on any failure (a file that cannot
   be opened, an address in use) what was opened is closed again and the
   error goes to the caller, which keeps the running configuration.
2. Commit, under the server's lock: publish the new subsystem, namespace
   and port tables, then (outside it) end the associations the new
   configuration no longer allows, each with a log line, close what went
   away and tell hosts with asynchronous events.

What is unchanged keeps its objects: a subsystem whose identity (serial,
model, firmware, version, controller ID range, queue limit) is the same
keeps its controllers, and a namespace whose backing store and identity
are the same keeps its open file and its reservations.  A subsystem whose
identity changed is served as a new one (its associations end: hosts must
not see an identity change under a live controller).

An association survives when its port is still there with its subsystem
linked, its subsystem is still served, and its host is still allowed.  A
host that must now authenticate and had not (DH-HMAC-CHAP keys added) has
its associations ended: never served weaker than the configuration asks.
A host whose keys changed keeps its associations; its controllers take the
new settings for the queues they connect from now on.

Ports are matched by PORTID with the same address (a TRSVCID of 0 in the
new configuration matches the port bound before), else by address alone
(a renumbered port keeps its listener); a port whose address changed is
closed and a new listener opened.

ANA: the new configuration's group states are the states from now on, as
nvmet's configfs is its state: a state set with ``nvmfd ana-state`` and
not saved goes back to the file's on a reload (host-add and host-remove
start from the running configuration, so they keep it).  A kept port whose
groups changed, a namespace moved to another group, or a group that
appears on or leaves every port bumps the ANA change count once and sends
the ANA Change notice to the controllers whose log page changed
(``ana.affected_controllers``).
"""

from __future__ import annotations

import copy
import logging
import threading
from dataclasses import replace

from nvmecontrol.target import ana
from nvmecontrol.target.config import (HostAuthConfig, NamespaceConfig, SubsystemConfig,
                                       TargetConfig)
from nvmecontrol.target.controller import EVENT_DISC
from nvmecontrol.target.namespace import namespace_on, open_namespace
from nvmecontrol.target.port_params import parse_port_params

log = logging.getLogger("nvmfd")

# SubsystemConfig fields that make up what a host sees of the subsystem's
# identity and controllers; a change to any of them serves a new subsystem.
_IDENTITY = ("serial", "model", "firmware", "version", "cntlid_min", "cntlid_max", "qid_max",
             "extra_attr")


# --- configuration edits (host-add, host-remove) -------------------------------

def with_host(cfg: TargetConfig, subnqn: str, hostnqn: str,
              auth: HostAuthConfig | None) -> TargetConfig:
    """``cfg`` with ``hostnqn`` allowed on ``subnqn`` (and its keys set, when given)."""
    new = copy.deepcopy(cfg)
    if hostnqn not in new.hosts:
        new.hosts.append(hostnqn)
    sub = new.subsystem(subnqn)
    if hostnqn not in sub.allowed_hosts:
        sub.allowed_hosts.append(hostnqn)
    if auth is not None:
        new.host_auth[hostnqn] = auth
    return new


def without_host(cfg: TargetConfig, subnqn: str, hostnqn: str) -> TargetConfig:
    """``cfg`` without ``hostnqn`` on ``subnqn``; a host no subsystem lists any
    more leaves ``hosts`` (and its keys with it), as nvmetcli saves only
    hosts that are linked somewhere."""
    new = copy.deepcopy(cfg)
    sub = new.subsystem(subnqn)
    sub.allowed_hosts = [h for h in sub.allowed_hosts if h != hostnqn]
    if not any(hostnqn in s.allowed_hosts for s in new.subsystems):
        new.hosts = [h for h in new.hosts if h != hostnqn]
        new.host_auth.pop(hostnqn, None)
    return new


# --- the plan --------------------------------------------------------------------

def _served_namespaces(sub_cfg: SubsystemConfig) -> dict[int, NamespaceConfig]:
    return {n.nsid: n for n in sub_cfg.namespaces if n.enable}


def _same_namespace(a: NamespaceConfig, b: NamespaceConfig) -> bool:
    """Same backing store and identity (the ANA group may move without reopening)."""
    return replace(a, ana_grpid=0) == replace(b, ana_grpid=0)


def _same_identity(a: SubsystemConfig, b: SubsystemConfig) -> bool:
    return all(getattr(a, f) == getattr(b, f) for f in _IDENTITY)


def _same_address(port, cfg, *, any_zero: bool) -> bool:
    if (port.traddr, port.adrfam) != (cfg.traddr, cfg.adrfam):
        return False
    return cfg.trsvcid == port.trsvcid or (any_zero and cfg.trsvcid == "0")


class _Plan:
    """What a new configuration changes, with what prepare opened."""

    def __init__(self):
        self.kept_subs: dict = {}          # nqn -> (Subsystem, new cfg)
        self.new_subs: dict = {}           # nqn -> Subsystem (namespaces opened)
        self.gone_subs: dict = {}          # nqn -> (Subsystem, why)
        self.opened: dict = {}             # (nqn, nsid) -> Namespace, for kept subsystems
        self.gone_ns: dict = {}            # (nqn, nsid) -> Namespace
        # RAM stores a changed namespace goes on using: a new mapping would be
        # a blank disk under the same identifiers (NGUID, UUID, EUI-64).
        self.kept_backends: list = []
        self.kept_ports: list = []         # (Port, new PortConfig)
        self.new_ports: list = []          # Port (bound)
        self.gone_ports: list = []         # Port

    def undo(self) -> None:
        for ns in self.opened.values():
            if ns.backend not in self.kept_backends:
                ns.backend.close_now()
        for sub in self.new_subs.values():
            sub.close()
        for port in self.new_ports:
            if port.sock is not None:
                port.sock.close()
                port.sock = None


def _plan_subsystems(server, new: TargetConfig, plan: _Plan) -> None:
    from nvmecontrol.target.subsystem import Subsystem

    for scfg in new.subsystems:
        old = server.subsystems.get(scfg.nqn)
        if old is not None and _same_identity(old.cfg, scfg):
            plan.kept_subs[scfg.nqn] = (old, scfg)
            before = _served_namespaces(old.cfg)
            for nsid, ncfg in _served_namespaces(scfg).items():
                was = before.get(nsid)
                if was is not None and nsid in old.namespaces and _same_namespace(was, ncfg):
                    continue
                live = old.namespaces.get(nsid)
                if was is not None and live is not None and was.path == ncfg.path \
                        and live.backend.ram is not None:
                    plan.kept_backends.append(live.backend)
                    plan.opened[scfg.nqn, nsid] = namespace_on(
                        live.backend, ncfg, scfg.nqn, read_only=old.read_only or ncfg.read_only)
                    continue
                plan.opened[scfg.nqn, nsid] = open_namespace(ncfg, scfg.nqn,
                                                             read_only=old.read_only)
            after = _served_namespaces(scfg)
            for nsid, ns in old.namespaces.items():
                if (scfg.nqn, nsid) in plan.opened or nsid not in after:
                    plan.gone_ns[scfg.nqn, nsid] = ns
            continue
        if old is not None:
            plan.gone_subs[scfg.nqn] = (old, "its identity changed")
        sub = Subsystem(scfg, read_only=server.read_only)
        sub.open_namespaces()
        plan.new_subs[scfg.nqn] = sub
    names = {s.nqn for s in new.subsystems}
    for nqn, old in server.subsystems.items():
        if nqn not in names:
            plan.gone_subs[nqn] = (old, "its subsystem was removed")


def _plan_ports(server, new: TargetConfig, plan: _Plan) -> None:
    from nvmecontrol.target.server import Port

    left = list(server.ports)
    todo = []
    for pcfg in new.ports:
        # Checked here, not when a kept port takes them under the lock.
        parse_port_params(pcfg.param, f"port {pcfg.portid}")
        match = next((p for p in left if p.portid == pcfg.portid
                      and _same_address(p, pcfg, any_zero=True)), None)
        if match is None:
            todo.append(pcfg)
        else:
            left.remove(match)
            plan.kept_ports.append((match, pcfg))
    for pcfg in todo:
        match = next((p for p in left if _same_address(p, pcfg, any_zero=False)), None)
        if match is not None:
            left.remove(match)
            plan.kept_ports.append((match, pcfg))
            continue
        port = Port(pcfg)
        server.listen(port, [p for p, _c in plan.kept_ports] + plan.new_ports)
        plan.new_ports.append(port)
    plan.gone_ports = left


def _plan(server, new: TargetConfig) -> _Plan:
    plan = _Plan()
    try:
        _plan_subsystems(server, new, plan)
        _plan_ports(server, new, plan)
    except BaseException:
        plan.undo()
        raise
    return plan


# --- applying it -------------------------------------------------------------------

def _why_terminated(ctrl, plan: _Plan, new: TargetConfig) -> str | None:
    """Why the new configuration ends this association, or None when it survives."""
    port = ctrl.port
    if getattr(port, "discovery_only", False):
        port = port.io
    if port in plan.gone_ports:
        return f"its port {port.portid} was removed"
    if ctrl.discovery:
        return None
    gone = plan.gone_subs.get(ctrl.subnqn)
    if gone is not None and gone[0] is ctrl.sub:
        return gone[1]
    if ctrl.subnqn not in port.subsystems:
        return f"its subsystem is no longer exported on port {port.portid}"
    if not ctrl.sub.host_allowed(ctrl.hostnqn):
        return "its host is no longer allowed"
    if ctrl.hostnqn in new.host_auth and ctrl.auth_cfg is None:
        return "its host must now authenticate (DH-HMAC-CHAP)"
    return None


def apply_config(server, new: TargetConfig) -> dict:
    """Serve ``new`` from now on; returns what changed (counts).

    Raises (UsageError, OSError) before anything changed when the new
    configuration cannot be served; the running one is kept then.
    """
    plan = _plan(server, new)
    terminate: list = []
    notify_ns: dict = {}           # Controller -> [nsid, ...]
    auth_changed: list = []
    moved: set = set()             # subsystems with a namespace in another ANA group
    with server.lock:
        old_auth = dict(server.config.host_auth)
        old_groups = {port: port.cfg.ana_groups for port, _c in plan.kept_ports}
        old_known = ana.known_groups(server.config.ports)
        # Subsystems: kept objects take their new configuration and namespace table.
        subs = {}
        for nqn, (sub, scfg) in plan.kept_subs.items():
            table = {nsid: ns for nsid, ns in sub.namespaces.items()
                     if (nqn, nsid) not in plan.gone_ns}
            for (snqn, nsid), ns in plan.opened.items():
                if snqn == nqn:
                    table[nsid] = ns
            was = _served_namespaces(sub.cfg)
            for ncfg in scfg.namespaces:
                ns = table.get(ncfg.nsid)
                if ns is not None:
                    ns.anagrpid = ncfg.ana_grpid
                if ncfg.enable and ncfg.nsid in was \
                        and was[ncfg.nsid].ana_grpid != ncfg.ana_grpid:
                    moved.add(sub)
            changed = sorted({nsid for (snqn, nsid) in plan.gone_ns if snqn == nqn}
                             | {nsid for (snqn, nsid) in plan.opened if snqn == nqn})
            for nsid in changed:
                if (nqn, nsid) in plan.gone_ns:
                    sub.reservations.forget(nsid)
            sub.cfg = scfg
            # Copy-on-write, as Subsystem.add_namespace publishes it.
            sub.namespaces = dict(sorted(table.items()))
            subs[nqn] = sub
            if changed:
                for c in server.controllers.values():
                    if c.sub is sub and not c.dead:
                        notify_ns[c] = changed
        subs.update(plan.new_subs)
        server.subsystems = {s.nqn: subs[s.nqn] for s in new.subsystems}
        # Ports: kept ones take their new settings (TRSVCID as bound).
        for port, pcfg in plan.kept_ports:
            pcfg.trsvcid = port.trsvcid
            port.update(pcfg)
        order = {p.portid: i for i, p in enumerate(new.ports)}
        server.ports = sorted([p for p, _c in plan.kept_ports] + plan.new_ports,
                              key=lambda p: order[p.portid])
        server.config = new
        ana_ports = {port for port, _c in plan.kept_ports
                     if port.cfg.ana_groups != old_groups[port]}
        ana_every = ana.known_groups(new.ports) != old_known
        ana_count = ana.CHANGES.bump() if ana_ports or moved or ana_every else None
        for c in list(server.controllers.values()):
            if c.dead:
                continue
            why = _why_terminated(c, plan, new)
            if why is not None:
                c.dead = True
                terminate.append((c, why))
                continue
            if c.discovery:
                continue
            auth = new.host_auth.get(c.hostnqn)
            if auth != old_auth.get(c.hostnqn):
                # Queues connected from now on authenticate with the new settings.
                c.auth_cfg = auth
                auth_changed.append(c)
        server.genctr += 1
        disc = [c for c in server.controllers.values() if c.discovery and not c.dead]
        ana_targets = ana.affected_controllers(server.controllers.values(), ports=ana_ports,
                                               subsystems=moved, every=ana_every)
    notify_ns = {c: n for c, n in notify_ns.items() if not c.dead}
    for c, why in terminate:
        log.warning("association %d (host %s, %s): terminated: %s after the configuration "
                    "changed", c.id, c.hostnqn, c.subnqn, why)
        c.abort()
    for c in auth_changed:
        # As nvmet: live queues keep what they proved (a host whose key is
        # rotated on the target first would otherwise fail its I/O at once);
        # `nvmfd reauth` asks for a new transaction when the host has the key.
        log.warning("association %d (host %s, %s): DH-HMAC-CHAP settings changed; queues "
                    "connected or authenticating from now on use them", c.id, c.hostnqn,
                    c.subnqn)
    lobby = server.lobby
    for port in plan.gone_ports:
        if lobby is not None:
            lobby.remove_port(port)
        elif port.sock is not None:
            port.sock.close()
            port.sock = None
    for port in plan.new_ports:
        if lobby is not None:
            lobby.add_port(port)
    for ns in plan.gone_ns.values():
        if ns.backend not in plan.kept_backends:
            ns.backend.close()  # closed after a grace period: I/O may have looked it up
    for sub, _why in plan.gone_subs.values():
        for ns in sub.namespaces.values():
            ns.backend.close()
    _post_events(notify_ns, disc)
    if ana_count is not None:
        log.warning("ANA groups changed by the configuration (change count %d): %s", ana_count,
                    "; ".join(_ana_changes(ana_ports, moved, ana_every)))
        ana.notify(ana_targets)
    summary = {
        "subsystems_added": sum(1 for n in plan.new_subs if n not in plan.gone_subs),
        "subsystems_removed": sum(1 for n in plan.gone_subs if n not in plan.new_subs),
        "subsystems_replaced": sum(1 for n in plan.gone_subs if n in plan.new_subs),
        "namespaces_opened": len(plan.opened),
        "namespaces_closed": len(plan.gone_ns),
        "ports_opened": len(plan.new_ports),
        "ports_closed": len(plan.gone_ports),
        "terminated": len(terminate),
        "ana_notified": len(ana_targets),
    }
    log.warning("configuration applied: %s", ", ".join(f"{k.replace('_', ' ')} {v}"
                                                        for k, v in summary.items()))
    return summary


def _ana_changes(ports: set, moved: set, every: bool) -> list[str]:
    """What changed, for the log line."""
    out = []
    for p in sorted(ports, key=lambda p: p.portid):
        states = ", ".join(f"{g} {ana.state_name(s)}" for g, s in sorted(p.cfg.ana_groups.items()))
        out.append(f"port {p.portid} groups {states}")
    out += [f"namespaces of {s.nqn} moved" for s in sorted(moved, key=lambda s: s.nqn)]
    if every:
        out.append("the set of groups changed")
    return out


def _post_events(notify_ns: dict, disc: list) -> None:
    """Namespace Attribute Changed to the I/O controllers whose namespaces
    changed, Discovery Log Change to every discovery controller; from a
    thread of its own, as a host that stopped reading must not stall us."""
    if not notify_ns and not disc:
        return

    def run():
        for c, nsids in notify_ns.items():
            for nsid in nsids:
                c.namespace_changed(nsid)
        for c in disc:
            c.post_event(EVENT_DISC)
    threading.Thread(target=run, name="nvmfd-aen", daemon=True).start()
