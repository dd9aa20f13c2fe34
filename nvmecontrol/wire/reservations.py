"""Reservations on the wire (NVMe Base 2.0, 8.19; NVM Command Set 1.0, 3.2.4-3.2.7).

Owns the four reservation commands (Register 0Dh, Report 0Eh, Acquire 11h,
Release 15h): their CDW10/CDW11 fields, their data (the keys), the
Reservation Status data structure Report returns (normal form with 64-bit
Host Identifiers, extended form with 128-bit ones), the Reservation
Notification log page (80h) entry, and the identifiers around them (the
notification mask and persistence features, ONCS bit 5, RESCAP bits).

Decoders take any bytes-like object, ignore trailing bytes and raise only
:class:`~nvmecontrol.errors.PeerProtocolError`; encoders raise
:class:`~nvmecontrol.errors.LocalProtocolError` for values that do not fit.
Reserved bytes are not modelled: they decode to nothing and encode as zero.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, NamedTuple

from nvmecontrol.errors import LocalProtocolError, PeerProtocolError
from nvmecontrol.wire.capsule import SQE


class ResvOpc(IntEnum):
    """NVM command set opcodes of the reservation commands."""

    REGISTER = 0x0D
    REPORT = 0x0E
    ACQUIRE = 0x11
    RELEASE = 0x15


class ResvType(IntEnum):
    """RTYPE (NVM Command Set 1.0, Reservation Acquire); 0 in a report: no reservation."""

    WRITE_EXCLUSIVE = 1
    EXCLUSIVE_ACCESS = 2
    WRITE_EXCLUSIVE_REG_ONLY = 3
    EXCLUSIVE_ACCESS_REG_ONLY = 4
    WRITE_EXCLUSIVE_ALL_REGS = 5
    EXCLUSIVE_ACCESS_ALL_REGS = 6


class RegisterAction(IntEnum):
    """RREGA, Reservation Register CDW10 bits 2:0."""

    REGISTER = 0
    UNREGISTER = 1
    REPLACE = 2


class AcquireAction(IntEnum):
    """RACQA, Reservation Acquire CDW10 bits 2:0."""

    ACQUIRE = 0
    PREEMPT = 1
    PREEMPT_AND_ABORT = 2


class ReleaseAction(IntEnum):
    """RRELA, Reservation Release CDW10 bits 2:0."""

    RELEASE = 0
    CLEAR = 1


class Cptpl(IntEnum):
    """Change Persist Through Power Loss State, Register CDW10 bits 31:30 (01b reserved)."""

    NO_CHANGE = 0
    CLEAR = 2
    SET = 3


class NotificationType(IntEnum):
    """Reservation Notification log page type (NVMe Base 2.0)."""

    EMPTY = 0
    REGISTRATION_PREEMPTED = 1
    RESERVATION_RELEASED = 2
    RESERVATION_PREEMPTED = 3


# Identify Controller ONCS bit 5: Reservations supported.
ONCS_RESERVATIONS = 1 << 5
# Identify Namespace RESCAP (byte 31).
RESCAP_PTPL = 1 << 0
RESCAP_WRITE_EXCLUSIVE = 1 << 1
RESCAP_EXCLUSIVE_ACCESS = 1 << 2
RESCAP_WE_REG_ONLY = 1 << 3
RESCAP_EA_REG_ONLY = 1 << 4
RESCAP_WE_ALL_REGS = 1 << 5
RESCAP_EA_ALL_REGS = 1 << 6
# IEKEY as defined since NVMe 1.3 (Acquire and Release refuse it).
RESCAP_IEKEY_1_3 = 1 << 7
RESCAP_ALL_TYPES = 0x7E

LOG_RESERVATION_NOTIFICATION = 0x80
FEATURE_RESV_NOTIFICATION_MASK = 0x82
FEATURE_RESV_PERSISTENCE = 0x83
# Reservation Notification Mask (feature 82h CDW11): set bits suppress.
MASK_REGISTRATION_PREEMPTED = 1 << 1
MASK_RESERVATION_RELEASED = 1 << 2
MASK_RESERVATION_PREEMPTED = 1 << 3
MASK_ALL = MASK_REGISTRATION_PREEMPTED | MASK_RESERVATION_RELEASED | MASK_RESERVATION_PREEMPTED
# Feature 83h CDW11 / DW0 bit 0.
PTPL = 1 << 0

IEKEY = 1 << 3  # CDW10 bit 3 of Register, Acquire, Release
EDS = 1 << 0  # Report CDW11 bit 0: extended data structure
RCSTS_HOLDER = 1 << 0  # Registered Controller: holds the reservation
CNTLID_UNKNOWN = 0xFFFF  # the registrant's controller is not known (dynamic model)


def notification_mask_bit(kind: int) -> int:
    """The mask bit that suppresses a notification type (bit N for type N)."""
    return 1 << kind


# --- CDW10 --------------------------------------------------------------------

class RegisterCdw10(NamedTuple):
    rrega: int
    iekey: bool = False
    cptpl: int = Cptpl.NO_CHANGE


class AcquireCdw10(NamedTuple):
    racqa: int
    rtype: int
    iekey: bool = False


class ReleaseCdw10(NamedTuple):
    rrela: int
    rtype: int
    iekey: bool = False


def decode_register_cdw10(cdw10: int) -> RegisterCdw10:
    return RegisterCdw10(cdw10 & 7, bool(cdw10 & IEKEY), (cdw10 >> 30) & 3)


def encode_register_cdw10(f: RegisterCdw10) -> int:
    _fits("RREGA", f.rrega, 3)
    _fits("CPTPL", f.cptpl, 2)
    return f.rrega | (IEKEY if f.iekey else 0) | f.cptpl << 30


def decode_acquire_cdw10(cdw10: int) -> AcquireCdw10:
    return AcquireCdw10(cdw10 & 7, (cdw10 >> 8) & 0xFF, bool(cdw10 & IEKEY))


def encode_acquire_cdw10(f: AcquireCdw10) -> int:
    _fits("RACQA", f.racqa, 3)
    _fits("RTYPE", f.rtype, 8)
    return f.racqa | (IEKEY if f.iekey else 0) | f.rtype << 8


def decode_release_cdw10(cdw10: int) -> ReleaseCdw10:
    return ReleaseCdw10(cdw10 & 7, (cdw10 >> 8) & 0xFF, bool(cdw10 & IEKEY))


def encode_release_cdw10(f: ReleaseCdw10) -> int:
    _fits("RRELA", f.rrela, 3)
    _fits("RTYPE", f.rtype, 8)
    return f.rrela | (IEKEY if f.iekey else 0) | f.rtype << 8


def report_length(cdw10: int) -> int:
    """Bytes a Report asks for: NUMD is a 0's based dword count."""
    return ((cdw10 & 0xFFFFFFFF) + 1) * 4


