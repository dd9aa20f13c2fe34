"""Asymmetric Namespace Access: ANA groups, their state on each port, the ANA log page.

NVMe Base 2.0, 8.1 (Asymmetric Namespace Access Reporting) and the ANA log
page (0Ch), in the Linux kernel target's model, which nvmetcli's saved
configuration describes:

* Every namespace belongs to one ANA group (``namespaces[].ana_grpid``,
  group 1 unless configured).
* Each port has its own state for each group (``ports[].ana_groups``,
  ``{"grpid": N, "ana": {"state": "optimized"}}``).  Group 1 exists on
  every port and is optimized unless the configuration says otherwise; a
  group a port does not list is inaccessible through that port, and a
  listed group without a state starts inaccessible, as nvmet creates it.
  So a namespace in group 2, listed optimized on port 1 only, is reached
  through port 1: the multipath layout.
* A controller reports the states of the port its host came in by: its ANA
  log page lists every group known on any port, each with this port's
  state and (unless the host asks for groups only, RGO) the group's active
  NSIDs.
* I/O to a namespace whose group is inaccessible, in persistent loss or in
  change on the controller's port fails with ANA Inaccessible, Persistent
  Loss or Transition (SCT 3h, no DNR), as nvmet_check_ana_state answers,
  so the host's multipath layer tries another path.
* A change (``nvmfd ana-state PORT GROUP STATE``) bumps the change count
  (one count for the daemon, as nvmet keeps one) and raises an ANA Change
  notice (03h) on every I/O controller of that port that enabled it in
  Asynchronous Event Configuration.  A reload or host ACL change
  (``reload.py``) that changes a port's groups or moves a namespace to
  another group does the same for the controllers whose page changed: of
  that port, of that namespace's subsystem, or all of them when the set of
  groups the pages list changed (nvmet: a port's state write notifies the
  port, a namespace's ana_grpid write its subsystem).

The states live in each port's configuration (``PortConfig.ana_groups``,
group ID -> state) and are replaced whole on a change, so connection
threads read them without a lock, and the running configuration (``nvmfd
save``, the ``config`` control operation) carries the current states.
"""

from __future__ import annotations

import logging
import threading

from nvmecontrol.errors import NotFound, UsageError
from nvmecontrol.target import constants as K
from nvmecontrol.wire import logpages as L

log = logging.getLogger("nvmfd")

OPTIMIZED = int(L.AnaState.OPTIMIZED)
NON_OPTIMIZED = int(L.AnaState.NON_OPTIMIZED)
INACCESSIBLE = int(L.AnaState.INACCESSIBLE)
PERSISTENT_LOSS = int(L.AnaState.PERSISTENT_LOSS)
CHANGE = int(L.AnaState.CHANGE)

# The configfs spellings (nvmet's ana_state attribute, nvmetcli's "ana.state").
STATE_NAMES = {"optimized": OPTIMIZED, "non-optimized": NON_OPTIMIZED,
               "inaccessible": INACCESSIBLE, "persistent-loss": PERSISTENT_LOSS,
               "change": CHANGE}
_NAME_OF = {v: k for k, v in STATE_NAMES.items()}
DEFAULT_GRPID = 1
MAX_GRPID = K.ANAGRPMAX
# The state of a group a port does not list, and of a listed group without
# a state (nvmet's port default for every group but 1).
UNLISTED_STATE = INACCESSIBLE
# States that serve I/O; the others refuse it with these statuses.
SERVING = frozenset({OPTIMIZED, NON_OPTIMIZED})
_REFUSAL = {INACCESSIBLE: K.ANA_INACCESSIBLE, PERSISTENT_LOSS: K.ANA_PERSISTENT_LOSS,
            CHANGE: K.ANA_TRANSITION}


def default_groups() -> dict[int, int]:
    """A port's groups when its configuration lists none: group 1, optimized."""
    return {DEFAULT_GRPID: OPTIMIZED}


def parse_state(text, where: str) -> int:
    state = STATE_NAMES.get(str(text).strip().lower())
    if state is None:
        raise UsageError(f'{where}: ANA state "{text}" is not one of {", ".join(STATE_NAMES)}')
    return state


def state_name(state: int) -> str:
    return _NAME_OF.get(state, f"{state:#x}")


def check_grpid(grpid: int, where: str) -> None:
    if not 1 <= grpid <= MAX_GRPID:
        raise UsageError(f"{where}: ANA group {grpid} out of range 1..{MAX_GRPID}")


