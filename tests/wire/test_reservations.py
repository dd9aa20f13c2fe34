"""nvmecontrol.wire.reservations: golden bytes at the spec offsets, round trips,
short and hostile input."""

import random
import struct

import pytest

from nvmecontrol.errors import LocalProtocolError, PeerProtocolError
from nvmecontrol.wire import reservations as R
from nvmecontrol.wire.capsule import encode_sqe
from nvmecontrol.wire.reservations import (AcquireCdw10, AcquireData, RegisterCdw10,
                                           RegisterData, RegisteredController, ReleaseCdw10,
                                           ReleaseData, ReservationNotification,
                                           ReservationStatus)

HOST_A = bytes(range(16))
HOST_B = bytes(range(16, 32))


def test_identifiers():
    assert [int(o) for o in R.ResvOpc] == [0x0D, 0x0E, 0x11, 0x15]
    assert [int(t) for t in R.ResvType] == [1, 2, 3, 4, 5, 6]
    assert R.ONCS_RESERVATIONS == 0x20
    assert R.RESCAP_ALL_TYPES == 0b0111_1110
    assert (R.LOG_RESERVATION_NOTIFICATION, R.FEATURE_RESV_NOTIFICATION_MASK,
            R.FEATURE_RESV_PERSISTENCE) == (0x80, 0x82, 0x83)
    # Mask bit N suppresses notification type N.
    assert R.notification_mask_bit(R.NotificationType.REGISTRATION_PREEMPTED) \
        == R.MASK_REGISTRATION_PREEMPTED == 0x2
    assert R.notification_mask_bit(R.NotificationType.RESERVATION_RELEASED) == 0x4
    assert R.notification_mask_bit(R.NotificationType.RESERVATION_PREEMPTED) == 0x8


# --- CDW10 ----------------------------------------------------------------------

def test_register_cdw10_bits():
    v = R.encode_register_cdw10(RegisterCdw10(R.RegisterAction.REPLACE, True, R.Cptpl.SET))
    assert v == 0x2 | 0x8 | 0xC000_0000
    assert R.decode_register_cdw10(v) == (2, True, 3)
    assert R.decode_register_cdw10(0x1) == (1, False, 0)


def test_acquire_and_release_cdw10_bits():
    v = R.encode_acquire_cdw10(AcquireCdw10(R.AcquireAction.PREEMPT, 6, False))
    assert v == 0x0601
    assert R.decode_acquire_cdw10(v | 0x8) == (1, 6, True)
    v = R.encode_release_cdw10(ReleaseCdw10(R.ReleaseAction.CLEAR, 3))
    assert v == 0x0301
    assert R.decode_release_cdw10(v) == (1, 3, False)


@pytest.mark.parametrize("bad", [
    lambda: R.encode_register_cdw10(RegisterCdw10(8)),
    lambda: R.encode_register_cdw10(RegisterCdw10(0, cptpl=4)),
    lambda: R.encode_acquire_cdw10(AcquireCdw10(0, 256)),
    lambda: R.encode_release_cdw10(ReleaseCdw10(9, 1)),
])
def test_cdw10_fields_that_do_not_fit(bad):
    with pytest.raises(LocalProtocolError):
        bad()


def test_report_length_is_zeros_based_dwords():
    assert R.report_length(0) == 4
    assert R.report_length(15) == 64
    assert R.report_length(0xFFFFFFFF) == 4 << 32


# --- data -----------------------------------------------------------------------

def test_key_data_golden_and_round_trip():
    raw = R.encode_register_data(RegisterData(0x1122334455667788, 0xAABB))
    assert raw == bytes.fromhex("8877665544332211" "bbaa000000000000")
    assert R.decode_register_data(raw + b"trailing") == (0x1122334455667788, 0xAABB)
    raw = R.encode_acquire_data(AcquireData(1, 2))
    assert raw == struct.pack("<QQ", 1, 2)
    assert R.decode_acquire_data(raw) == (1, 2)
    raw = R.encode_release_data(ReleaseData(7))
    assert raw == struct.pack("<Q", 7) and len(raw) == R.RELEASE_DATA_SIZE
    assert R.decode_release_data(bytearray(raw)) == (7,)


@pytest.mark.parametrize("decode,size", [
    (R.decode_register_data, 16), (R.decode_acquire_data, 16), (R.decode_release_data, 8),
    (R.decode_reservation_notification, 64)])
def test_short_input_is_a_peer_error(decode, size):
    with pytest.raises(PeerProtocolError):
        decode(bytes(size - 1))


def test_key_out_of_range_is_a_local_error():
    with pytest.raises(LocalProtocolError):
        R.encode_register_data(RegisterData(-1, 0))
    with pytest.raises(LocalProtocolError):
        R.encode_release_data(ReleaseData(1 << 64))


# --- Reservation Status -----------------------------------------------------------

def _status(hostids):
    return ReservationStatus(gen=0x01020304, rtype=5, regctl=len(hostids), ptpls=True,
                             controllers=[RegisteredController(0xFFFF, 1, h, 0x100 + i)
                                          for i, h in enumerate(hostids)])


