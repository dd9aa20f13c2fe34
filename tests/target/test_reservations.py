"""Reservations of nvmfd: the per-namespace state (every rule and status), the
notification log, the subsystem registry, and the admin side (Identify, log
page 80h, features 82h/83h) through the host library."""

from __future__ import annotations

import threading
import uuid

import pytest

from nvmecontrol.target import reservations as TR
from nvmecontrol.target.reservations import (HOSTID_INCONSISTENT, INVALID_FIELD,
                                             RESERVATION_CONFLICT, ReservationLog,
                                             ReservationState, SubsystemReservations)
from nvmecontrol.wire import admin
from nvmecontrol.wire import identify as I
from nvmecontrol.wire import reservations as R
from nvmecontrol.wire.reservations import (AcquireAction as AA, NotificationType as NT,
                                           RegisterAction as RA, ReleaseAction as RL,
                                           ResvType as T)
from nvmecontrol.wire.status import SC_HOST_ID_INCONSISTENT_FORMAT, SC_RESERVATION_CONFLICT

from .helpers import connect, make_host, run, sc

A, B, C = (bytes([n]) * 16 for n in (0xA, 0xB, 0xC))
READ, WRITE, FLUSH, WRITE_ZEROES, DSM = 0x02, 0x01, 0x00, 0x08, 0x09


class Recorder:
    """Collects notifications (nsid, hostid, type) in the order given."""

    def __init__(self):
        self.notes = []

    def __call__(self, nsid, hostid, kind):
        self.notes.append((nsid, hostid, kind))


@pytest.fixture
def rec():
    return Recorder()


@pytest.fixture
def st(rec):
    return ReservationState(1, rec)


def reg(st, host, nrkey=0, *, action=RA.REGISTER, crkey=0, iekey=False, cptpl=0):
    return st.register(host, R.encode_register_cdw10(R.RegisterCdw10(action, iekey, cptpl)),
                       R.encode_register_data(R.RegisterData(crkey, nrkey)))


def acq(st, host, crkey, rtype, *, action=AA.ACQUIRE, prkey=0, iekey=False):
    return st.acquire(host, R.encode_acquire_cdw10(R.AcquireCdw10(action, rtype, iekey)),
                      R.encode_acquire_data(R.AcquireData(crkey, prkey)))


def rel(st, host, crkey, rtype=0, *, action=RL.RELEASE, iekey=False):
    return st.release(host, R.encode_release_cdw10(R.ReleaseCdw10(action, rtype, iekey)),
                      R.encode_release_data(R.ReleaseData(crkey)))