def state_on(groups: dict[int, int], grpid: int) -> int:
    """The state of group ``grpid`` on a port whose groups are ``groups``."""
    return groups.get(grpid, UNLISTED_STATE)


def serving_groups(groups: dict[int, int]) -> frozenset[int]:
    """The groups a port serves I/O for (the I/O fast path checks membership)."""
    return frozenset(g for g, s in groups.items() if s in SERVING)


def io_refusal(groups: dict[int, int], grpid: int) -> int:
    """The status an I/O command to a namespace of ``grpid`` gets on this port (0: none)."""
    return _REFUSAL.get(groups.get(grpid, UNLISTED_STATE), 0)


def known_groups(port_configs) -> list[int]:
    """Every group some port lists (group 1 always): the groups an ANA log page shows."""
    out = {DEFAULT_GRPID}
    for p in port_configs:
        out.update(p.ana_groups)
    return sorted(out)


class ChangeCount:
    """The ANA change count: one for the daemon, bumped by every state change."""

    def __init__(self):
        self._lock = threading.Lock()
        self.value = 0

    def bump(self) -> int:
        with self._lock:
            # A 64-bit count that wraps to 0 (NVMe Base 2.0, ANA log page CHGCNT).
            self.value = (self.value + 1) & 0xFFFF_FFFF_FFFF_FFFF
            return self.value


CHANGES = ChangeCount()


def build_log(port_groups: dict[int, int], port_configs, namespaces, *, rgo: bool) -> bytes:
    """The ANA log page (0Ch) a controller on a port with ``port_groups`` reads.

    ``namespaces`` is the subsystem's active namespace table; with ``rgo``
    (Return Groups Only) the descriptors list no NSIDs.
    """
    members: dict[int, list[int]] = {}
    for nsid, ns in namespaces.items():
        members.setdefault(ns.anagrpid, []).append(nsid)
    grpids = sorted(set(known_groups(port_configs)) | members.keys())
    count = CHANGES.value
    return L.encode_ana_log(L.AnaLog(chgcnt=count, groups=[
        L.AnaGroupDescriptor(grpid=g, chgcnt=count, state=state_on(port_groups, g),
                             nsids=[] if rgo else members.get(g, []))
        for g in grpids]))


def set_state(server, portid: int, grpid: int, state_text: str) -> dict:
    """``nvmfd ana-state``: group ``grpid`` on port ``portid`` goes to ``state_text``.

    A group the port did not list is added to it.  Every live I/O controller
    of that port gets an ANA Change notice (if it enabled them); the notices
    are sent from a thread of their own, so a host that stopped reading
    cannot stall the control socket.  Taken under the reconfigure lock: a
    reload or host ACL change builds its configuration from the running
    one and would otherwise publish it over this state.
    """
    state = parse_state(state_text, "ana-state")
    check_grpid(grpid, "ana-state")
    with server.reconfigure_lock, server.lock:
        port = next((p for p in server.ports if p.portid == portid), None)
        if port is None:
            raise NotFound(f"no port {portid} (ports: "
                           f"{', '.join(str(p.portid) for p in server.ports) or 'none'})")
        groups = dict(port.cfg.ana_groups)
        old = groups.get(grpid)
        groups[grpid] = state
        port.cfg.ana_groups = groups  # replaced, never mutated: readers take no lock
        count = CHANGES.bump()
        targets = affected_controllers(server.controllers.values(), ports={port})
    log.warning("port %d: ANA group %d %s -> %s (change count %d)", portid, grpid,
                "unlisted" if old is None else state_name(old), state_name(state), count)
    notify(targets)
    return {"port": portid, "group": grpid, "state": state_name(state), "chgcnt": count,
            "notified": len(targets)}


def affected_controllers(controllers, *, ports=frozenset(), subsystems=frozenset(),
                         every: bool = False) -> list:
    """The live I/O controllers whose ANA log page changed: those that came
    in by one of ``ports``, those of one of ``subsystems``, or (``every``)
    all of them.  Called under the server's lock."""
    return [c for c in controllers if not c.discovery and not c.dead
            and (every or c.port in ports or c.sub in subsystems)]


def notify(targets: list) -> None:
    """ANA Change notices to ``targets``, from a thread of their own (a host
    that stopped reading must not stall the caller)."""
    if not targets:
        return

    def run():
        for c in targets:
            if not c.dead:
                c.ana_changed()
    threading.Thread(target=run, name="nvmfd-ana-aen", daemon=True).start()
