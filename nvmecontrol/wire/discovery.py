"""The Discovery log page, log identifier 70h (NVMe over Fabrics 1.1, 5.3;
NVMe Base 2.0, 5.16.1.23).

Layout: a 1024-byte header (GENCTR u64 @0, NUMREC u64 @8, RECFMT u16 @16,
reserved to 1023) followed by NUMREC 1024-byte entries:

    @0 TRTYPE  @1 ADRFAM  @2 SUBTYPE  @3 TREQ  @4 PORTID u16  @6 CNTLID u16
    @8 ASQSZ u16  @10 EFLAGS u16  @32 TRSVCID (32 B)  @256 SUBNQN (256 B)
    @512 TRADDR (256 B)  @768 TSAS (256 B; TCP: SECTYPE at byte 0;
    RDMA: QPTYPE, PRTYPE, CMS, 5 reserved, PKEY u16)

TRADDR and TRSVCID are ASCII; some targets (SPDK) pad them with spaces,
others (Linux nvmet) with NULs, so decoding strips both, like nvme-cli does.
We encode them NUL padded, which every host parses.

Trap: the log can change between the fetch of the header and the fetch of
the entries; the host re-reads the header until GENCTR is stable
(nvmecontrol.host).  This module only decodes what it is given.
"""

from __future__ import annotations

import struct
from collections import namedtuple
from enum import IntEnum

from nvmecontrol.errors import LocalProtocolError, PeerProtocolError
from nvmecontrol.wire.identify import decode_ascii, decode_nqn
from nvmecontrol.wire.records import Record

TYPE_CHECKING = False  # typing's, without importing typing (start-up of discover)
if TYPE_CHECKING:
    from typing import Any

DISCOVERY_HEADER_SIZE = 1024
DISCOVERY_ENTRY_SIZE = 1024
DISCOVERY_NQN = "nqn.2014-08.org.nvmexpress.discovery"

# A hostile or broken discovery controller may announce up to 2^64 - 1
# records; a host that trusts NUMREC would try to allocate and fetch
# NUMREC * 1 KiB.  FreeBSD's libnvmf caps the count at 1024 (1 MiB of log),
# and so do we: more is refused as a protocol error.
MAX_DISCOVERY_RECORDS = 1024

TRSVCID_SIZE = 32
NQN_FIELD_SIZE = 256
TRADDR_SIZE = 256
TSAS_SIZE = 256


# Get Log Page's LID of the discovery log (wire.logpages.LogPage.DISCOVERY),
# here too so that fetching it does not load every log page's records.
LID_DISCOVERY = 0x70


class TrType(IntEnum):
    """Transport type (NVMe-oF figure "TRTYPE")."""

    RDMA = 1
    FC = 2
    TCP = 3
    LOOP = 254  # intra-host transport


class AdrFam(IntEnum):
    """Address family (NVMe-oF figure "ADRFAM")."""

    IPV4 = 1
    IPV6 = 2
    IB = 3
    FC = 4
    LOOP = 254  # intra-host


class SubType(IntEnum):
    """Subsystem type.  1 is a referral to another discovery subsystem."""

    REFERRAL = 1
    DISCOVERY = 1  # alias: FreeBSD's name, printed "Discovery"
    NVME = 2
    CURRENT_DISCOVERY = 3


class SecureChannel(IntEnum):
    """TREQ bits 1:0."""

    NOT_SPECIFIED = 0
    REQUIRED = 1
    NOT_REQUIRED = 2


TREQ_SECURE_CHANNEL_MASK = 0x3
TREQ_DISABLE_SQFLOW = 0x4  # the controller can disable SQ flow control

EFLAGS_DUPRETINFO = 1 << 0  # duplicate returned information
EFLAGS_EPCSD = 1 << 1  # explicit persistent connection support for discovery
EFLAGS_NCC = 1 << 2  # no CDC connectivity

CNTLID_DYNAMIC = 0xFFFF
CNTLID_STATIC_ANY = 0xFFFE


class TcpSecType(IntEnum):
    """TSAS SECTYPE for TCP (NVMe/TCP transport binding, 2.1.2)."""

    NONE = 0
    TLS12 = 1
    TLS13 = 2


class RdmaQpType(IntEnum):
    CONNECTED = 1
    DATAGRAM = 2


class RdmaPrType(IntEnum):
    NOT_SPECIFIED = 1
    IB = 2
    ROCE = 3
    ROCEV2 = 4
    IWARP = 5


class RdmaCms(IntEnum):
    RDMA_CM = 1


