"""Namespace reservations of nvmfd (NVMe Base 2.0, 8.19; NVM Command Set 1.0, 3.2.4-3.2.7).

One :class:`ReservationState` per namespace, shared by every controller of
the subsystem: registrations are keyed by Host Identifier, so all the
controllers (associations) of one host share one registration and one
reservation, as the spec requires.  I/O queue threads of different
associations call it concurrently: each command runs under the state's lock,
and :meth:`ReservationState.check_io` (on every read and write) reads one
tuple without locking.

Rules kept here (the spec's, with the Linux target's choices where the spec
leaves room):

* Register: an unregistered host registers NRKEY; a registered host
  registering again succeeds only with its current key.  Unregister and
  Replace need the current key unless IEKEY.  CPTPL "set" is refused
  (Invalid Field): registrations do not persist through power loss (PTPLS 0).
* All Registrants types: every registrant is a holder; the reservation ends
  when the last registrant goes.  Other types have one holder; its
  unregistering releases the reservation (Reservation Released to the other
  registrants for the Registrants Only types).
* Acquire and Release refuse IEKEY (Invalid Field, NVMe 1.3 and later) and
  need the host's current key (Reservation Conflict).  Releasing with the
  wrong RTYPE is Invalid Field (the Linux target answers Reservation
  Conflict); releasing what one does not hold succeeds and does nothing.
* Preempt and abort preempts like Preempt and aborts nothing: commands run
  to completion as they arrive, and the few already admitted when the
  preempt lands (a write waiting for its H2CData) still complete.
* PRGEN counts successful Register commands, preempts and clears.
* Report needs EDS: NVMe-oF hosts have 128-bit Host Identifiers, so the
  normal structure (64-bit IDs) gets Host Identifier Inconsistent Format.
  Registrants are reported one per host with CNTLID FFFFh (dynamic model).

Notifications (Registration Preempted, Reservation Released, Reservation
Preempted) go to every controller of the affected host through a callback;
each controller queues them in its :class:`ReservationLog` (log page 80h),
filtered by its Reservation Notification Mask (feature 82h).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Callable, Iterable

from nvmecontrol.target import constants as K
from nvmecontrol.wire import reservations as RW
from nvmecontrol.wire import status as S
from nvmecontrol.wire.capsule import SGL_DATA_BLOCK_OFFSET, SGL_TRANSPORT_DATA_BLOCK
from nvmecontrol.wire.nvm import NvmOpc
from nvmecontrol.wire.reservations import (AcquireAction, NotificationType, RegisterAction,
                                           ReleaseAction, ResvOpc, ResvType)
from nvmecontrol.wire.status import make_status

log = logging.getLogger("nvmfd")

RESERVATION_CONFLICT = make_status(S.SCT_GENERIC, S.SC_RESERVATION_CONFLICT, dnr=True)
HOSTID_INCONSISTENT = make_status(S.SCT_GENERIC, S.SC_HOST_ID_INCONSISTENT_FORMAT, dnr=True)
INVALID_FIELD = K.INVALID_FIELD
# Registrations per namespace.  A host picks its Host Identifier at Connect,
# so one host could register under ever new identifiers: this bounds the
# memory and the Report size it can make us hold.  Beyond it Register fails
# with Internal Error (DNR): the spec names no status for a full table.
MAX_REGISTRANTS = 1024
REGISTRANTS_FULL = make_status(S.SCT_GENERIC, S.SC_INTERNAL, dnr=True)
# Notifications kept per controller for log page 80h; when full the oldest
# goes (the host sees the gap in Log Page Count).  Bounds what a host that
# never reads the page makes us hold.
NOTIFICATION_LOG_DEPTH = 64

# Command groups of the access table (NVMe Base 2.0, 8.19, command behavior
# in the presence of a reservation): reads are Read, Compare (05h), Verify
# (0Ch); writes are Flush, Write, Write Uncorrectable (04h), Write Zeroes,
# Dataset Management, Copy (19h).  Other opcodes are not restricted here.
READ_GROUP = frozenset({int(NvmOpc.READ), 0x05, 0x0C})
WRITE_GROUP = frozenset({int(NvmOpc.FLUSH), int(NvmOpc.WRITE), 0x04, int(NvmOpc.WRITE_ZEROES),
                         int(NvmOpc.DATASET_MANAGEMENT), 0x19})
RESERVATION_OPCODES = frozenset(int(o) for o in ResvOpc)

_ALL_REGS = frozenset({ResvType.WRITE_EXCLUSIVE_ALL_REGS, ResvType.EXCLUSIVE_ACCESS_ALL_REGS})
# Who may read and who may write, per type, when the host is not the holder:
# ANYONE, REGISTRANTS or NOBODY (the holder may always do both).
ANYONE, REGISTRANTS, NOBODY = "anyone", "registrants", "nobody"
ACCESS = {
    ResvType.WRITE_EXCLUSIVE: (ANYONE, NOBODY),
    ResvType.EXCLUSIVE_ACCESS: (NOBODY, NOBODY),
    ResvType.WRITE_EXCLUSIVE_REG_ONLY: (ANYONE, REGISTRANTS),
    ResvType.EXCLUSIVE_ACCESS_REG_ONLY: (REGISTRANTS, REGISTRANTS),
    ResvType.WRITE_EXCLUSIVE_ALL_REGS: (ANYONE, REGISTRANTS),
    ResvType.EXCLUSIVE_ACCESS_ALL_REGS: (REGISTRANTS, REGISTRANTS),
}

Notify = Callable[[int, bytes, int], None]  # (nsid, hostid, NotificationType)


def _no_notify(nsid: int, hostid: bytes, kind: int) -> None:
    pass


class ReservationState:
    """Registrations and the reservation of one namespace."""

    def __init__(self, nsid: int, notify: Notify = _no_notify,
                 on_change: Callable[["ReservationState"], None] | None = None):
        self.nsid = nsid
        self.lock = threading.Lock()
        self.keys: dict[bytes, int] = {}  # hostid -> reservation key, in registration order
        # (RTYPE, holder hostid): one tuple so check_io reads it atomically.
        # RTYPE 0 means no reservation; the holder is None for All Registrants.
        self.resv: tuple[int, bytes | None] = (0, None)
        self.gen = 0
        self._notify = notify
        self._on_change = on_change

    @property
    def rtype(self) -> int:
        return self.resv[0]

    def holds(self, hostid: bytes) -> bool:
        rtype, holder = self.resv
        if not rtype:
            return False
        if rtype in _ALL_REGS:
            return hostid in self.keys
        return holder == hostid

    # -- the I/O path --
    def check_io(self, hostid: bytes, opc: int) -> int:
        """0, or Reservation Conflict when the reservation forbids ``opc`` to this host."""
        rtype, holder = self.resv
        if not rtype:
            return 0
        if opc in WRITE_GROUP:
            who = ACCESS[rtype][1]
        elif opc in READ_GROUP:
            who = ACCESS[rtype][0]
        else:
            return 0
        if who == ANYONE or (holder is not None and holder == hostid):
            return 0
        if who == REGISTRANTS and hostid in self.keys:
            return 0
        return RESERVATION_CONFLICT

    # -- Reservation Register --
    def register(self, hostid: bytes, cdw10: int, data) -> int:
        f = RW.decode_register_cdw10(cdw10)
        if f.rrega > RegisterAction.REPLACE or f.cptpl == 1:
            return INVALID_FIELD
        if f.cptpl == RW.Cptpl.SET:
            return INVALID_FIELD  # no persistence through power loss (RESCAP.PTPL 0)
        d = RW.decode_register_data(data)
        notes: list = []
        with self.lock:
            cur = self.keys.get(hostid)
            if f.rrega == RegisterAction.REGISTER:
                if cur is not None:
                    if cur != d.nrkey:
                        return RESERVATION_CONFLICT
                elif len(self.keys) >= MAX_REGISTRANTS:
                    log.warning("namespace %d: %d registrants, Register refused", self.nsid,
                                MAX_REGISTRANTS)
                    return REGISTRANTS_FULL
                else:
                    self.keys[hostid] = d.nrkey
            else:
                if cur is None or (not f.iekey and cur != d.crkey):
                    return RESERVATION_CONFLICT
                if f.rrega == RegisterAction.UNREGISTER:
                    self._unregister(hostid, notes)
                else:
                    self.keys[hostid] = d.nrkey
            self.gen = (self.gen + 1) & 0xFFFFFFFF
        self._after(notes)
        return 0

    def _unregister(self, hostid: bytes, notes: list) -> None:
        """Drop a registration and what goes with it (caller holds the lock)."""
        del self.keys[hostid]
        rtype, holder = self.resv
        if not rtype:
            return
        if rtype in _ALL_REGS:
            if not self.keys:
                self.resv = (0, None)
        elif holder == hostid:
            self.resv = (0, None)
            if rtype in (ResvType.WRITE_EXCLUSIVE_REG_ONLY, ResvType.EXCLUSIVE_ACCESS_REG_ONLY):
                self._tell_registrants(NotificationType.RESERVATION_RELEASED, hostid, notes)

    def _tell_registrants(self, kind: int, but: bytes, notes: list) -> None:
        notes.extend((h, kind) for h in self.keys if h != but)

    def _after(self, notes: list) -> None:
        for hostid, kind in notes:
            self._notify(self.nsid, hostid, kind)
        if self._on_change is not None:
            self._on_change(self)

    # -- Reservation Acquire --
    def acquire(self, hostid: bytes, cdw10: int, data) -> int:
        f = RW.decode_acquire_cdw10(cdw10)
        if f.iekey or f.racqa > AcquireAction.PREEMPT_AND_ABORT or f.rtype not in ACCESS:
            return INVALID_FIELD
        d = RW.decode_acquire_data(data)
        notes: list = []
        with self.lock:
            cur = self.keys.get(hostid)
            if cur is None or cur != d.crkey:
                return RESERVATION_CONFLICT
            if f.racqa == AcquireAction.ACQUIRE:
                rtype = self.resv[0]
                if not rtype:
                    self._reserve(f.rtype, hostid)
                elif not self.holds(hostid) or rtype != f.rtype:
                    return RESERVATION_CONFLICT
            else:
                status = self._preempt(hostid, d.prkey, f.rtype, notes)
                if status:
                    return status
                self.gen = (self.gen + 1) & 0xFFFFFFFF
        self._after(notes)
        return 0

    def _reserve(self, rtype: int, hostid: bytes) -> None:
        self.resv = (rtype, None if rtype in _ALL_REGS else hostid)

    def _preempt_keyed(self, hostid: bytes, prkey: int, notes: list) -> int:
        """Unregister every registrant holding ``prkey`` (Conflict when none does)."""
        victims = [h for h, k in self.keys.items() if k == prkey]
        if not victims:
            return RESERVATION_CONFLICT
        for h in victims:
            self._unregister(h, notes)
            if h != hostid:
                notes.append((h, NotificationType.REGISTRATION_PREEMPTED))
        return 0

    def _preempt(self, hostid: bytes, prkey: int, rtype: int, notes: list) -> int:
        old, holder = self.resv
        if not old:
            return self._preempt_keyed(hostid, prkey, notes)
        if old in _ALL_REGS:
            if prkey:
                return self._preempt_keyed(hostid, prkey, notes)
            # PRKEY 0 under All Registrants: a new reservation for us, every
            # other registrant goes (set first, so none of it releases ours).
            self._reserve(rtype, hostid)
            for h in [h for h in self.keys if h != hostid]:
                self._unregister(h, notes)
                notes.append((h, NotificationType.REGISTRATION_PREEMPTED))
            return 0
        if prkey == self.keys.get(holder):
            self._reserve(rtype, hostid)
            for h in [h for h, k in self.keys.items() if k == prkey and h != hostid]:
                self._unregister(h, notes)
                notes.append((h, NotificationType.REGISTRATION_PREEMPTED))
            if rtype != old:
                self._tell_registrants(NotificationType.RESERVATION_RELEASED, hostid, notes)
            return 0
        if not prkey:
            return INVALID_FIELD
        return self._preempt_keyed(hostid, prkey, notes)

    # -- Reservation Release --
    def release(self, hostid: bytes, cdw10: int, data) -> int:
        f = RW.decode_release_cdw10(cdw10)
        if f.iekey or f.rrela > ReleaseAction.CLEAR:
            return INVALID_FIELD
        d = RW.decode_release_data(data)
        notes: list = []
        with self.lock:
            if hostid not in self.keys or self.keys[hostid] != d.crkey:
                return RESERVATION_CONFLICT
            if f.rrela == ReleaseAction.CLEAR:
                self._tell_registrants(NotificationType.RESERVATION_PREEMPTED, hostid, notes)
                self.keys.clear()
                self.resv = (0, None)
                self.gen = (self.gen + 1) & 0xFFFFFFFF
            elif self.holds(hostid):
                old = self.resv[0]
                if f.rtype != old:
                    return INVALID_FIELD
                self.resv = (0, None)
                if old not in (ResvType.WRITE_EXCLUSIVE, ResvType.EXCLUSIVE_ACCESS):
                    self._tell_registrants(NotificationType.RESERVATION_RELEASED, hostid, notes)
        self._after(notes)
        return 0

    # -- Reservation Report --
    def report(self, hostid: bytes, cdw10: int, cdw11: int) -> tuple[int, bytes]:
        """(status, the first NUMD dwords of the extended Reservation Status)."""
        if not cdw11 & RW.EDS:
            return HOSTID_INCONSISTENT, b""
        length = RW.report_length(cdw10)
        with self.lock:
            rtype, holder = self.resv
            entries = [RW.RegisteredController(
                cntlid=RW.CNTLID_UNKNOWN,
                rcsts=RW.RCSTS_HOLDER if rtype and (rtype in _ALL_REGS or h == holder) else 0,
                hostid=h, rkey=k) for h, k in self.keys.items()]
            st = RW.ReservationStatus(gen=self.gen, rtype=rtype, regctl=len(entries),
                                      ptpls=False, controllers=entries)
        # Only what fits is encoded: REGCTL still counts every registrant.
        room = max(0, (length - RW.STATUS_EXT_HEADER_SIZE) // RW.REGCTL_EXT_SIZE)
        st.controllers = entries[:room]
        page = RW.encode_reservation_status(st, extended=True)
        return 0, page[:length].ljust(length, b"\0")


class SubsystemReservations:
    """The reservation states of a subsystem's namespaces, made on first use.

    ``held`` maps the NSIDs that have a reservation to their state; it is
    replaced, never mutated, so the I/O fast path checks it without a lock
    and leaves every command on a reserved namespace to the checked path.
    """

    def __init__(self, controllers: Callable[[], Iterable]):
        self._controllers = controllers
        self._lock = threading.Lock()
        self._states: dict[int, tuple[object, ReservationState]] = {}
        self.held: dict[int, ReservationState] = {}

    def state(self, ns) -> ReservationState:
        """The state of namespace ``ns``; a namespace added again at its NSID starts clean."""
        entry = self._states.get(ns.nsid)
        if entry is not None and entry[0] is ns:
            return entry[1]
        with self._lock:
            entry = self._states.get(ns.nsid)
            if entry is None or entry[0] is not ns:
                entry = (ns, ReservationState(ns.nsid, self._deliver, self._changed))
                self._states[ns.nsid] = entry
                if ns.nsid in self.held:
                    held = dict(self.held)
                    del held[ns.nsid]
                    self.held = held
            return entry[1]

    def forget(self, nsid: int) -> None:
        """The namespace was removed: its registrations and reservation go with it."""
        with self._lock:
            self._states.pop(nsid, None)
            if nsid in self.held:
                held = dict(self.held)
                del held[nsid]
                self.held = held

    def _changed(self, st: ReservationState) -> None:
        with self._lock:
            entry = self._states.get(st.nsid)
            if entry is None or entry[1] is not st:
                return
            if bool(st.rtype) == (st.nsid in self.held):
                return
            held = dict(self.held)
            if st.rtype:
                held[st.nsid] = st
            else:
                del held[st.nsid]
            self.held = held

    def _deliver(self, nsid: int, hostid: bytes, kind: int) -> None:
        for ctrl in list(self._controllers()):
            if bytes(ctrl.hostid) == hostid and not ctrl.dead:
                ctrl.reservation_notice(nsid, kind)


class ReservationLog:
    """One controller's Reservation Notification log (80h) and notification masks."""

    def __init__(self):
        self.lock = threading.Lock()
        self.entries: deque = deque(maxlen=NOTIFICATION_LOG_DEPTH)
        self.count = 0
        self.default_mask = 0
        self.masks: dict[int, int] = {}

    def mask(self, nsid: int) -> int:
        return self.masks.get(nsid, self.default_mask)

    def set_mask(self, nsid: int | None, value: int) -> None:
        """Mask for one namespace, or for all (``None``: NSID FFFFFFFFh)."""
        with self.lock:
            if nsid is None:
                self.default_mask = value
                self.masks.clear()
            else:
                self.masks[nsid] = value

    def add(self, nsid: int, kind: int) -> bool:
        """Queue a notification unless masked; True when queued."""
        with self.lock:
            if self.mask(nsid) & RW.notification_mask_bit(kind):
                return False
            # Log Page Count: 64 bits, 0 only for the empty page.
            self.count = self.count + 1 if self.count < (1 << 64) - 1 else 1
            self.entries.append((self.count, kind, nsid))
            return True

    def peek(self) -> bytes:
        """The page a read returns now: the oldest entry, or the empty page."""
        with self.lock:
            if not self.entries:
                return RW.encode_reservation_notification(
                    RW.ReservationNotification(0, NotificationType.EMPTY, 0, 0))
            count, kind, nsid = self.entries[0]
            available = min(len(self.entries) - 1, 255)
            return RW.encode_reservation_notification(
                RW.ReservationNotification(count, kind, available, nsid))

    def consume(self) -> int:
        """Drop the entry a read returned; the number still waiting."""
        with self.lock:
            if self.entries:
                self.entries.popleft()
            return len(self.entries)