def test_extended_status_golden():
    raw = R.encode_reservation_status(_status([HOST_A, HOST_B]), extended=True)
    assert len(raw) == 64 + 2 * 64
    assert raw[0:4] == bytes.fromhex("04030201")  # GEN
    assert raw[4] == 5  # RTYPE
    assert raw[5:7] == b"\x02\x00"  # REGCTL
    assert raw[9] == 1  # PTPLS
    assert raw[10:64] == bytes(54)
    e = raw[64:128]
    assert e[0:2] == b"\xff\xff"  # CNTLID
    assert e[2] == 1  # RCSTS
    assert e[8:16] == struct.pack("<Q", 0x100)  # RKEY
    assert e[16:32] == HOST_A  # HOSTID, 128 bits
    assert e[32:64] == bytes(32)
    assert raw[128 + 16:128 + 32] == HOST_B


def test_normal_status_golden():
    st = _status([b"\x01" * 8])
    raw = R.encode_reservation_status(st, extended=False)
    assert len(raw) == 24 + 24
    e = raw[24:48]
    assert e[0:2] == b"\xff\xff" and e[2] == 1
    assert e[8:16] == b"\x01" * 8  # HOSTID, 64 bits
    assert e[16:24] == struct.pack("<Q", 0x100)  # RKEY


@pytest.mark.parametrize("extended,hostids", [(True, [HOST_A, HOST_B]), (False, [b"12345678"]),
                                              (True, [])])
def test_status_round_trip(extended, hostids):
    st = _status(hostids)
    raw = R.encode_reservation_status(st, extended=extended)
    assert R.decode_reservation_status(raw, extended=extended) == st
    assert R.decode_reservation_status(raw + bytes(100), extended=extended) == st


def test_status_decode_stops_at_the_buffer_but_keeps_regctl():
    raw = R.encode_reservation_status(_status([HOST_A, HOST_B]), extended=True)
    st = R.decode_reservation_status(raw[:64 + 64 + 10], extended=True)
    assert st.regctl == 2 and [c.hostid for c in st.controllers] == [HOST_A]


def test_status_encode_refuses_the_wrong_host_id_size():
    with pytest.raises(LocalProtocolError):
        R.encode_reservation_status(_status([b"short"]), extended=True)
    with pytest.raises(LocalProtocolError):
        R.encode_reservation_status(_status([HOST_A]), extended=False)


def test_status_decode_short_header():
    with pytest.raises(PeerProtocolError):
        R.decode_reservation_status(bytes(63), extended=True)
    with pytest.raises(PeerProtocolError):
        R.decode_reservation_status(bytes(23), extended=False)


def test_status_size():
    assert R.reservation_status_size(3, extended=True) == 64 + 192
    assert R.reservation_status_size(3, extended=False) == 24 + 72


# --- notification log page --------------------------------------------------------

def test_notification_golden_and_round_trip():
    n = ReservationNotification(count=0x0102, type=R.NotificationType.RESERVATION_RELEASED,
                                available=3, nsid=7)
    raw = R.encode_reservation_notification(n)
    assert len(raw) == R.NOTIFICATION_LOG_SIZE == 64
    assert raw[0:8] == struct.pack("<Q", 0x0102)
    assert raw[8] == 2 and raw[9] == 3
    assert raw[12:16] == struct.pack("<I", 7)
    assert raw[16:] == bytes(48)
    assert R.decode_reservation_notification(raw) == n


# --- builders -------------------------------------------------------------------

def test_builders_set_opcode_nsid_and_fields():
    sqe = R.build_resv_register(3, R.RegisterAction.REGISTER, iekey=True)
    assert (sqe.opc, sqe.nsid, sqe.cdw10) == (0x0D, 3, 0x8)
    sqe = R.build_resv_acquire(1, R.AcquireAction.ACQUIRE, R.ResvType.WRITE_EXCLUSIVE)
    assert (sqe.opc, sqe.cdw10) == (0x11, 0x100)
    sqe = R.build_resv_release(1, R.ReleaseAction.RELEASE, 2)
    assert (sqe.opc, sqe.cdw10) == (0x15, 0x200)
    sqe = R.build_resv_report(1, 4096)
    assert (sqe.opc, sqe.cdw10, sqe.cdw11) == (0x0E, 1023, 1)
    assert R.build_resv_report(1, 64, extended=False).cdw11 == 0
    raw = encode_sqe(sqe)
    assert raw[0] == 0x0E and raw[40:44] == struct.pack("<I", 1023)


@pytest.mark.parametrize("length", [0, 6, -4])
def test_report_builder_refuses_bad_lengths(length):
    with pytest.raises(LocalProtocolError):
        R.build_resv_report(1, length)


def test_fuzz_decoders_raise_only_peer_errors():
    rng = random.Random(11)
    for _ in range(500):
        buf = rng.randbytes(rng.randrange(0, 300))
        for fn in (lambda b: R.decode_reservation_status(b, extended=True),
                   lambda b: R.decode_reservation_status(b, extended=False),
                   R.decode_reservation_notification, R.decode_register_data,
                   R.decode_acquire_data, R.decode_release_data):
            try:
                fn(buf)
            except PeerProtocolError:
                pass
