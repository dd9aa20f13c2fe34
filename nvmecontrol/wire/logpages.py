"""Log pages returned by Get Log Page (NVMe Base Specification 2.0, 5.16.1).

Owns the log page identifiers and the decode/encode of the pages the host
prints and the target serves:

- 01h Error Information (5.16.1.2): 64-byte entries.
- 02h SMART / Health Information (5.16.1.3): 512 bytes, 128-bit counters.
- 03h Firmware Slot Information (5.16.1.4): 512 bytes.
- 04h Changed Namespace List (5.16.1.5): 1024 NSIDs; when more than 1024
  namespaces changed the first entry is FFFFFFFFh and the rest are zero.
- 05h Commands Supported and Effects (5.16.1.6): 256 admin + 256 I/O dwords.
- 0Ch Asymmetric Namespace Access (5.16.1.12): 16-byte header, then group
  descriptors of 32 bytes followed by their NSIDs (variable length).

The Discovery log page (70h) lives in :mod:`nvmecontrol.wire.discovery`.

Decoders take any bytes-like object, ignore trailing bytes and raise only
:class:`~nvmecontrol.errors.PeerProtocolError`; encoders produce the full
page and raise :class:`~nvmecontrol.errors.LocalProtocolError` for values
that do not fit.  Reserved bytes are not modelled: they decode to nothing
and encode as zero.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from nvmecontrol.errors import LocalProtocolError, PeerProtocolError


class LogPage(IntEnum):
    """Log Page Identifiers (NVMe Base 2.0 figure 202, NVMe-oF for 70h)."""

    SUPPORTED_LOG_PAGES = 0x00
    ERROR = 0x01
    SMART = 0x02
    FW_SLOT = 0x03
    CHANGED_NS = 0x04
    CMD_EFFECTS = 0x05
    DEVICE_SELF_TEST = 0x06
    TELEMETRY_HOST = 0x07
    TELEMETRY_CTRL = 0x08
    ENDURANCE_GROUP = 0x09
    PREDICTABLE_LAT_NVMSET = 0x0A
    PREDICTABLE_LAT_AGG = 0x0B
    ANA = 0x0C
    PERSISTENT_EVENT = 0x0D
    LBA_STATUS = 0x0E
    ENDURANCE_GROUP_EVENT = 0x0F
    MEDIA_UNIT_STATUS = 0x10
    SUPPORTED_CAP_CONFIG = 0x11
    FID_SUPPORTED_EFFECTS = 0x12
    MI_CMD_SUPPORTED_EFFECTS = 0x13
    CMD_FEAT_LOCKDOWN = 0x14
    BOOT_PARTITION = 0x15
    DISCOVERY = 0x70
    HOST_DISCOVERY = 0x71
    AVE_DISCOVERY = 0x72
    PULL_MODEL_DDC_REQUEST = 0x73
    RESERVATION_NOTIFICATION = 0x80
    SANITIZE_STATUS = 0x81


ERROR_ENTRY_SIZE = 64
SMART_LOG_SIZE = 512
FW_SLOT_LOG_SIZE = 512
CHANGED_NS_LOG_SIZE = 4096
CMD_EFFECTS_LOG_SIZE = 4096
DEVICE_SELF_TEST_LOG_SIZE = 564
RESERVATION_NOTIFICATION_LOG_SIZE = 64
SANITIZE_STATUS_LOG_SIZE = 512
ANA_HEADER_SIZE = 16
ANA_GROUP_DESC_SIZE = 32

# Fixed sizes; the Error log is (ELPE+1) * 64 and ANA/discovery vary.
LOG_PAGE_SIZES: dict[int, int] = {
    LogPage.SMART: SMART_LOG_SIZE,
    LogPage.FW_SLOT: FW_SLOT_LOG_SIZE,
    LogPage.CHANGED_NS: CHANGED_NS_LOG_SIZE,
    LogPage.CMD_EFFECTS: CMD_EFFECTS_LOG_SIZE,
    LogPage.DEVICE_SELF_TEST: DEVICE_SELF_TEST_LOG_SIZE,
    LogPage.RESERVATION_NOTIFICATION: RESERVATION_NOTIFICATION_LOG_SIZE,
    LogPage.SANITIZE_STATUS: SANITIZE_STATUS_LOG_SIZE,
}


def error_log_size(elpe: int) -> int:
    """Bytes of the Error Information log for a controller's ELPE (0's based)."""
    return (elpe + 1) * ERROR_ENTRY_SIZE


def _short(what: str, got: int, need: int) -> PeerProtocolError:
    return PeerProtocolError(f"{what}: {got} bytes, expected at least {need}")


def _pack(st: struct.Struct, buf: bytearray, off: int, what: str, *values: Any) -> None:
    try:
        st.pack_into(buf, off, *values)
    except (struct.error, TypeError) as exc:
        raise LocalProtocolError(f"cannot encode {what}: {exc}") from None


def _u128(lo: int, hi: int) -> int:
    return lo | (hi << 64)


def _split128(value: int, what: str) -> tuple[int, int]:
    if not isinstance(value, int) or not 0 <= value < 1 << 128:
        raise LocalProtocolError(f"cannot encode {what}={value!r}: not a 128-bit unsigned value")
    return value & 0xFFFFFFFFFFFFFFFF, value >> 64


# --- 01h Error Information ---------------------------------------------------

# error_count, sqid, cid, status field, pel, lba, nsid, vs, trtype, csi, opc,
# cs, ttsi, 21 reserved, lpv (NVMe Base 2.0 figure 205).
_ERROR_ENTRY = struct.Struct("<QHHHHQIBBBBQH21xB")
assert _ERROR_ENTRY.size == ERROR_ENTRY_SIZE


@dataclass(slots=True)
class ErrorLogEntry:
    """One Error Information entry.

    ``status`` is the 15-bit status (as in :mod:`nvmecontrol.wire.status`);
    the entry's Status Field carries it in bits 15:1 and ``phase`` in bit 0.
    ``cs`` is Command Specific Information, ``csi`` the Command Set Indicator.
    """

    error_count: int = 0
    sqid: int = 0
    cid: int = 0
    status: int = 0
    phase: int = 0
    pel: int = 0  # Parameter Error Location
    lba: int = 0
    nsid: int = 0
    vs: int = 0
    trtype: int = 0
    csi: int = 0
    opc: int = 0
    cs: int = 0
    ttsi: int = 0  # Transport Type Specific Information
    lpv: int = 0  # Log Page Version


def decode_error_log(buf: Any) -> list[ErrorLogEntry]:
    """Every whole 64-byte entry in ``buf`` (empty entries included)."""
    n = len(buf)
    if n < ERROR_ENTRY_SIZE:
        raise _short("Error Information log", n, ERROR_ENTRY_SIZE)
    out = []
    for off in range(0, n - ERROR_ENTRY_SIZE + 1, ERROR_ENTRY_SIZE):
        (count, sqid, cid, sf, pel, lba, nsid, vs, trtype, csi, opc, cs, ttsi, lpv) = (
            _ERROR_ENTRY.unpack_from(buf, off)
        )
        out.append(
            ErrorLogEntry(count, sqid, cid, (sf >> 1) & 0x7FFF, sf & 1, pel, lba, nsid,
                          vs, trtype, csi, opc, cs, ttsi, lpv)
        )
    return out


def encode_error_log(entries: list[ErrorLogEntry], nentries: int | None = None) -> bytes:
    """Entries back to back, zero-filled up to ``nentries`` (ELPE+1) if given."""
    total = len(entries) if nentries is None else nentries
    if total < len(entries):
        raise LocalProtocolError(f"{len(entries)} error entries do not fit in {total}")
    buf = bytearray(total * ERROR_ENTRY_SIZE)
    for i, e in enumerate(entries):
        if not 0 <= e.status <= 0x7FFF or e.phase not in (0, 1):
            raise LocalProtocolError(f"error entry {i}: bad status {e.status!r}/phase {e.phase!r}")
        _pack(_ERROR_ENTRY, buf, i * ERROR_ENTRY_SIZE, f"error entry {i}",
              e.error_count, e.sqid, e.cid, (e.status << 1) | e.phase, e.pel, e.lba,
              e.nsid, e.vs, e.trtype, e.csi, e.opc, e.cs, e.ttsi, e.lpv)
    return bytes(buf)


# --- 02h SMART / Health Information -------------------------------------------

# Critical Warning bits.
CW_SPARE = 1 << 0
CW_TEMPERATURE = 1 << 1
CW_RELIABILITY = 1 << 2
CW_READ_ONLY = 1 << 3
CW_VOLATILE_BACKUP = 1 << 4
CW_PMR_READ_ONLY = 1 << 5

# Bytes 0-31: critical_warning, composite temperature (Kelvin, unaligned
# u16 at byte 1), available spare, threshold, percentage used, endurance
# group critical warning summary, 25 reserved.
_SMART_HEAD = struct.Struct("<BHBBBB25x")
_SMART_COUNTERS = struct.Struct("<20Q")  # bytes 32-191: ten 128-bit counters
_SMART_TAIL = struct.Struct("<II8HIIII")  # bytes 192-231
_SMART_COUNTER_NAMES = (
    "data_units_read",
    "data_units_written",
    "host_read_commands",
    "host_write_commands",
    "controller_busy_time",
    "power_cycles",
    "power_on_hours",
    "unsafe_shutdowns",
    "media_errors",
    "num_err_log_entries",
)


@dataclass(slots=True)
class SmartLog:
    """SMART / Health Information (temperatures in Kelvin, counters as ints).

    Data units are thousands of 512-byte units; busy time is in minutes.
    """

    critical_warning: int = 0
    temperature: int = 0
    avail_spare: int = 0
    spare_thresh: int = 0
    percent_used: int = 0
    endu_grp_crit_warn_sumry: int = 0
    data_units_read: int = 0
    data_units_written: int = 0
    host_read_commands: int = 0
    host_write_commands: int = 0
    controller_busy_time: int = 0
    power_cycles: int = 0
    power_on_hours: int = 0
    unsafe_shutdowns: int = 0
    media_errors: int = 0
    num_err_log_entries: int = 0
    warning_temp_time: int = 0  # minutes
    critical_comp_time: int = 0  # minutes
    temp_sensor: tuple[int, ...] = (0,) * 8  # Kelvin, 0 = not implemented
    thm_temp1_trans_count: int = 0
    thm_temp2_trans_count: int = 0
    thm_temp1_total_time: int = 0
    thm_temp2_total_time: int = 0


def decode_smart_log(buf: Any) -> SmartLog:
    n = len(buf)
    if n < SMART_LOG_SIZE:
        raise _short("SMART / Health Information log", n, SMART_LOG_SIZE)
    cw, temp, spare, thresh, used, egcws = _SMART_HEAD.unpack_from(buf, 0)
    words = _SMART_COUNTERS.unpack_from(buf, 32)
    counters = {
        name: _u128(words[2 * i], words[2 * i + 1]) for i, name in enumerate(_SMART_COUNTER_NAMES)
    }
    tail = _SMART_TAIL.unpack_from(buf, 192)
    return SmartLog(
        cw, temp, spare, thresh, used, egcws,
        **counters,
        warning_temp_time=tail[0],
        critical_comp_time=tail[1],
        temp_sensor=tuple(tail[2:10]),
        thm_temp1_trans_count=tail[10],
        thm_temp2_trans_count=tail[11],
        thm_temp1_total_time=tail[12],
        thm_temp2_total_time=tail[13],
    )


def encode_smart_log(log: SmartLog) -> bytes:
    buf = bytearray(SMART_LOG_SIZE)
    _pack(_SMART_HEAD, buf, 0, "SMART log header", log.critical_warning, log.temperature,
          log.avail_spare, log.spare_thresh, log.percent_used, log.endu_grp_crit_warn_sumry)
    words: list[int] = []
    for name in _SMART_COUNTER_NAMES:
        words.extend(_split128(getattr(log, name), name))
    _pack(_SMART_COUNTERS, buf, 32, "SMART counters", *words)
    sensors = tuple(log.temp_sensor)
    if len(sensors) != 8:
        raise LocalProtocolError(f"temp_sensor needs 8 values, got {len(sensors)}")
    _pack(_SMART_TAIL, buf, 192, "SMART temperatures", log.warning_temp_time,
          log.critical_comp_time, *sensors, log.thm_temp1_trans_count,
          log.thm_temp2_trans_count, log.thm_temp1_total_time, log.thm_temp2_total_time)
    return bytes(buf)


# --- 03h Firmware Slot Information -------------------------------------------

FW_SLOTS = 7
_FW_SLOT = struct.Struct("<B7x56s")


@dataclass(slots=True)
class FirmwareSlotLog:
    """AFI and the firmware revision of slots 1-7 ("" when empty).

    Revisions are ASCII with trailing spaces/NULs stripped; an empty string
    encodes as eight zero bytes (an empty slot), others are space padded.
    """

    afi: int = 0
    frs: tuple[str, ...] = ("",) * FW_SLOTS

    @property
    def active_slot(self) -> int:
        """AFI bits 2:0: the slot the running firmware came from."""
        return self.afi & 0x7

    @property
    def next_slot(self) -> int:
        """AFI bits 6:4: the slot activated at the next reset (0 = none)."""
        return (self.afi >> 4) & 0x7


def decode_fw_slot_log(buf: Any) -> FirmwareSlotLog:
    n = len(buf)
    if n < FW_SLOT_LOG_SIZE:
        raise _short("Firmware Slot Information log", n, FW_SLOT_LOG_SIZE)
    afi, revs = _FW_SLOT.unpack_from(buf, 0)
    frs = tuple(
        revs[i : i + 8].rstrip(b" \x00").decode("ascii", "surrogateescape")
        for i in range(0, 56, 8)
    )
    return FirmwareSlotLog(afi, frs)


def encode_fw_slot_log(log: FirmwareSlotLog) -> bytes:
    frs = tuple(log.frs)
    if len(frs) != FW_SLOTS:
        raise LocalProtocolError(f"frs needs {FW_SLOTS} revisions, got {len(frs)}")
    revs = bytearray()
    for i, rev in enumerate(frs):
        try:
            enc = rev.encode("ascii", "surrogateescape")
        except (UnicodeError, AttributeError) as exc:
            raise LocalProtocolError(f"firmware slot {i + 1}: {exc}") from None
        if len(enc) > 8:
            raise LocalProtocolError(f"firmware slot {i + 1}: revision {rev!r} longer than 8")
        revs += enc.ljust(8, b" ") if enc else bytes(8)
    buf = bytearray(FW_SLOT_LOG_SIZE)
    _pack(_FW_SLOT, buf, 0, "firmware slot log", log.afi, bytes(revs))
    return bytes(buf)


# --- 04h Changed Namespace List ---------------------------------------------

CHANGED_NS_MAX = 1024
# First entry when more than 1024 namespaces changed (5.16.1.5).
CHANGED_NS_OVERFLOW = 0xFFFFFFFF
_NS_LIST = struct.Struct(f"<{CHANGED_NS_MAX}I")


@dataclass(slots=True)
class ChangedNsList:
    """Changed NSIDs; ``overflow`` means "more than 1024, rescan everything"."""

    nsids: list[int] = field(default_factory=list)
    overflow: bool = False


def decode_changed_ns_list(buf: Any) -> ChangedNsList:
    n = len(buf)
    if n < CHANGED_NS_LOG_SIZE:
        raise _short("Changed Namespace List log", n, CHANGED_NS_LOG_SIZE)
    words = _NS_LIST.unpack_from(buf, 0)
    if words[0] == CHANGED_NS_OVERFLOW:
        return ChangedNsList([], True)
    out = []
    for nsid in words:
        if nsid == 0:
            break
        out.append(nsid)
    return ChangedNsList(out, False)


def encode_changed_ns_list(log: ChangedNsList | list[int]) -> bytes:
    """Applies the overflow rule itself when given more than 1024 NSIDs."""
    if isinstance(log, ChangedNsList):
        nsids, overflow = list(log.nsids), log.overflow
    else:
        nsids, overflow = list(log), False
    if overflow or len(nsids) > CHANGED_NS_MAX:
        words = [CHANGED_NS_OVERFLOW] + [0] * (CHANGED_NS_MAX - 1)
    else:
        for nsid in nsids:
            if not isinstance(nsid, int) or not 0 < nsid < CHANGED_NS_OVERFLOW:
                raise LocalProtocolError(f"changed namespace list: bad NSID {nsid!r}")
        words = nsids + [0] * (CHANGED_NS_MAX - len(nsids))
    return _NS_LIST.pack(*words)


# --- 05h Commands Supported and Effects --------------------------------------

CE_CSUPP = 1 << 0  # command supported
CE_LBCC = 1 << 1  # logical block content change
CE_NCC = 1 << 2  # namespace capability change
CE_NIC = 1 << 3  # namespace inventory change
CE_CCC = 1 << 4  # controller capability change
CE_CSER_SHIFT = 14
CE_CSER_MASK = 0x3
CE_CSE_SHIFT = 16  # command submission and execution, 3 bits
CE_CSE_MASK = 0x7
CE_UUID = 1 << 19  # UUID selection supported

_EFFECTS = struct.Struct("<512I")


@dataclass(slots=True)
class CommandEffectsLog:
    """One dword per opcode: ``acs`` for admin, ``iocs`` for I/O commands."""

    acs: tuple[int, ...] = (0,) * 256
    iocs: tuple[int, ...] = (0,) * 256


def decode_cmd_effects_log(buf: Any) -> CommandEffectsLog:
    n = len(buf)
    if n < _EFFECTS.size:
        raise _short("Commands Supported and Effects log", n, CMD_EFFECTS_LOG_SIZE)
    words = _EFFECTS.unpack_from(buf, 0)
    return CommandEffectsLog(tuple(words[:256]), tuple(words[256:]))


def encode_cmd_effects_log(log: CommandEffectsLog) -> bytes:
    acs, iocs = tuple(log.acs), tuple(log.iocs)
    if len(acs) != 256 or len(iocs) != 256:
        raise LocalProtocolError("acs and iocs need 256 entries each")
    buf = bytearray(CMD_EFFECTS_LOG_SIZE)
    _pack(_EFFECTS, buf, 0, "command effects", *acs, *iocs)
    return bytes(buf)


# --- 0Ch Asymmetric Namespace Access ----------------------------------------


class AnaState(IntEnum):
    """ANA group state, descriptor byte 16 bits 3:0."""

    OPTIMIZED = 0x1
    NON_OPTIMIZED = 0x2
    INACCESSIBLE = 0x3
    PERSISTENT_LOSS = 0x4
    CHANGE = 0xF


# LSP bit 0 of Get Log Page for ANA: Return Groups Only (no NSID lists).
ANA_LSP_RGO = 0x1

_ANA_HEADER = struct.Struct("<QH6x")
_ANA_DESC = struct.Struct("<IIQB15x")
_U32 = struct.Struct("<I")


@dataclass(slots=True)
class AnaGroupDescriptor:
    grpid: int = 0
    chgcnt: int = 0
    state: int = AnaState.OPTIMIZED
    nsids: list[int] = field(default_factory=list)


@dataclass(slots=True)
class AnaLog:
    chgcnt: int = 0
    groups: list[AnaGroupDescriptor] = field(default_factory=list)


def ana_log_size(ngrps: int, nnsids: int) -> int:
    """Bytes needed for ``ngrps`` descriptors listing ``nnsids`` NSIDs in total."""
    return ANA_HEADER_SIZE + ngrps * ANA_GROUP_DESC_SIZE + 4 * nnsids


def decode_ana_log(buf: Any) -> AnaLog:
    """Header and every group; NGRPS/NNSIDS are checked against the buffer so
    a hostile count cannot make us read past it."""
    n = len(buf)
    if n < ANA_HEADER_SIZE:
        raise _short("ANA log header", n, ANA_HEADER_SIZE)
    chgcnt, ngrps = _ANA_HEADER.unpack_from(buf, 0)
    groups = []
    off = ANA_HEADER_SIZE
    for g in range(ngrps):
        if off + ANA_GROUP_DESC_SIZE > n:
            raise PeerProtocolError(
                f"ANA log: NGRPS {ngrps} but descriptor {g} at byte {off} is past "
                f"the {n}-byte buffer"
            )
        grpid, nnsids, gchg, state = _ANA_DESC.unpack_from(buf, off)
        off += ANA_GROUP_DESC_SIZE
        end = off + 4 * nnsids
        if end > n:
            raise PeerProtocolError(
                f"ANA log: group {grpid} claims {nnsids} NSIDs, only {(n - off) // 4} "
                f"fit in the {n}-byte buffer"
            )
        nsids = list(struct.unpack_from(f"<{nnsids}I", buf, off))
        off = end
        try:
            state = AnaState(state & 0x0F)
        except ValueError:
            state &= 0x0F
        groups.append(AnaGroupDescriptor(grpid, gchg, state, nsids))
    return AnaLog(chgcnt, groups)


def encode_ana_log(log: AnaLog) -> bytes:
    """Header plus descriptors, exactly as long as needed (no padding)."""
    total = ana_log_size(len(log.groups), sum(len(g.nsids) for g in log.groups))
    buf = bytearray(total)
    if len(log.groups) > 0xFFFF:
        raise LocalProtocolError(f"{len(log.groups)} ANA groups, at most 65535")
    _pack(_ANA_HEADER, buf, 0, "ANA header", log.chgcnt, len(log.groups))
    off = ANA_HEADER_SIZE
    for g in log.groups:
        _pack(_ANA_DESC, buf, off, f"ANA group {g.grpid}", g.grpid, len(g.nsids), g.chgcnt,
              g.state)
        off += ANA_GROUP_DESC_SIZE
        for nsid in g.nsids:
            _pack(_U32, buf, off, f"ANA group {g.grpid} NSID", nsid)
            off += 4
    return bytes(buf)