# --- the I/O queue side ---------------------------------------------------------

_DATA_SIZE = {
    ResvOpc.REGISTER: RW.REGISTER_DATA_SIZE,
    ResvOpc.ACQUIRE: RW.ACQUIRE_DATA_SIZE,
    ResvOpc.RELEASE: RW.RELEASE_DATA_SIZE,
}
PEL_SGL, PEL_CDW10 = 24, 40


def io_command(conn, ctrl, state: ReservationState, cid: int, opc: int, saddr: int, slen: int,
               stype: int, cdw10: int, cdw11: int, data) -> None:
    """Run a reservation command (``opc`` in RESERVATION_OPCODES) of an I/O queue, complete it."""
    hostid = bytes(ctrl.hostid)
    nsid = state.nsid

    def fail(status: int, why: str, pel: int = K.PEL_NONE) -> None:
        conn.fail(cid, status, why, opc=opc, nsid=nsid, pel=pel)

    if opc == ResvOpc.REPORT:
        length = RW.report_length(cdw10)
        if length > K.MAX_TRANSFER:
            return fail(INVALID_FIELD, f"Reservation Report of {length} bytes exceeds MDTS",
                        PEL_CDW10)
        if stype != SGL_TRANSPORT_DATA_BLOCK or data is not None:
            return fail(K.SGL_TYPE_INVALID if stype != SGL_DATA_BLOCK_OFFSET else INVALID_FIELD,
                        f"SGL descriptor type {stype:#04x} on a Reservation Report", PEL_SGL)
        if slen != length:
            return fail(K.SGL_DATA_LENGTH_INVALID,
                        f"SGL length {slen}, NUMD asks for {length} bytes", PEL_SGL)
        status, page = state.report(hostid, cdw10, cdw11)
        if status:
            return fail(status, "Reservation Report without the extended data structure "
                        "(hosts have 128-bit identifiers)", 44)
        conn.send_read(cid, page)
        return
    need = _DATA_SIZE[opc]
    run = {ResvOpc.REGISTER: state.register, ResvOpc.ACQUIRE: state.acquire,
           ResvOpc.RELEASE: state.release}[opc]

    def execute(buf) -> None:
        status = run(hostid, cdw10, buf)
        if status:
            fail(status, f"{ResvOpc(opc).name.lower()} refused: {S.describe_status(status)}",
                 PEL_CDW10 if status == INVALID_FIELD else K.PEL_NONE)
        else:
            conn.respond(cid)

    if not need <= slen <= K.MAX_COLLECTED_DATA:
        return fail(K.SGL_DATA_LENGTH_INVALID,
                    f"SGL of {slen} bytes, the command carries {need}", PEL_SGL)
    if stype == SGL_DATA_BLOCK_OFFSET:
        if data is None or saddr != 0 or len(data) != slen:
            return fail(K.SGL_OFFSET_INVALID, "in-capsule data not where its SGL says", PEL_SGL)
        execute(bytes(data[:need]))
        return
    if stype != SGL_TRANSPORT_DATA_BLOCK or data is not None:
        return fail(K.SGL_TYPE_INVALID, f"SGL descriptor type {stype:#04x}", PEL_SGL)
    if cid in conn.transfers:
        return fail(K.CMD_ID_CONFLICT, f"command {cid:#x} already waits for data")

    def got(_cid, buf, bad) -> None:
        if bad:
            fail(K.TRANSIENT_TRANSPORT, "data digest error in the reservation data")
        else:
            execute(buf[:need])
    conn.collect(cid, slen, got)