# --- command data ---------------------------------------------------------------

REGISTER_DATA_SIZE = 16
ACQUIRE_DATA_SIZE = 16
RELEASE_DATA_SIZE = 8
_KEYS = struct.Struct("<QQ")
_KEY = struct.Struct("<Q")


class RegisterData(NamedTuple):
    crkey: int  # current key (unregister, replace)
    nrkey: int  # new key (register, replace)


class AcquireData(NamedTuple):
    crkey: int
    prkey: int  # preempt key (preempt actions)


class ReleaseData(NamedTuple):
    crkey: int


def encode_register_data(d: RegisterData) -> bytes:
    return _pack(_KEYS, "Reservation Register data", d.crkey, d.nrkey)


def decode_register_data(buf: Any) -> RegisterData:
    return RegisterData(*_unpack(_KEYS, buf, "Reservation Register data"))


def encode_acquire_data(d: AcquireData) -> bytes:
    return _pack(_KEYS, "Reservation Acquire data", d.crkey, d.prkey)


def decode_acquire_data(buf: Any) -> AcquireData:
    return AcquireData(*_unpack(_KEYS, buf, "Reservation Acquire data"))


def encode_release_data(d: ReleaseData) -> bytes:
    return _pack(_KEY, "Reservation Release data", d.crkey)