_HEADER = struct.Struct("<QQH")
_ENTRY = struct.Struct("<BBBBHHHH20x32s192x256s256s256s")
assert _ENTRY.size == DISCOVERY_ENTRY_SIZE
_RDMA_TSAS = struct.Struct("<BBB5xH")


def _enum(cls: type[IntEnum], value: int) -> int:
    try:
        return cls(value)
    except ValueError:
        return value


# Discovery strings decode as Identify's do (SPDK pads with spaces, Linux with NULs).
_ascii = decode_ascii
_nqn = decode_nqn


DiscoveryHeader = namedtuple("DiscoveryHeader", ("genctr", "numrec", "recfmt"))

_NO_TSAS = bytes(TSAS_SIZE)


class DiscoveryLogEntry(Record):
    """One discovery log entry.  ``tsas`` holds the raw transport specific
    address subtype; use the properties for its TCP/RDMA fields and
    :func:`tcp_tsas` / :func:`rdma_tsas` to build one.  (A slots record, not a
    dataclass: ``import dataclasses`` costs discover's start-up; ``_replace``
    gives a changed copy.)"""

    __slots__ = ("trtype", "adrfam", "subtype", "treq", "portid", "cntlid", "asqsz", "eflags",
                 "trsvcid", "subnqn", "traddr", "tsas")

    def __init__(self, trtype: int = TrType.TCP, adrfam: int = AdrFam.IPV4,
                 subtype: int = SubType.NVME, treq: int = 0, portid: int = 0,
                 cntlid: int = CNTLID_DYNAMIC, asqsz: int = 0, eflags: int = 0,
                 trsvcid: str = "", subnqn: str = "", traddr: str = "",
                 tsas: bytes = _NO_TSAS):
        self.trtype = trtype
        self.adrfam = adrfam
        self.subtype = subtype
        self.treq = treq
        self.portid = portid
        self.cntlid = cntlid
        self.asqsz = asqsz
        self.eflags = eflags
        self.trsvcid = trsvcid
        self.subnqn = subnqn
        self.traddr = traddr
        self.tsas = tsas

    @property
    def sectype(self) -> int:
        """TCP SECTYPE (TSAS byte 0) as ``TcpSecType`` or the raw value."""
        return _enum(TcpSecType, self.tsas[0] if self.tsas else 0)

    @property
    def secure_channel(self) -> int:
        return _enum(SecureChannel, self.treq & TREQ_SECURE_CHANNEL_MASK)

    @property
    def rdma_qptype(self) -> int:
        return _enum(RdmaQpType, _rdma(self.tsas)[0])

    @property
    def rdma_prtype(self) -> int:
        return _enum(RdmaPrType, _rdma(self.tsas)[1])

    @property
    def rdma_cms(self) -> int:
        return _enum(RdmaCms, _rdma(self.tsas)[2])

    @property
    def rdma_pkey(self) -> int:
        return _rdma(self.tsas)[3]


def _rdma(tsas: bytes) -> tuple[int, int, int, int]:
    return _RDMA_TSAS.unpack_from(bytes(tsas).ljust(_RDMA_TSAS.size, b"\x00"), 0)


def tcp_tsas(sectype: int = TcpSecType.NONE) -> bytes:
    """TSAS for a TCP entry."""
    return bytes([sectype]).ljust(TSAS_SIZE, b"\x00")


def rdma_tsas(qptype: int = RdmaQpType.CONNECTED, prtype: int = RdmaPrType.NOT_SPECIFIED,
              cms: int = RdmaCms.RDMA_CM, pkey: int = 0) -> bytes:
    """TSAS for an RDMA entry."""
    return _RDMA_TSAS.pack(qptype, prtype, cms, pkey).ljust(TSAS_SIZE, b"\x00")


def discovery_log_size(numrec: int) -> int:
    return DISCOVERY_HEADER_SIZE + numrec * DISCOVERY_ENTRY_SIZE


def decode_discovery_header(buf: Any) -> DiscoveryHeader:
    """The 1024-byte header (no policy: see :func:`decode_discovery_log`)."""
    n = len(buf)
    if n < DISCOVERY_HEADER_SIZE:
        raise PeerProtocolError(
            f"Discovery log header: {n} bytes, expected at least {DISCOVERY_HEADER_SIZE}"
        )
    return DiscoveryHeader(*_HEADER.unpack_from(buf, 0))


