"""Submission/completion queue entries and SGL descriptors.

NVMe Base Specification 2.0, 4.2 (SQE: 64 bytes), 4.6 (CQE: 16 bytes) and
4.3.2 (SGL descriptors).  Fabrics always uses SGLs (PSDT = 01b): the Linux
target rejects PRP-style commands outright.
"""

import struct
from collections import namedtuple

SQE_SIZE = 64
CQE_SIZE = 16

# PSDT bits (byte 1, bits 7:6) of the command flags: 01b = SGL for data.
PSDT_SGL = 0x40

# SGL descriptor type byte = (type << 4) | subtype (NVMe 2.0 figure 116-117).
SGL_DATA_BLOCK_OFFSET = 0x01  # Data Block, address is an offset into in-capsule data
SGL_TRANSPORT_DATA_BLOCK = 0x5A  # Transport SGL Data Block, transport specific

# SQE: OPC, flags(FUSE/PSDT), CID, NSID, CDW2, CDW3, MPTR, SGL1(addr,len,rsvd3,type), CDW10-15
_SQE = struct.Struct("<BBHIIIQQI3sB6I")
# CQE: DW0, DW1, SQHD, SQID, CID, status (phase bit 0, status field 15:1)
_CQE = struct.Struct("<IIHHHH")


# Records are collections.namedtuple classes, not typing.NamedTuple: typing
# costs start-up time, and every command that speaks NVMe loads this module.


class SGL(namedtuple("SGL", "addr length type")):
    """One SGL descriptor as carried in SQE DPTR (ints)."""

    __slots__ = ()


class SQE(namedtuple("SQE", "opc flags cid nsid cdw2 cdw3 mptr sgl cdw10 cdw11 cdw12 cdw13 "
                           "cdw14 cdw15",
                     defaults=(PSDT_SGL, 0, 0, 0, 0, 0, SGL(0, 0, SGL_TRANSPORT_DATA_BLOCK),
                               0, 0, 0, 0, 0, 0))):
    """A 64-byte submission queue entry, fields by spec mnemonic (ints; ``sgl`` an
    :class:`SGL`); only ``opc`` is required."""

    __slots__ = ()


class CQE(namedtuple("CQE", "dw0 dw1 sqhd sqid cid status", defaults=(0, 0, 0, 0, 0, 0))):
    """A 16-byte completion queue entry (ints, 0 by default).  ``status`` is the
    15-bit status field."""

    __slots__ = ()

    @property
    def result64(self) -> int:
        """DW0|DW1 as one 64-bit value (Property Get of an 8-byte register)."""
        return self.dw0 | (self.dw1 << 32)


def encode_sqe(sqe: SQE) -> bytearray:
    buf = bytearray(SQE_SIZE)
    pack_sqe_into(buf, 0, sqe)
    return buf


def pack_sqe_into(buf, offset: int, sqe: SQE) -> None:
    sgl = sqe.sgl
    _SQE.pack_into(
        buf, offset, sqe.opc, sqe.flags, sqe.cid, sqe.nsid, sqe.cdw2, sqe.cdw3, sqe.mptr,
        sgl.addr, sgl.length, b"\0\0\0", sgl.type,
        sqe.cdw10, sqe.cdw11, sqe.cdw12, sqe.cdw13, sqe.cdw14, sqe.cdw15,
    )


def decode_sqe(buf, offset: int = 0) -> SQE:
    (opc, flags, cid, nsid, cdw2, cdw3, mptr, addr, length, _r, stype,
     c10, c11, c12, c13, c14, c15) = _SQE.unpack_from(buf, offset)
    return SQE(opc, flags, cid, nsid, cdw2, cdw3, mptr, SGL(addr, length, stype),
               c10, c11, c12, c13, c14, c15)


def encode_cqe(cqe: CQE) -> bytes:
    return _CQE.pack(cqe.dw0, cqe.dw1, cqe.sqhd, cqe.sqid, cqe.cid, (cqe.status & 0x7FFF) << 1)


def decode_cqe(buf, offset: int = 0) -> CQE:
    dw0, dw1, sqhd, sqid, cid, raw = _CQE.unpack_from(buf, offset)
    return CQE(dw0, dw1, sqhd, sqid, cid, raw >> 1)


def with_cid(sqe_bytes: bytearray, cid: int) -> None:
    """Patch the CID of an encoded SQE in place (the queue pair assigns CIDs)."""
    struct.pack_into("<H", sqe_bytes, 2, cid)


def set_sgl(sqe_bytes: bytearray, sgl: SGL) -> None:
    """Patch SGL1 of an encoded SQE in place (the transport chooses the SGL)."""
    struct.pack_into("<QI3sB", sqe_bytes, 24, sgl.addr, sgl.length, b"\0\0\0", sgl.type)