def decode_release_data(buf: Any) -> ReleaseData:
    return ReleaseData(*_unpack(_KEY, buf, "Reservation Release data"))


# --- Reservation Status data structure (NVM Command Set 1.0, Reservation Report) ---

# GEN, RTYPE, REGCTL, (2 reserved), PTPLS; the header is 24 bytes, 64 when extended.
_STATUS_HEAD = struct.Struct("<IBH2xB")
STATUS_HEADER_SIZE = 24
STATUS_EXT_HEADER_SIZE = 64
# CNTLID, RCSTS, (5 reserved), HOSTID (64-bit), RKEY.
_REGCTL = struct.Struct("<HB5x8sQ")
# CNTLID, RCSTS, (5 reserved), RKEY, HOSTID (128-bit), (32 reserved).
_REGCTL_EXT = struct.Struct("<HB5xQ16s32x")
REGCTL_SIZE = _REGCTL.size  # 24
REGCTL_EXT_SIZE = _REGCTL_EXT.size  # 64


class RegisteredController(NamedTuple):
    cntlid: int
    rcsts: int  # bit 0: holds the reservation
    hostid: bytes  # 8 bytes (normal form) or 16 (extended)
    rkey: int


@dataclass
class ReservationStatus:
    gen: int = 0
    rtype: int = 0
    # Number of registered controllers; may exceed len(controllers) when the
    # host's buffer held fewer entries than there are.
    regctl: int = 0
    ptpls: bool = False
    controllers: list[RegisteredController] = field(default_factory=list)


def reservation_status_size(regctl: int, *, extended: bool) -> int:
    if extended:
        return STATUS_EXT_HEADER_SIZE + regctl * REGCTL_EXT_SIZE
    return STATUS_HEADER_SIZE + regctl * REGCTL_SIZE


def encode_reservation_status(st: ReservationStatus, *, extended: bool) -> bytes:
    """The whole structure (header and every entry in ``controllers``)."""
    buf = bytearray(reservation_status_size(len(st.controllers), extended=extended))
    try:
        _STATUS_HEAD.pack_into(buf, 0, st.gen, st.rtype, st.regctl, int(st.ptpls))
        if extended:
            for i, c in enumerate(st.controllers):
                if len(c.hostid) != 16:
                    raise ValueError(f"host identifier of {len(c.hostid)} bytes, need 16")
                _REGCTL_EXT.pack_into(buf, STATUS_EXT_HEADER_SIZE + i * REGCTL_EXT_SIZE,
                                      c.cntlid, c.rcsts, c.rkey, c.hostid)
        else:
            for i, c in enumerate(st.controllers):
                if len(c.hostid) != 8:
                    raise ValueError(f"host identifier of {len(c.hostid)} bytes, need 8")
                _REGCTL.pack_into(buf, STATUS_HEADER_SIZE + i * REGCTL_SIZE,
                                  c.cntlid, c.rcsts, c.hostid, c.rkey)
    except (struct.error, ValueError) as exc:
        raise LocalProtocolError(f"cannot encode Reservation Status: {exc}") from None
    return bytes(buf)


