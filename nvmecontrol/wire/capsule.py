"""Submission/completion queue entries and SGL descriptors.

NVMe Base Specification 2.0, 4.2 (SQE: 64 bytes), 4.6 (CQE: 16 bytes) and
4.3.2 (SGL descriptors).  Fabrics always uses SGLs (PSDT = 01b): the Linux
target rejects PRP-style commands outright.
"""

import struct
from typing import NamedTuple

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


class SGL(NamedTuple):
    """One SGL descriptor as carried in SQE DPTR."""

    addr: int
    length: int
    type: int


class SQE(NamedTuple):
    """A 64-byte submission queue entry, fields by spec mnemonic."""

    opc: int
    flags: int = PSDT_SGL
    cid: int = 0
    nsid: int = 0
    cdw2: int = 0
    cdw3: int = 0
    mptr: int = 0
    sgl: SGL = SGL(0, 0, SGL_TRANSPORT_DATA_BLOCK)
    cdw10: int = 0
    cdw11: int = 0
    cdw12: int = 0
    cdw13: int = 0
    cdw14: int = 0
    cdw15: int = 0


class CQE(NamedTuple):
    """A 16-byte completion queue entry.  ``status`` is the 15-bit status field."""

    dw0: int = 0
    dw1: int = 0
    sqhd: int = 0
    sqid: int = 0
    cid: int = 0
    status: int = 0

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
