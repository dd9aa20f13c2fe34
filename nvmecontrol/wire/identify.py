"""Identify data structures (NVMe Base Specification 2.0, section 5.17.2).

Owns the 4096-byte Identify Controller (CNS 01h) and Identify Namespace
(CNS 00h, NVM command set, NVM Command Set Specification 2.0 section 4.1.5.1)
structures, the Active Namespace ID list (CNS 02h) and the Namespace
Identification Descriptor list (CNS 03h), with encoders for the target.

Identify Controller includes the NVMe over Fabrics fields in bytes
1792-2047 (NVMe-oF 1.1 figure "Identify Controller Data Structure, NVMe
over Fabrics extensions": IOCCSZ, IORCSZ, ICDOFF, FCATT, MSDBD, OFCS) and
SUBNQN at byte 768.

Conventions:
- Field names are the spec mnemonics.  Offsets are written next to each
  field in the layout tables below; they are the spec's byte offsets.
- 128-bit counters (TNVMCAP, UNVMCAP, NVMCAP, ...) are Python ints.
- ASCII fields (SN, MN, FR) are decoded with trailing spaces and NULs
  stripped; bytes that are not ASCII survive as surrogate escapes so that
  nothing is lost (renderers turn them into ``?`` like FreeBSD's
  ``nvme_strvis``).  SUBNQN is UTF-8, NUL terminated.
- Decoded structures keep the raw 4096 bytes in ``raw`` (hex dumps, fields
  not modelled here, power state descriptors, vendor specific area).
  Encoding starts from ``raw`` (zeros when empty) and rewrites only the
  fields whose value differs from what ``raw`` holds, so
  ``encode(decode(x)) == x`` byte for byte, padding quirks included.
- Decoders raise only :class:`~nvmecontrol.errors.PeerProtocolError`;
  encoders raise :class:`~nvmecontrol.errors.LocalProtocolError` for values
  that do not fit.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from collections import namedtuple

from nvmecontrol.errors import LocalProtocolError, PeerProtocolError

TYPE_CHECKING = False  # typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from typing import Any

    from nvmecontrol.wire.identify_records import IdentifyController, IdentifyNamespace

# The decoded records are dataclasses made on first use (identify_records
# says why); ``from nvmecontrol.wire.identify import IdentifyController``
# works as ever, through __getattr__.
_RECORDS = ("IdentifyController", "IdentifyNamespace")


def __getattr__(name: str) -> Any:  # PEP 562
    if name in _RECORDS:
        from nvmecontrol.wire import identify_records

        return getattr(identify_records, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_RECORDS])

IDENTIFY_DATA_SIZE = 4096

# CNS values (NVMe Base 2.0, figure "CNS Values").
CNS_NAMESPACE = 0x00
CNS_CONTROLLER = 0x01
CNS_ACTIVE_NSID_LIST = 0x02
CNS_NS_ID_DESCRIPTORS = 0x03
CNS_NVMSET_LIST = 0x04
CNS_CSI_NAMESPACE = 0x05
CNS_CSI_CONTROLLER = 0x06
CNS_CSI_ACTIVE_NSID_LIST = 0x07
CNS_CSI_INDEPENDENT_NAMESPACE = 0x08
CNS_ALLOCATED_NSID_LIST = 0x10
CNS_ALLOCATED_NAMESPACE = 0x11
CNS_NS_CONTROLLER_LIST = 0x12
CNS_CONTROLLER_LIST = 0x13
CNS_PRIMARY_CTRL_CAPS = 0x14
CNS_SECONDARY_CTRL_LIST = 0x15
CNS_NS_GRANULARITY_LIST = 0x16
CNS_UUID_LIST = 0x17
CNS_DOMAIN_LIST = 0x18
CNS_ENDURANCE_GROUP_LIST = 0x19
CNS_CSI_ALLOCATED_NSID_LIST = 0x1A
CNS_CSI_ALLOCATED_NAMESPACE = 0x1B
CNS_IO_COMMAND_SET = 0x1C

# Active Namespace ID list: 1024 NSIDs, zero terminated when fewer.
ACTIVE_NSID_LIST_MAX = IDENTIFY_DATA_SIZE // 4
NSID_BROADCAST = 0xFFFFFFFF

# Controller types (CNTRLTYPE, byte 111).
CNTRLTYPE_NOT_REPORTED = 0
CNTRLTYPE_IO = 1
CNTRLTYPE_DISCOVERY = 2
CNTRLTYPE_ADMIN = 3

# Selected bits, named after the spec fields (NVMe Base 2.0, figure 275).
CMIC_MULTI_PORT = 1 << 0
CMIC_MULTI_CTRL = 1 << 1
CMIC_SRIOV = 1 << 2
CMIC_ANA = 1 << 3
CTRATT_HOSTID_128 = 1 << 0
CTRATT_TBKAS = 1 << 6  # Traffic Based Keep Alive Support
LPA_SMART_PER_NS = 1 << 0
LPA_CMD_EFFECTS = 1 << 1
LPA_EXTENDED = 1 << 2
FCATT_STATIC = 1 << 0  # Fabrics: static controller model
OFCS_DISCONNECT = 1 << 0  # Fabrics: Disconnect command supported
SGLS_SUPPORTED_MASK = 0x3
SGLS_KEYED = 1 << 2
SGLS_TRANSPORT = 1 << 20  # Transport SGL Data Block descriptor
# Identify Namespace NSATTR bit 0: the namespace is write protected.
NSATTR_WRITE_PROTECTED = 1 << 0

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_U128 = struct.Struct("<QQ")
_LBAF = struct.Struct("<HBB")

# Field kinds of the layout tables.
_K_U8, _K_U16, _K_U24, _K_U32, _K_U64, _K_U128, _K_ASCII, _K_NQN, _K_BYTES = range(9)
_INT_STRUCTS = {_K_U8: _U8, _K_U16: _U16, _K_U32: _U32, _K_U64: _U64}


def _too_short(what: str, got: int, need: int) -> PeerProtocolError:
    return PeerProtocolError(f"{what}: {got} bytes, expected at least {need}")


def decode_ascii(raw: bytes) -> str:
    """ASCII field: trailing spaces/NULs stripped, non-ASCII kept as surrogate escapes."""
    return raw.rstrip(b" \x00").decode("ascii", "surrogateescape")


def decode_nqn(raw: bytes) -> str:
    """NUL terminated UTF-8 field (SUBNQN); trailing spaces stripped too."""
    cut = raw.find(b"\x00")
    if cut >= 0:
        raw = raw[:cut]
    return raw.rstrip(b" ").decode("utf-8", "surrogateescape")


def _get(buf: Any, off: int, kind: int, size: int) -> Any:
    if kind in _INT_STRUCTS:
        return _INT_STRUCTS[kind].unpack_from(buf, off)[0]
    if kind == _K_U128:
        lo, hi = _U128.unpack_from(buf, off)
        return lo | (hi << 64)
    raw = bytes(buf[off : off + size])
    if kind == _K_U24:
        return int.from_bytes(raw, "little")
    if kind == _K_ASCII:
        return decode_ascii(raw)
    if kind == _K_NQN:
        return decode_nqn(raw)
    return raw


def _put(buf: bytearray, off: int, kind: int, size: int, value: Any, name: str) -> None:
    try:
        if kind in _INT_STRUCTS:
            _INT_STRUCTS[kind].pack_into(buf, off, value)
            return
        if kind == _K_U128:
            if not 0 <= value < 1 << 128:
                raise ValueError("does not fit in 128 bits")
            _U128.pack_into(buf, off, value & 0xFFFFFFFFFFFFFFFF, value >> 64)
            return
        if kind == _K_U24:
            raw = int(value).to_bytes(3, "little")
        elif kind == _K_ASCII:
            enc = value.encode("ascii", "surrogateescape")
            if len(enc) > size:
                raise ValueError(f"{len(enc)} bytes, at most {size}")
            raw = enc.ljust(size, b" ")
        elif kind == _K_NQN:
            enc = value.encode("utf-8", "surrogateescape")
            if len(enc) >= size:
                raise ValueError(f"{len(enc)} bytes, at most {size - 1} (NUL terminated)")
            raw = enc.ljust(size, b"\x00")
        else:
            raw = bytes(value)
            if len(raw) > size:
                raise ValueError(f"{len(raw)} bytes, at most {size}")
            raw = raw.ljust(size, b"\x00")
    except (struct.error, ValueError, OverflowError, TypeError, AttributeError, UnicodeError) as exc:
        raise LocalProtocolError(f"cannot encode field {name}={value!r}: {exc}") from None
    buf[off : off + size] = raw


_SIZES = {_K_U8: 1, _K_U16: 2, _K_U24: 3, _K_U32: 4, _K_U64: 8, _K_U128: 16}


def _layout(*fields: tuple) -> tuple[tuple[str, int, int, int], ...]:
    out = []
    for f in fields:
        name, off, kind = f[:3]
        size = f[3] if len(f) > 3 else _SIZES[kind]
        out.append((name, off, kind, size))
    return tuple(out)


def _decode_fields(buf: Any, layout: tuple) -> dict[str, Any]:
    return {name: _get(buf, off, kind, size) for name, off, kind, size in layout}


def _encode_fields(obj: Any, base: bytes, total: int, layout: tuple) -> bytearray:
    buf = bytearray(base) if len(base) == total else bytearray(total)
    for name, off, kind, size in layout:
        value = getattr(obj, name)
        if _get(buf, off, kind, size) != value:
            _put(buf, off, kind, size, value, name)
    return buf


# --- Identify Controller (CNS 01h) -----------------------------------------

# (mnemonic, byte offset, kind[, size]) -- NVMe Base 2.0 figure 275 and
# NVMe-oF 1.1 figure 32 for bytes 1792+.
_CTRL_LAYOUT = _layout(
    ("vid", 0, _K_U16),
    ("ssvid", 2, _K_U16),
    ("sn", 4, _K_ASCII, 20),
    ("mn", 24, _K_ASCII, 40),
    ("fr", 64, _K_ASCII, 8),
    ("rab", 72, _K_U8),
    ("ieee", 73, _K_U24),
    ("cmic", 76, _K_U8),
    ("mdts", 77, _K_U8),
    ("cntlid", 78, _K_U16),
    ("ver", 80, _K_U32),
    ("rtd3r", 84, _K_U32),
    ("rtd3e", 88, _K_U32),
    ("oaes", 92, _K_U32),
    ("ctratt", 96, _K_U32),
    ("rrls", 100, _K_U16),
    ("cntrltype", 111, _K_U8),
    ("fguid", 112, _K_BYTES, 16),
    ("crdt1", 128, _K_U16),
    ("crdt2", 130, _K_U16),
    ("crdt3", 132, _K_U16),
    ("nvmsr", 253, _K_U8),
    ("vwci", 254, _K_U8),
    ("mec", 255, _K_U8),
    ("oacs", 256, _K_U16),
    ("acl", 258, _K_U8),
    ("aerl", 259, _K_U8),
    ("frmw", 260, _K_U8),
    ("lpa", 261, _K_U8),
    ("elpe", 262, _K_U8),
    ("npss", 263, _K_U8),
    ("avscc", 264, _K_U8),
    ("apsta", 265, _K_U8),
    ("wctemp", 266, _K_U16),
    ("cctemp", 268, _K_U16),
    ("mtfa", 270, _K_U16),
    ("hmpre", 272, _K_U32),
    ("hmmin", 276, _K_U32),
    ("tnvmcap", 280, _K_U128),
    ("unvmcap", 296, _K_U128),
    ("rpmbs", 312, _K_U32),
    ("edstt", 316, _K_U16),
    ("dsto", 318, _K_U8),
    ("fwug", 319, _K_U8),
    ("kas", 320, _K_U16),
    ("hctma", 322, _K_U16),
    ("mntmt", 324, _K_U16),
    ("mxtmt", 326, _K_U16),
    ("sanicap", 328, _K_U32),
    ("hmminds", 332, _K_U32),
    ("hmmaxd", 336, _K_U16),
    ("nsetidmax", 338, _K_U16),
    ("endgidmax", 340, _K_U16),
    ("anatt", 342, _K_U8),
    ("anacap", 343, _K_U8),
    ("anagrpmax", 344, _K_U32),
    ("nanagrpid", 348, _K_U32),
    ("pels", 352, _K_U32),
    ("domainid", 356, _K_U16),
    ("megcap", 368, _K_U128),
    ("sqes", 512, _K_U8),
    ("cqes", 513, _K_U8),
    ("maxcmd", 514, _K_U16),
    ("nn", 516, _K_U32),
    ("oncs", 520, _K_U16),
    ("fuses", 522, _K_U16),
    ("fna", 524, _K_U8),
    ("vwc", 525, _K_U8),
    ("awun", 526, _K_U16),
    ("awupf", 528, _K_U16),
    ("icsvscc", 530, _K_U8),
    ("nwpc", 531, _K_U8),
    ("acwu", 532, _K_U16),
    ("ocfs", 534, _K_U16),
    ("sgls", 536, _K_U32),
    ("mnan", 540, _K_U32),
    ("maxdna", 544, _K_U128),
    ("maxcna", 560, _K_U32),
    ("oaqd", 564, _K_U32),
    ("subnqn", 768, _K_NQN, 256),
    # NVMe over Fabrics extensions.
    ("ioccsz", 1792, _K_U32),
    ("iorcsz", 1796, _K_U32),
    ("icdoff", 1800, _K_U16),
    ("fcatt", 1802, _K_U8),
    ("msdbd", 1803, _K_U8),
    ("ofcs", 1804, _K_U16),
    ("dctype", 1806, _K_U8),
)
# The record these fields fill: identify_records.IdentifyController.


def decode_identify_controller(buf: Any) -> IdentifyController:
    """Decode CNS 01h data; ``buf`` must hold at least 4096 bytes."""
    n = len(buf)
    if n < IDENTIFY_DATA_SIZE:
        raise _too_short("Identify Controller data", n, IDENTIFY_DATA_SIZE)
    from nvmecontrol.wire.identify_records import IdentifyController

    values = _decode_fields(buf, _CTRL_LAYOUT)
    return IdentifyController(**values, raw=bytes(buf[:IDENTIFY_DATA_SIZE]))


def encode_identify_controller(ctrl: IdentifyController) -> bytes:
    """The full 4096-byte structure (``raw`` as the base, see module doc)."""
    return bytes(_encode_fields(ctrl, ctrl.raw, IDENTIFY_DATA_SIZE, _CTRL_LAYOUT))


# --- Identify Namespace (CNS 00h, NVM command set) --------------------------

LBAF_MAX = 64


class LbaFormat(namedtuple("LbaFormat", "ms lbads rp")):
    """One LBA Format entry: metadata size, log2 of the data size, relative performance."""

    __slots__ = ()


_NS_LAYOUT = _layout(
    ("nsze", 0, _K_U64),
    ("ncap", 8, _K_U64),
    ("nuse", 16, _K_U64),
    ("nsfeat", 24, _K_U8),
    ("nlbaf", 25, _K_U8),
    ("flbas", 26, _K_U8),
    ("mc", 27, _K_U8),
    ("dpc", 28, _K_U8),
    ("dps", 29, _K_U8),
    ("nmic", 30, _K_U8),
    ("rescap", 31, _K_U8),
    ("fpi", 32, _K_U8),
    ("dlfeat", 33, _K_U8),
    ("nawun", 34, _K_U16),
    ("nawupf", 36, _K_U16),
    ("nacwu", 38, _K_U16),
    ("nabsn", 40, _K_U16),
    ("nabo", 42, _K_U16),
    ("nabspf", 44, _K_U16),
    ("noiob", 46, _K_U16),
    ("nvmcap", 48, _K_U128),
    ("npwg", 64, _K_U16),
    ("npwa", 66, _K_U16),
    ("npdg", 68, _K_U16),
    ("npda", 70, _K_U16),
    ("nows", 72, _K_U16),
    ("mssrl", 74, _K_U16),
    ("mcl", 76, _K_U32),
    ("msrc", 80, _K_U8),
    ("nulbaf", 82, _K_U8),
    ("anagrpid", 92, _K_U32),
    ("nsattr", 99, _K_U8),
    ("nvmsetid", 100, _K_U16),
    ("endgid", 102, _K_U16),
    ("nguid", 104, _K_BYTES, 16),
    ("eui64", 120, _K_BYTES, 8),
)
_LBAF_OFFSET = 128

# NSFEAT / FLBAS / DPS bits used by the host and the renderers.
NSFEAT_THINP = 1 << 0
NSFEAT_OPTPERF = 1 << 4  # NPWG..NOWS are valid
FLBAS_EXTENDED = 1 << 4  # metadata transferred at the end of the LBA

# The record these fields and the LBA formats fill: identify_records.IdentifyNamespace.


def decode_identify_namespace(buf: Any) -> IdentifyNamespace:
    """Decode CNS 00h data; ``buf`` must hold at least 4096 bytes."""
    n = len(buf)
    if n < IDENTIFY_DATA_SIZE:
        raise _too_short("Identify Namespace data", n, IDENTIFY_DATA_SIZE)
    from nvmecontrol.wire.identify_records import IdentifyNamespace

    values = _decode_fields(buf, _NS_LAYOUT)
    count = min(values["nlbaf"] + 1, LBAF_MAX)
    values["lbaf"] = [
        LbaFormat(ms, lbads, rp & 0x3)
        for ms, lbads, rp in _LBAF.iter_unpack(bytes(buf[_LBAF_OFFSET : _LBAF_OFFSET + 4 * count]))
    ]
    return IdentifyNamespace(**values, raw=bytes(buf[:IDENTIFY_DATA_SIZE]))


def encode_identify_namespace(ns: IdentifyNamespace) -> bytes:
    """The full 4096-byte structure (``raw`` as the base, see module doc)."""
    buf = _encode_fields(ns, ns.raw, IDENTIFY_DATA_SIZE, _NS_LAYOUT)
    if len(ns.lbaf) > LBAF_MAX:
        raise LocalProtocolError(f"{len(ns.lbaf)} LBA formats, at most {LBAF_MAX}")
    for i, fmt in enumerate(ns.lbaf):
        off = _LBAF_OFFSET + 4 * i
        ms, lbads, rp = _LBAF.unpack_from(buf, off)
        if LbaFormat(ms, lbads, rp & 0x3) == tuple(fmt):
            continue
        try:
            _LBAF.pack_into(buf, off, fmt[0], fmt[1], fmt[2] & 0x3)
        except (struct.error, TypeError, IndexError) as exc:
            raise LocalProtocolError(f"cannot encode lbaf[{i}]={fmt!r}: {exc}") from None
    return bytes(buf)


# --- Active Namespace ID list (CNS 02h) -------------------------------------

_NSID_LIST = struct.Struct(f"<{ACTIVE_NSID_LIST_MAX}I")


def decode_active_nsid_list(buf: Any) -> list[int]:
    """NSIDs in the list up to the first zero entry (at most 1024)."""
    n = len(buf)
    if n < IDENTIFY_DATA_SIZE:
        raise _too_short("Active Namespace ID list", n, IDENTIFY_DATA_SIZE)
    out = []
    for nsid in _NSID_LIST.unpack_from(buf, 0):
        if nsid == 0:
            break
        out.append(nsid)
    return out


def encode_active_nsid_list(nsids: list[int]) -> bytes:
    """4096 bytes: the NSIDs (strictly increasing, 1..FFFFFFFEh), zero padded."""
    if len(nsids) > ACTIVE_NSID_LIST_MAX:
        raise LocalProtocolError(f"{len(nsids)} NSIDs, at most {ACTIVE_NSID_LIST_MAX}")
    prev = 0
    for nsid in nsids:
        if not isinstance(nsid, int) or not prev < nsid < NSID_BROADCAST:
            raise LocalProtocolError(
                f"NSID {nsid!r} invalid or not in increasing order (spec: ascending, nonzero)"
            )
        prev = nsid
    padded = list(nsids) + [0] * (ACTIVE_NSID_LIST_MAX - len(nsids))
    return _NSID_LIST.pack(*padded)


# --- Namespace Identification Descriptor list (CNS 03h) ---------------------


class Nidt(IntEnum):
    """Namespace Identifier Type (NVMe Base 2.0, figure "NIDT values")."""

    EUI64 = 1
    NGUID = 2
    UUID = 3
    CSI = 4


# Required NIDL per known NIDT.
NIDT_LENGTHS = {Nidt.EUI64: 8, Nidt.NGUID: 16, Nidt.UUID: 16, Nidt.CSI: 1}

_NID_HDR = struct.Struct("<BBH")


class NsIdDescriptor(namedtuple("NsIdDescriptor", "nidt nid")):
    """One descriptor: type (``Nidt`` or raw int) and the identifier bytes."""

    __slots__ = ()


def decode_ns_id_descriptors(buf: Any) -> list[NsIdDescriptor]:
    """Descriptors up to the first NIDT 0 (or the end of the 4096 bytes)."""
    n = len(buf)
    if n < IDENTIFY_DATA_SIZE:
        raise _too_short("Namespace Identification Descriptor list", n, IDENTIFY_DATA_SIZE)
    out = []
    off = 0
    while off + _NID_HDR.size <= IDENTIFY_DATA_SIZE:
        nidt, nidl, _ = _NID_HDR.unpack_from(buf, off)
        if nidt == 0:
            break
        start = off + _NID_HDR.size
        end = start + nidl
        if end > IDENTIFY_DATA_SIZE:
            raise PeerProtocolError(
                f"Namespace Identification Descriptor at byte {off}: NIDL {nidl} "
                f"runs past the end of the 4096-byte list"
            )
        try:
            nidt = Nidt(nidt)
        except ValueError:
            pass
        else:
            if nidl != NIDT_LENGTHS[nidt]:
                raise PeerProtocolError(
                    f"Namespace Identification Descriptor at byte {off}: "
                    f"NIDT {nidt.name} with NIDL {nidl}, expected {NIDT_LENGTHS[nidt]}"
                )
        out.append(NsIdDescriptor(nidt, bytes(buf[start:end])))
        off = end
    return out


def encode_ns_id_descriptors(descs: list[NsIdDescriptor]) -> bytes:
    """4096 bytes: the descriptors, then zeros (NIDT 0 terminates the list)."""
    buf = bytearray(IDENTIFY_DATA_SIZE)
    off = 0
    for nidt, nid in descs:
        nid = bytes(nid)
        want = NIDT_LENGTHS.get(nidt)
        if not 0 < nidt <= 0xFF or len(nid) > 0xFF or (want is not None and len(nid) != want):
            raise LocalProtocolError(f"bad namespace identifier: NIDT {nidt}, {len(nid)} bytes")
        end = off + _NID_HDR.size + len(nid)
        if end > IDENTIFY_DATA_SIZE:
            raise LocalProtocolError("namespace identification descriptors exceed 4096 bytes")
        _NID_HDR.pack_into(buf, off, nidt, len(nid), 0)
        buf[off + _NID_HDR.size : end] = nid
        off = end
    return bytes(buf)