def decode_reservation_status(buf: Any, *, extended: bool) -> ReservationStatus:
    """The header and as many of the REGCTL entries as ``buf`` holds."""
    mv = memoryview(buf).cast("B")
    head = STATUS_EXT_HEADER_SIZE if extended else STATUS_HEADER_SIZE
    if len(mv) < head:
        raise PeerProtocolError(f"Reservation Status: {len(mv)} bytes, expected at least {head}")
    gen, rtype, regctl, ptpls = _STATUS_HEAD.unpack_from(mv, 0)
    size = REGCTL_EXT_SIZE if extended else REGCTL_SIZE
    fit = min(regctl, (len(mv) - head) // size)
    out = []
    for i in range(fit):
        off = head + i * size
        if extended:
            cntlid, rcsts, rkey, hostid = _REGCTL_EXT.unpack_from(mv, off)
        else:
            cntlid, rcsts, hostid, rkey = _REGCTL.unpack_from(mv, off)
        out.append(RegisteredController(cntlid, rcsts, bytes(hostid), rkey))
    return ReservationStatus(gen=gen, rtype=rtype, regctl=regctl, ptpls=bool(ptpls & 1),
                             controllers=out)


# --- Reservation Notification log page (NVMe Base 2.0, log page 80h) ------------

# Log Page Count, type, Number of Available Log Pages, (2 reserved), NSID, (48 reserved).
_NOTIFICATION = struct.Struct("<QBB2xI48x")
NOTIFICATION_LOG_SIZE = _NOTIFICATION.size  # 64


class ReservationNotification(NamedTuple):
    count: int  # 64-bit, increments per entry, 0 only for an empty page
    type: int
    available: int  # further entries waiting (saturates at 255)
    nsid: int


def encode_reservation_notification(n: ReservationNotification) -> bytes:
    return _pack(_NOTIFICATION, "Reservation Notification log", n.count, n.type, n.available,
                 n.nsid)


def decode_reservation_notification(buf: Any) -> ReservationNotification:
    return ReservationNotification(*_unpack(_NOTIFICATION, buf, "Reservation Notification log"))


# --- command builders -----------------------------------------------------------

def build_resv_register(nsid: int, rrega: int, *, iekey: bool = False,
                        cptpl: int = Cptpl.NO_CHANGE) -> SQE:
    """Data: :func:`encode_register_data` (16 bytes)."""
    return SQE(ResvOpc.REGISTER, nsid=nsid,
               cdw10=encode_register_cdw10(RegisterCdw10(rrega, iekey, cptpl)))


def build_resv_acquire(nsid: int, racqa: int, rtype: int, *, iekey: bool = False) -> SQE:
    """Data: :func:`encode_acquire_data` (16 bytes)."""
    return SQE(ResvOpc.ACQUIRE, nsid=nsid,
               cdw10=encode_acquire_cdw10(AcquireCdw10(racqa, rtype, iekey)))


def build_resv_release(nsid: int, rrela: int, rtype: int, *, iekey: bool = False) -> SQE:
    """Data: :func:`encode_release_data` (8 bytes)."""
    return SQE(ResvOpc.RELEASE, nsid=nsid,
               cdw10=encode_release_cdw10(ReleaseCdw10(rrela, rtype, iekey)))


def build_resv_report(nsid: int, length: int, *, extended: bool = True) -> SQE:
    """Report into ``length`` bytes (a multiple of 4)."""
    if length < 4 or length % 4 or length > 4 << 32:
        raise LocalProtocolError(f"Reservation Report length {length}: need a multiple of 4")
    return SQE(ResvOpc.REPORT, nsid=nsid, cdw10=length // 4 - 1,
               cdw11=EDS if extended else 0)


# --- helpers --------------------------------------------------------------------

def _fits(what: str, value: int, bits: int) -> None:
    if not 0 <= value < 1 << bits:
        raise LocalProtocolError(f"cannot encode {what}={value!r}: not a {bits}-bit value")


def _pack(st: struct.Struct, what: str, *values: Any) -> bytes:
    try:
        return st.pack(*values)
    except struct.error as exc:
        raise LocalProtocolError(f"cannot encode {what}: {exc}") from None


def _unpack(st: struct.Struct, buf: Any, what: str) -> tuple:
    mv = memoryview(buf).cast("B")
    if len(mv) < st.size:
        raise PeerProtocolError(f"{what}: {len(mv)} bytes, expected at least {st.size}")
    return st.unpack_from(mv, 0)