def decode_discovery_entry(buf: Any, offset: int = 0) -> DiscoveryLogEntry:
    if len(buf) - offset < DISCOVERY_ENTRY_SIZE:
        raise PeerProtocolError(
            f"Discovery log entry at byte {offset}: {max(len(buf) - offset, 0)} bytes, "
            f"expected {DISCOVERY_ENTRY_SIZE}"
        )
    (trtype, adrfam, subtype, treq, portid, cntlid, asqsz, eflags,
     trsvcid, subnqn, traddr, tsas) = _ENTRY.unpack_from(buf, offset)
    return DiscoveryLogEntry(
        trtype=_enum(TrType, trtype),
        adrfam=_enum(AdrFam, adrfam),
        subtype=_enum(SubType, subtype),
        treq=treq,
        portid=portid,
        cntlid=cntlid,
        asqsz=asqsz,
        eflags=eflags,
        trsvcid=_ascii(trsvcid),
        subnqn=_nqn(subnqn),
        traddr=_ascii(traddr),
        tsas=tsas,
    )


def check_record_count(count: int) -> None:
    """Refuse a NUMREC above :data:`MAX_DISCOVERY_RECORDS` (a host checks it
    before fetching the entries, as libnvmf does)."""
    if count > MAX_DISCOVERY_RECORDS:
        raise PeerProtocolError(
            f"Discovery log announces {count} records, more than the "
            f"{MAX_DISCOVERY_RECORDS} we accept"
        )


def decode_discovery_entries(buf: Any, count: int) -> list[DiscoveryLogEntry]:
    """``count`` entries from ``buf``, which starts at the first entry (log
    page offset 1024).  Refuses more than :data:`MAX_DISCOVERY_RECORDS`."""
    check_record_count(count)
    need = count * DISCOVERY_ENTRY_SIZE
    if len(buf) < need:
        raise PeerProtocolError(
            f"Discovery log entries: {len(buf)} bytes, expected {need} for {count} records"
        )
    return [decode_discovery_entry(buf, i * DISCOVERY_ENTRY_SIZE) for i in range(count)]


def decode_discovery_log(buf: Any) -> tuple[DiscoveryHeader, list[DiscoveryLogEntry]]:
    """A whole log page (header then NUMREC entries); RECFMT must be 0."""
    header = decode_discovery_header(buf)
    if header.recfmt != 0:
        raise PeerProtocolError(f"Discovery log record format {header.recfmt}, only 0 is known")
    entries = decode_discovery_entries(memoryview(buf)[DISCOVERY_HEADER_SIZE:], header.numrec)
    return header, entries


def _field(text: str, size: int, what: str, codec: str, nul_terminated: bool) -> bytes:
    try:
        raw = text.encode(codec, "surrogateescape")
    except (UnicodeError, AttributeError) as exc:
        raise LocalProtocolError(f"discovery entry {what}: {exc}") from None
    limit = size - 1 if nul_terminated else size
    if len(raw) > limit:
        raise LocalProtocolError(f"discovery entry {what} is {len(raw)} bytes, at most {limit}")
    return raw.ljust(size, b"\x00")


def encode_discovery_entry(e: DiscoveryLogEntry) -> bytes:
    tsas = bytes(e.tsas)
    if len(tsas) > TSAS_SIZE:
        raise LocalProtocolError(f"discovery entry TSAS is {len(tsas)} bytes, at most 256")
    try:
        return _ENTRY.pack(
            e.trtype, e.adrfam, e.subtype, e.treq, e.portid, e.cntlid, e.asqsz, e.eflags,
            _field(e.trsvcid, TRSVCID_SIZE, "trsvcid", "ascii", False),
            _field(e.subnqn, NQN_FIELD_SIZE, "subnqn", "utf-8", True),
            _field(e.traddr, TRADDR_SIZE, "traddr", "ascii", False),
            tsas.ljust(TSAS_SIZE, b"\x00"),
        )
    except (struct.error, TypeError) as exc:
        raise LocalProtocolError(f"cannot encode discovery entry: {exc}") from None


def encode_discovery_log(genctr: int, entries: list[DiscoveryLogEntry], recfmt: int = 0) -> bytes:
    """Header plus entries; NUMREC is ``len(entries)``."""
    if len(entries) > MAX_DISCOVERY_RECORDS:
        raise LocalProtocolError(
            f"{len(entries)} discovery records, hosts accept at most {MAX_DISCOVERY_RECORDS}"
        )
    header = bytearray(DISCOVERY_HEADER_SIZE)
    try:
        _HEADER.pack_into(header, 0, genctr, len(entries), recfmt)
    except struct.error as exc:
        raise LocalProtocolError(f"cannot encode discovery header: {exc}") from None
    return bytes(header) + b"".join(encode_discovery_entry(e) for e in entries)
