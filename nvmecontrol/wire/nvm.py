"""NVM command set I/O commands (NVM Command Set Specification 1.0, 3)."""

from __future__ import annotations

import struct
from enum import IntEnum
from collections import namedtuple

from nvmecontrol.wire.capsule import PSDT_SGL, SQE, SQE_SIZE


class NvmOpc(IntEnum):
    FLUSH = 0x00
    WRITE = 0x01
    READ = 0x02
    WRITE_ZEROES = 0x08
    DATASET_MANAGEMENT = 0x09


# Opcode bits 1:0 give the data direction (NVMe 2.0, figure 90).
def data_direction(opc: int) -> int:
    """0 none, 1 host-to-controller, 2 controller-to-host, 3 bidirectional."""
    return opc & 0x3


DSM_DEALLOCATE = 1 << 2  # CDW11 AD
WZ_DEAC = 1 << 25  # Write Zeroes CDW12: deallocate
FUA = 1 << 30
DSM_RANGE = struct.Struct("<IIQ")  # context attributes, NLB (1's based), SLBA
# Dataset Management holds at most 256 ranges (NR is 0's based in 8 bits).
DSM_MAX_RANGES = 256


Rw = namedtuple("Rw", "nsid slba nlb")  # nlb: 1's based block count (not typing: start-up)


# NLB is a 16-bit 0's based field: 1..65536 blocks per command.
MAX_NLB = 0x10000


# SQE records of the data path are built with tuple.__new__: the
# NamedTuple's keyword-taking __new__ costs a microsecond per command.
_tnew = tuple.__new__
_NO_SGL = SQE._field_defaults["sgl"]  # immutable, shared


def build_rw(opc: int, nsid: int, slba: int, nlb: int, fua: bool = False) -> SQE:
    if not 1 <= nlb <= MAX_NLB:
        # A larger count would spill into PRINFO/FUA/LR (CDW12 31:16).
        raise ValueError(f"block count {nlb} out of range 1..{MAX_NLB}")
    if not 0 <= slba < 1 << 64:
        raise ValueError(f"SLBA {slba} does not fit in 64 bits")
    # = SQE(opc, nsid=nsid, cdw10=slba & 0xFFFFFFFF, cdw11=slba >> 32,
    #       cdw12=(nlb - 1) | (FUA if fua else 0))
    return _tnew(SQE, (opc, PSDT_SGL, 0, nsid, 0, 0, 0, _NO_SGL, slba & 0xFFFFFFFF, slba >> 32,
                       (nlb - 1) | FUA if fua else nlb - 1, 0, 0, 0))


# Opcode, flags, NSID at 4, then CDW10-12 at 40: the fields an I/O command
# of the data path sets (CID and SGL are the queue pair's to fill).
_RW_HEAD = struct.Struct("<BB2xI")
_RW_CDW10_12 = struct.Struct("<III")


def encode_io(opc: int, nsid: int, slba: int = 0, nlb: int = 0, *, cdw12_flags: int = 0,
              cdw10: int | None = None, cdw11: int | None = None) -> bytearray:
    """The 64 SQE bytes of an I/O command, built without an SQE tuple (the hot path).

    With ``nlb`` (1's based) the command is a read/write-style one (SLBA in
    CDW10-11, NLB-1 in CDW12); ``cdw10``/``cdw11`` override for others (DSM).
    """
    raw = bytearray(SQE_SIZE)
    _RW_HEAD.pack_into(raw, 0, opc, PSDT_SGL, nsid)
    _RW_CDW10_12.pack_into(raw, 40, slba & 0xFFFFFFFF if cdw10 is None else cdw10,
                           slba >> 32 if cdw11 is None else cdw11,
                           ((nlb - 1) if nlb else 0) | cdw12_flags)
    return raw


_READ = NvmOpc.READ
_FLUSH = NvmOpc.FLUSH


def build_read(nsid: int, slba: int, nlb: int) -> SQE:
    return build_rw(_READ, nsid, slba, nlb)


def build_write(nsid: int, slba: int, nlb: int, fua: bool = False) -> SQE:
    return build_rw(NvmOpc.WRITE, nsid, slba, nlb, fua)


def build_write_zeroes(nsid: int, slba: int, nlb: int, deallocate: bool = False) -> SQE:
    sqe = build_rw(NvmOpc.WRITE_ZEROES, nsid, slba, nlb)
    return sqe._replace(cdw12=sqe.cdw12 | (WZ_DEAC if deallocate else 0))


def parse_rw(sqe: SQE) -> Rw:
    return Rw(sqe.nsid, sqe.cdw10 | sqe.cdw11 << 32, (sqe.cdw12 & 0xFFFF) + 1)


def build_flush(nsid: int) -> SQE:
    # = SQE(NvmOpc.FLUSH, nsid=nsid)
    return _tnew(SQE, (_FLUSH, PSDT_SGL, 0, nsid, 0, 0, 0, _NO_SGL, 0, 0, 0, 0, 0, 0))


def build_deallocate(nsid: int, count: int) -> SQE:
    """Dataset Management with AD set; the ``count`` ranges go in the data."""
    if not 1 <= count <= DSM_MAX_RANGES:
        raise ValueError(f"range count {count} out of range 1..{DSM_MAX_RANGES}")
    return SQE(NvmOpc.DATASET_MANAGEMENT, nsid=nsid, cdw10=count - 1, cdw11=DSM_DEALLOCATE)


def encode_dsm_ranges(ranges: list[tuple[int, int]]) -> bytes:
    """Data of a Dataset Management command from (slba, nlb) pairs."""
    return b"".join(DSM_RANGE.pack(0, nlb, slba) for slba, nlb in ranges)


def decode_dsm_ranges(buf, count: int) -> list[tuple[int, int]]:
    return [(slba, nlb) for _attr, nlb, slba in DSM_RANGE.iter_unpack(bytes(buf[:count * 16]))]