def report(st, host=A, length=4096):
    status, data = st.report(host, length // 4 - 1, R.EDS)
    assert status == 0 and len(data) == length
    return R.decode_reservation_status(data, extended=True)


def keys(st, host=A):
    return {c.hostid: c.rkey for c in report(st, host).controllers}


def holders(st):
    return {c.hostid for c in report(st).controllers if c.rcsts & R.RCSTS_HOLDER}


def test_statuses_are_the_spec_codes():
    assert RESERVATION_CONFLICT == 0x4000 | SC_RESERVATION_CONFLICT == 0x4083
    assert HOSTID_INCONSISTENT == 0x4000 | SC_HOST_ID_INCONSISTENT_FORMAT == 0x4018
    assert INVALID_FIELD == 0x4002


# --- the access table ---------------------------------------------------------------

# RTYPE -> allowed (read, write) for (holder, other registrant, non-registrant).
ACCESS_TABLE = {
    T.WRITE_EXCLUSIVE: ((1, 1), (1, 0), (1, 0)),
    T.EXCLUSIVE_ACCESS: ((1, 1), (0, 0), (0, 0)),
    T.WRITE_EXCLUSIVE_REG_ONLY: ((1, 1), (1, 1), (1, 0)),
    T.EXCLUSIVE_ACCESS_REG_ONLY: ((1, 1), (1, 1), (0, 0)),
    T.WRITE_EXCLUSIVE_ALL_REGS: ((1, 1), (1, 1), (1, 0)),
    T.EXCLUSIVE_ACCESS_ALL_REGS: ((1, 1), (1, 1), (0, 0)),
}


@pytest.mark.parametrize("rtype", list(T), ids=lambda t: t.name)
@pytest.mark.parametrize("who", ["holder", "registrant", "non-registrant"])
@pytest.mark.parametrize("opc,kind", [(READ, 0), (WRITE, 1), (FLUSH, 1), (WRITE_ZEROES, 1),
                                      (DSM, 1), (0x05, 0), (0x0C, 0)],
                         ids=["read", "write", "flush", "write-zeroes", "dsm", "compare",
                              "verify"])
def test_access_table(st, rtype, who, opc, kind):
    assert reg(st, A, 1) == 0 and reg(st, B, 2) == 0
    assert acq(st, A, 1, rtype) == 0
    host = {"holder": A, "registrant": B, "non-registrant": C}[who]
    allowed = ACCESS_TABLE[rtype][["holder", "registrant", "non-registrant"].index(who)][kind]
    assert st.check_io(host, opc) == (0 if allowed else RESERVATION_CONFLICT)


def test_no_reservation_allows_everything(st):
    assert reg(st, A, 1) == 0
    for host in (A, B, C):
        for opc in (READ, WRITE, FLUSH, WRITE_ZEROES, DSM):
            assert st.check_io(host, opc) == 0


def test_other_opcodes_are_not_restricted(st):
    reg(st, A, 1)
    acq(st, A, 1, T.EXCLUSIVE_ACCESS)
    assert st.check_io(C, 0x7E) == 0
    for opc in R.ResvOpc:  # reservation commands are judged by their own rules
        assert st.check_io(C, opc) == 0


# --- Register -------------------------------------------------------------------------

def test_register_and_register_again(st):
    assert reg(st, A, 0x1111) == 0
    assert keys(st) == {A: 0x1111}
    assert reg(st, A, 0x1111) == 0  # the same key: success
    assert reg(st, A, 0x2222) == RESERVATION_CONFLICT  # another key: conflict
    assert keys(st) == {A: 0x1111}


def test_unregister(st):
    reg(st, A, 5)
    assert reg(st, A, action=RA.UNREGISTER, crkey=6) == RESERVATION_CONFLICT
    assert reg(st, B, action=RA.UNREGISTER, crkey=5) == RESERVATION_CONFLICT  # not registered
    assert reg(st, A, action=RA.UNREGISTER, crkey=5) == 0
    assert keys(st) == {}


def test_unregister_with_iekey_ignores_the_key(st):
    reg(st, A, 5)
    assert reg(st, A, action=RA.UNREGISTER, crkey=99, iekey=True) == 0
    assert keys(st) == {}
    assert reg(st, A, action=RA.UNREGISTER, iekey=True) == RESERVATION_CONFLICT


def test_replace(st):
    reg(st, A, 5)
    assert reg(st, A, 6, action=RA.REPLACE, crkey=4) == RESERVATION_CONFLICT
    assert reg(st, A, 6, action=RA.REPLACE, crkey=5) == 0
    assert keys(st) == {A: 6}
    assert reg(st, A, 7, action=RA.REPLACE, crkey=0, iekey=True) == 0
    assert keys(st) == {A: 7}
    # A host that is not registered cannot replace, IEKEY or not.
    assert reg(st, B, 8, action=RA.REPLACE, iekey=True) == RESERVATION_CONFLICT


def test_replace_keeps_the_reservation(st):
    reg(st, A, 5)
    acq(st, A, 5, T.WRITE_EXCLUSIVE)
    assert reg(st, A, 6, action=RA.REPLACE, crkey=5) == 0
    assert report(st).rtype == T.WRITE_EXCLUSIVE and holders(st) == {A}
    assert rel(st, A, 6, T.WRITE_EXCLUSIVE) == 0


@pytest.mark.parametrize("cdw10", [3, 7, 1 << 30 | 0, R.Cptpl.SET << 30])
def test_register_invalid_fields(st, cdw10):
    """RREGA 3-7, CPTPL 01b (reserved) and 11b (persistence is not supported)."""
    data = R.encode_register_data(R.RegisterData(0, 1))
    assert st.register(A, cdw10, data) == INVALID_FIELD
    assert keys(st) == {}


def test_register_cptpl_clear_is_accepted(st):
    assert reg(st, A, 1, cptpl=R.Cptpl.CLEAR) == 0


def test_registrant_limit(monkeypatch, st):
    monkeypatch.setattr(TR, "MAX_REGISTRANTS", 2)
    assert reg(st, A, 1) == 0 and reg(st, B, 2) == 0
    assert reg(st, C, 3) == TR.REGISTRANTS_FULL
    assert reg(st, A, 1) == 0  # re-registering the same key still works


def test_prgen_counts_register_preempt_and_clear(st):
    assert report(st).gen == 0
    reg(st, A, 1)
    reg(st, B, 2)
    reg(st, B, 2)
    assert report(st).gen == 3
    reg(st, B, 3)  # conflict: no change
    acq(st, A, 1, T.WRITE_EXCLUSIVE)  # acquire does not count
    rel(st, A, 1, T.WRITE_EXCLUSIVE)  # nor release
    assert report(st).gen == 3
    reg(st, A, 9, action=RA.REPLACE, crkey=1)
    assert report(st).gen == 4
    acq(st, B, 2, T.WRITE_EXCLUSIVE, action=AA.PREEMPT, prkey=9)
    assert report(st).gen == 5
    rel(st, B, 2, action=RL.CLEAR)
    assert report(st).gen == 6


# --- Acquire --------------------------------------------------------------------------

def test_acquire_needs_registration_and_key(st):
    assert acq(st, A, 1, T.WRITE_EXCLUSIVE) == RESERVATION_CONFLICT
    reg(st, A, 1)
    assert acq(st, A, 2, T.WRITE_EXCLUSIVE) == RESERVATION_CONFLICT
    assert acq(st, A, 1, T.WRITE_EXCLUSIVE) == 0
    r = report(st)
    assert r.rtype == T.WRITE_EXCLUSIVE and holders(st) == {A}


@pytest.mark.parametrize("rtype", [0, 7, 0xFF])
def test_acquire_reserved_types(st, rtype):
    reg(st, A, 1)
    assert acq(st, A, 1, rtype) == INVALID_FIELD


def test_acquire_iekey_and_reserved_action(st):
    reg(st, A, 1)
    assert acq(st, A, 1, T.WRITE_EXCLUSIVE, iekey=True) == INVALID_FIELD
    assert acq(st, A, 1, T.WRITE_EXCLUSIVE, action=3) == INVALID_FIELD
    assert report(st).rtype == 0


def test_acquire_again_same_and_other_type(st):
    reg(st, A, 1)
    acq(st, A, 1, T.WRITE_EXCLUSIVE)
    assert acq(st, A, 1, T.WRITE_EXCLUSIVE) == 0
    assert acq(st, A, 1, T.EXCLUSIVE_ACCESS) == RESERVATION_CONFLICT
    assert report(st).rtype == T.WRITE_EXCLUSIVE


def test_acquire_held_by_another(st):
    reg(st, A, 1)
    reg(st, B, 2)
    acq(st, A, 1, T.WRITE_EXCLUSIVE_REG_ONLY)
    assert acq(st, B, 2, T.WRITE_EXCLUSIVE_REG_ONLY) == RESERVATION_CONFLICT
    assert holders(st) == {A}


def test_all_registrants_are_holders(st):
    reg(st, A, 1)
    reg(st, B, 2)
    acq(st, A, 1, T.EXCLUSIVE_ACCESS_ALL_REGS)
    assert holders(st) == {A, B}
    assert acq(st, B, 2, T.EXCLUSIVE_ACCESS_ALL_REGS) == 0
    assert acq(st, B, 2, T.WRITE_EXCLUSIVE) == RESERVATION_CONFLICT
    reg(st, C, 3)  # a later registrant holds it too
    assert holders(st) == {A, B, C}


# --- Release and Clear ----------------------------------------------------------------

def test_release(st, rec):
    reg(st, A, 1)
    reg(st, B, 2)
    acq(st, A, 1, T.WRITE_EXCLUSIVE)
    assert rel(st, A, 2, T.WRITE_EXCLUSIVE) == RESERVATION_CONFLICT  # wrong key
    assert rel(st, A, 1, T.EXCLUSIVE_ACCESS) == INVALID_FIELD  # wrong type
    assert report(st).rtype == T.WRITE_EXCLUSIVE
    assert rel(st, A, 1, T.WRITE_EXCLUSIVE) == 0
    assert report(st).rtype == 0 and keys(st) == {A: 1, B: 2}
    assert rec.notes == []  # Write Exclusive: no Reservation Released notice


def test_release_by_a_non_holder_does_nothing(st):
    reg(st, A, 1)
    reg(st, B, 2)
    assert rel(st, B, 2, T.WRITE_EXCLUSIVE) == 0  # nothing held
    acq(st, A, 1, T.WRITE_EXCLUSIVE)
    assert rel(st, B, 2, T.WRITE_EXCLUSIVE) == 0
    assert report(st).rtype == T.WRITE_EXCLUSIVE and holders(st) == {A}
    assert rel(st, C, 0, T.WRITE_EXCLUSIVE) == RESERVATION_CONFLICT  # not registered


def test_release_iekey_and_reserved_action(st):
    reg(st, A, 1)
    acq(st, A, 1, T.WRITE_EXCLUSIVE)
    assert rel(st, A, 1, T.WRITE_EXCLUSIVE, iekey=True) == INVALID_FIELD
    assert rel(st, A, 1, T.WRITE_EXCLUSIVE, action=2) == INVALID_FIELD
    assert report(st).rtype == T.WRITE_EXCLUSIVE


@pytest.mark.parametrize("rtype", [T.WRITE_EXCLUSIVE_REG_ONLY, T.EXCLUSIVE_ACCESS_REG_ONLY,
                                   T.WRITE_EXCLUSIVE_ALL_REGS, T.EXCLUSIVE_ACCESS_ALL_REGS])
def test_release_notifies_the_other_registrants(st, rec, rtype):
    reg(st, A, 1)
    reg(st, B, 2)
    acq(st, A, 1, rtype)
    assert rel(st, A, 1, rtype) == 0
    assert rec.notes == [(1, B, NT.RESERVATION_RELEASED)]


def test_clear(st, rec):
    reg(st, A, 1)
    reg(st, B, 2)
    reg(st, C, 3)
    acq(st, B, 2, T.EXCLUSIVE_ACCESS)
    assert rel(st, A, 9, action=RL.CLEAR) == RESERVATION_CONFLICT
    assert rel(st, A, 1, action=RL.CLEAR) == 0  # any registrant may clear
    r = report(st)
    assert (r.rtype, r.regctl) == (0, 0)
    assert sorted(rec.notes) == [(1, B, NT.RESERVATION_PREEMPTED),
                                 (1, C, NT.RESERVATION_PREEMPTED)]
    assert st.check_io(C, WRITE) == 0


# --- unregistering a holder ----------------------------------------------------------

def test_unregistering_the_holder_releases(st, rec):
    reg(st, A, 1)
    reg(st, B, 2)
    acq(st, A, 1, T.WRITE_EXCLUSIVE_REG_ONLY)
    assert reg(st, A, action=RA.UNREGISTER, crkey=1) == 0
    assert report(st).rtype == 0
    assert rec.notes == [(1, B, NT.RESERVATION_RELEASED)]


def test_unregistering_a_holder_of_write_exclusive_tells_nobody(st, rec):
    reg(st, A, 1)
    reg(st, B, 2)
    acq(st, A, 1, T.WRITE_EXCLUSIVE)
    reg(st, A, action=RA.UNREGISTER, crkey=1)
    assert report(st).rtype == 0 and rec.notes == []


def test_all_registrants_reservation_lasts_until_the_last_registrant(st):
    reg(st, A, 1)
    reg(st, B, 2)
    acq(st, A, 1, T.WRITE_EXCLUSIVE_ALL_REGS)
    reg(st, A, action=RA.UNREGISTER, crkey=1)
    assert report(st).rtype == T.WRITE_EXCLUSIVE_ALL_REGS and holders(st) == {B}
    assert st.check_io(A, WRITE) == RESERVATION_CONFLICT  # no longer a registrant
    reg(st, B, action=RA.UNREGISTER, crkey=2)
    assert report(st).rtype == 0
    assert st.check_io(A, WRITE) == 0


# --- Preempt ---------------------------------------------------------------------------

@pytest.mark.parametrize("action", [AA.PREEMPT, AA.PREEMPT_AND_ABORT])
def test_preempt_the_holder(st, rec, action):
    reg(st, A, 1)
    reg(st, B, 2)
    acq(st, A, 1, T.WRITE_EXCLUSIVE)
    assert acq(st, B, 2, T.EXCLUSIVE_ACCESS, action=action, prkey=1) == 0
    r = report(st)
    assert r.rtype == T.EXCLUSIVE_ACCESS and keys(st) == {B: 2} and holders(st) == {B}
    assert rec.notes == [(1, A, NT.REGISTRATION_PREEMPTED)]
    assert st.check_io(A, READ) == RESERVATION_CONFLICT


def test_preempt_needs_the_preemptors_key(st):
    reg(st, A, 1)
    reg(st, B, 2)
    acq(st, A, 1, T.WRITE_EXCLUSIVE)
    assert acq(st, B, 3, T.WRITE_EXCLUSIVE, action=AA.PREEMPT, prkey=1) == RESERVATION_CONFLICT
    assert acq(st, C, 0, T.WRITE_EXCLUSIVE, action=AA.PREEMPT, prkey=1) == RESERVATION_CONFLICT
    assert holders(st) == {A}


def test_preempt_a_registrant_who_is_not_the_holder(st, rec):
    reg(st, A, 1)
    reg(st, B, 2)
    reg(st, C, 3)
    acq(st, A, 1, T.WRITE_EXCLUSIVE_REG_ONLY)
    assert acq(st, B, 2, T.WRITE_EXCLUSIVE_REG_ONLY, action=AA.PREEMPT, prkey=3) == 0
    assert keys(st) == {A: 1, B: 2} and holders(st) == {A}
    assert rec.notes == [(1, C, NT.REGISTRATION_PREEMPTED)]
    assert acq(st, B, 2, T.WRITE_EXCLUSIVE_REG_ONLY, action=AA.PREEMPT,
               prkey=77) == RESERVATION_CONFLICT
    # PRKEY 0 is not a key of a single holder's reservation.
    assert acq(st, B, 2, T.WRITE_EXCLUSIVE_REG_ONLY, action=AA.PREEMPT, prkey=0) == INVALID_FIELD


def test_preempt_without_a_reservation_removes_registrations(st, rec):
    reg(st, A, 1)
    reg(st, B, 2)
    reg(st, C, 2)
    assert acq(st, A, 1, T.WRITE_EXCLUSIVE, action=AA.PREEMPT, prkey=9) == RESERVATION_CONFLICT
    assert acq(st, A, 1, T.WRITE_EXCLUSIVE, action=AA.PREEMPT, prkey=2) == 0
    assert keys(st) == {A: 1} and report(st).rtype == 0
    assert sorted(rec.notes) == [(1, B, NT.REGISTRATION_PREEMPTED),
                                 (1, C, NT.REGISTRATION_PREEMPTED)]


def test_holder_changes_its_type_by_preempting_itself(st, rec):
    reg(st, A, 1)
    reg(st, B, 2)
    acq(st, A, 1, T.WRITE_EXCLUSIVE_REG_ONLY)
    assert acq(st, A, 1, T.EXCLUSIVE_ACCESS_REG_ONLY, action=AA.PREEMPT, prkey=1) == 0
    assert report(st).rtype == T.EXCLUSIVE_ACCESS_REG_ONLY and keys(st) == {A: 1, B: 2}
    assert rec.notes == [(1, B, NT.RESERVATION_RELEASED)]


def test_preempt_all_registrants_with_key_zero(st, rec):
    reg(st, A, 1)
    reg(st, B, 2)
    reg(st, C, 3)
    acq(st, A, 1, T.EXCLUSIVE_ACCESS_ALL_REGS)
    assert acq(st, B, 2, T.WRITE_EXCLUSIVE, action=AA.PREEMPT, prkey=0) == 0
    assert report(st).rtype == T.WRITE_EXCLUSIVE and keys(st) == {B: 2} and holders(st) == {B}
    assert sorted(rec.notes) == [(1, A, NT.REGISTRATION_PREEMPTED),
                                 (1, C, NT.REGISTRATION_PREEMPTED)]


def test_preempt_all_registrants_with_a_key(st):
    reg(st, A, 1)
    reg(st, B, 2)
    acq(st, A, 1, T.EXCLUSIVE_ACCESS_ALL_REGS)
    assert acq(st, B, 2, T.EXCLUSIVE_ACCESS_ALL_REGS, action=AA.PREEMPT, prkey=1) == 0
    assert keys(st) == {B: 2} and report(st).rtype == T.EXCLUSIVE_ACCESS_ALL_REGS
    assert acq(st, B, 2, T.EXCLUSIVE_ACCESS_ALL_REGS, action=AA.PREEMPT,
               prkey=5) == RESERVATION_CONFLICT


# --- Report ---------------------------------------------------------------------------

def test_report_needs_the_extended_structure(st):
    reg(st, A, 1)
    status, data = st.report(A, 1023, 0)
    assert status == HOSTID_INCONSISTENT and data == b""


def test_report_contents(st):
    reg(st, A, 0x10)
    reg(st, B, 0x20)
    acq(st, B, 0x20, T.WRITE_EXCLUSIVE)
    r = report(st, C)
    assert (r.gen, r.rtype, r.regctl, r.ptpls) == (2, T.WRITE_EXCLUSIVE, 2, False)
    assert r.controllers == [
        R.RegisteredController(0xFFFF, 0, A, 0x10),
        R.RegisteredController(0xFFFF, R.RCSTS_HOLDER, B, 0x20)]


def test_report_into_a_small_buffer(st):
    reg(st, A, 1)
    reg(st, B, 2)
    status, data = st.report(A, 64 // 4 - 1 + 16, R.EDS)  # header and one entry
    assert status == 0 and len(data) == 128
    r = R.decode_reservation_status(data, extended=True)
    assert r.regctl == 2 and [c.hostid for c in r.controllers] == [A]
    status, data = st.report(A, 1, R.EDS)  # 8 bytes: GEN, RTYPE, REGCTL
    assert status == 0 and data[5:7] == b"\x02\x00"


# --- two hosts at once -----------------------------------------------------------------

def test_two_hosts_competing_for_one_reservation(st):
    """Both register and try to acquire at the same moment: exactly one holds it."""
    for _ in range(50):
        state = ReservationState(1)
        barrier = threading.Barrier(2)
        results = {}

        def contend(host, key):
            assert reg(state, host, key) == 0
            barrier.wait()
            results[host] = acq(state, host, key, T.EXCLUSIVE_ACCESS)

        threads = [threading.Thread(target=contend, args=(h, k)) for h, k in ((A, 1), (B, 2))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results.values()) == [0, RESERVATION_CONFLICT]
        winner = A if results[A] == 0 else B
        loser = B if winner is A else A
        assert state.check_io(winner, WRITE) == 0
        assert state.check_io(loser, READ) == RESERVATION_CONFLICT


# --- notification log ------------------------------------------------------------------

def test_notification_log_entries_and_empty_page():
    lg = ReservationLog()
    empty = R.decode_reservation_notification(lg.peek())
    assert empty == (0, NT.EMPTY, 0, 0)
    assert lg.add(1, NT.RESERVATION_RELEASED) and lg.add(2, NT.REGISTRATION_PREEMPTED)
    first = R.decode_reservation_notification(lg.peek())
    assert first == (1, NT.RESERVATION_RELEASED, 1, 1)
    assert lg.consume() == 1
    assert R.decode_reservation_notification(lg.peek()) == (2, NT.REGISTRATION_PREEMPTED, 0, 2)
    assert lg.consume() == 0
    assert R.decode_reservation_notification(lg.peek()).type == NT.EMPTY


def test_notification_mask_per_namespace_and_for_all():
    lg = ReservationLog()
    lg.set_mask(1, R.MASK_RESERVATION_RELEASED)
    assert not lg.add(1, NT.RESERVATION_RELEASED)
    assert lg.add(1, NT.REGISTRATION_PREEMPTED)
    assert lg.add(2, NT.RESERVATION_RELEASED)
    lg.set_mask(None, R.MASK_ALL)
    assert lg.mask(1) == lg.mask(9) == R.MASK_ALL
    assert not lg.add(2, NT.RESERVATION_PREEMPTED)


def test_notification_log_overflow_drops_the_oldest(monkeypatch):
    monkeypatch.setattr(TR, "NOTIFICATION_LOG_DEPTH", 3)
    lg = ReservationLog()
    for nsid in range(1, 6):
        lg.add(nsid, NT.RESERVATION_RELEASED)
    # Counts 1 and 2 were lost: the host sees the gap.
    page = R.decode_reservation_notification(lg.peek())
    assert (page.count, page.nsid, page.available) == (3, 3, 2)


# --- the subsystem registry ---------------------------------------------------------------

class FakeNs:
    def __init__(self, nsid):
        self.nsid = nsid


class FakeCtrl:
    def __init__(self, hostid, dead=False):
        self.hostid = hostid
        self.dead = dead
        self.notices = []

    def reservation_notice(self, nsid, kind):
        self.notices.append((nsid, kind))


def test_registry_states_and_held():
    ctrls = [FakeCtrl(A), FakeCtrl(B), FakeCtrl(B), FakeCtrl(B, dead=True)]
    sr = SubsystemReservations(lambda: ctrls)
    ns = FakeNs(1)
    state = sr.state(ns)
    assert sr.state(ns) is state and sr.held == {}
    reg(state, A, 1)
    reg(state, B, 2)
    acq(state, A, 1, T.WRITE_EXCLUSIVE_REG_ONLY)
    assert sr.held == {1: state}
    rel(state, A, 1, T.WRITE_EXCLUSIVE_REG_ONLY)
    assert sr.held == {}
    # Every live controller of host B heard of the release, A's did not.
    assert ctrls[1].notices == ctrls[2].notices == [(1, NT.RESERVATION_RELEASED)]
    assert ctrls[0].notices == [] and ctrls[3].notices == []


def test_registry_namespace_added_again_starts_clean():
    sr = SubsystemReservations(lambda: [])
    old = sr.state(FakeNs(1))
    reg(old, A, 1)
    acq(old, A, 1, T.EXCLUSIVE_ACCESS)
    assert 1 in sr.held
    new = sr.state(FakeNs(1))  # same NSID, another namespace
    assert new is not old and new.rtype == 0 and 1 not in sr.held
    assert new.check_io(C, READ) == 0


def test_registry_forgets_a_removed_namespace():
    sr = SubsystemReservations(lambda: [])
    ns = FakeNs(3)
    state = sr.state(ns)
    reg(state, A, 1)
    acq(state, A, 1, T.WRITE_EXCLUSIVE)
    assert 3 in sr.held
    sr.forget(3)
    assert 3 not in sr.held and sr.state(ns) is not state


def test_namespace_removal_drops_its_reservation(nvmfd_server):
    sub = nvmfd_server.server.subsystems[nvmfd_server.subnqn]
    with nvmfd_server.control() as c:
        nsid = c.request("ns-add", device="mem:1M")["nsid"]
    state = sub.reservations.state(sub.namespaces[nsid])
    reg(state, A, 1)
    acq(state, A, 1, T.EXCLUSIVE_ACCESS)
    assert nsid in sub.reservations.held
    with nvmfd_server.control() as c:
        c.request("ns-remove", nsid=nsid)
    assert nsid not in sub.reservations.held


# --- admin side through the host library -------------------------------------------------

def _hostid(host) -> bytes:
    return host.hostid.bytes if isinstance(host.hostid, uuid.UUID) else bytes(host.hostid)


@pytest.fixture
def two_hosts(nvmfd_server):
    ha, hb = make_host(), make_host()
    a = connect(nvmfd_server, host=ha, num_io_queues=1)
    b = connect(nvmfd_server, host=hb, num_io_queues=1)
    sub = nvmfd_server.server.subsystems[nvmfd_server.subnqn]
    yield a, b, _hostid(ha), _hostid(hb), sub
    a.shutdown()
    b.shutdown()


def test_identify_advertises_reservations(two_hosts):
    a = two_hosts[0]
    assert a.cdata.oncs & R.ONCS_RESERVATIONS
    ns = I.decode_identify_namespace(a.identify(I.CNS_NAMESPACE, nsid=1))
    assert ns.rescap == R.RESCAP_ALL_TYPES | R.RESCAP_IEKEY_1_3
    assert not ns.rescap & R.RESCAP_PTPL
    raw = a.identify(I.CNS_CSI_INDEPENDENT_NAMESPACE, nsid=1)
    assert raw[2] == ns.rescap


def test_persistence_feature_says_no(two_hosts):
    a = two_hosts[0]
    cqe, _ = run(a.admin, admin.build_get_features(R.FEATURE_RESV_PERSISTENCE, nsid=1))
    assert cqe.status == 0 and cqe.dw0 & R.PTPL == 0
    cqe, _ = run(a.admin, admin.build_set_features(R.FEATURE_RESV_PERSISTENCE, R.PTPL, nsid=1))
    assert sc(cqe) == (0, 0x02, True)
    cqe, _ = run(a.admin, admin.build_set_features(R.FEATURE_RESV_PERSISTENCE, 0, nsid=1))
    assert cqe.status == 0
    cqe, _ = run(a.admin, admin.build_get_features(R.FEATURE_RESV_PERSISTENCE, nsid=7))
    assert sc(cqe) == (0, 0x0B, True)


def test_notification_mask_feature(two_hosts):
    a = two_hosts[0]
    cqe, _ = run(a.admin, admin.build_get_features(R.FEATURE_RESV_NOTIFICATION_MASK, nsid=1))
    assert cqe.status == 0 and cqe.dw0 == 0
    cqe, _ = run(a.admin, admin.build_set_features(R.FEATURE_RESV_NOTIFICATION_MASK,
                                                   R.MASK_RESERVATION_RELEASED, nsid=1))
    assert cqe.status == 0
    cqe, _ = run(a.admin, admin.build_get_features(R.FEATURE_RESV_NOTIFICATION_MASK, nsid=1))
    assert cqe.dw0 == R.MASK_RESERVATION_RELEASED
    cqe, _ = run(a.admin, admin.build_set_features(R.FEATURE_RESV_NOTIFICATION_MASK, 0x1,
                                                   nsid=1))
    assert sc(cqe) == (0, 0x02, True)  # bit 0 is reserved
    cqe, _ = run(a.admin, admin.build_set_features(R.FEATURE_RESV_NOTIFICATION_MASK, R.MASK_ALL,
                                                   nsid=0xFFFFFFFF))
    assert cqe.status == 0
    cqe, _ = run(a.admin, admin.build_get_features(R.FEATURE_RESV_NOTIFICATION_MASK, nsid=1))
    assert cqe.dw0 == R.MASK_ALL


def _resv_log(a, rae=False):
    g = admin.GetLogPage(lid=R.LOG_RESERVATION_NOTIFICATION, length=64, rae=rae)
    return R.decode_reservation_notification(a.get_log_page(g))


def test_notification_log_page_and_event(two_hosts):
    a, b, ha, hb, sub = two_hosts
    assert _resv_log(b) == (0, NT.EMPTY, 0, 0)
    aer = b.admin.submit(admin.build_async_event_request())
    state = sub.reservations.state(sub.namespaces[1])
    reg(state, ha, 1)
    reg(state, hb, 2)
    acq(state, ha, 1, T.WRITE_EXCLUSIVE_REG_ONLY)
    assert rel(state, ha, 1, T.WRITE_EXCLUSIVE_REG_ONLY) == 0
    ev = admin.parse_aer(b.admin.wait(aer, timeout=5.0).dw0)
    assert (ev.type, ev.info, ev.lid) == (0x6, 0x0, R.LOG_RESERVATION_NOTIFICATION)
    acq(state, hb, 2, T.EXCLUSIVE_ACCESS)
    assert acq(state, ha, 1, T.EXCLUSIVE_ACCESS, action=AA.PREEMPT, prkey=2) == 0
    first = _resv_log(b)
    assert (first.type, first.nsid, first.available) == (NT.RESERVATION_RELEASED, 1, 1)
    second = _resv_log(b)
    assert (second.type, second.count) == (NT.REGISTRATION_PREEMPTED, first.count + 1)
    assert _resv_log(b).type == NT.EMPTY
    assert _resv_log(a).type == NT.EMPTY  # the issuing host is not told


def test_masked_notifications_are_not_logged(two_hosts):
    a, b, ha, hb, sub = two_hosts
    run(b.admin, admin.build_set_features(R.FEATURE_RESV_NOTIFICATION_MASK,
                                          R.MASK_REGISTRATION_PREEMPTED, nsid=1))
    state = sub.reservations.state(sub.namespaces[1])
    reg(state, ha, 1)
    reg(state, hb, 2)
    acq(state, ha, 1, T.WRITE_EXCLUSIVE, action=AA.PREEMPT, prkey=2)
    assert _resv_log(b).type == NT.EMPTY
