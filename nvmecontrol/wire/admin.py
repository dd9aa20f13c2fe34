"""Admin command builders and parsers (NVMe Base 2.0, 5).

Builders return :class:`~nvmecontrol.wire.capsule.SQE` records with CID 0;
the queue pair assigns the CID and the SGL when the command is submitted.
"""

from __future__ import annotations

from enum import IntEnum
from collections import namedtuple

from nvmecontrol.wire.capsule import SQE


class AdminOpc(IntEnum):
    GET_LOG_PAGE = 0x02
    IDENTIFY = 0x06
    ABORT = 0x08
    SET_FEATURES = 0x09
    GET_FEATURES = 0x0A
    ASYNC_EVENT_REQUEST = 0x0C
    KEEP_ALIVE = 0x18
    FABRICS = 0x7F


class Feature(IntEnum):
    ARBITRATION = 0x01
    POWER_MANAGEMENT = 0x02
    TEMPERATURE_THRESHOLD = 0x04
    VOLATILE_WRITE_CACHE = 0x06
    NUMBER_OF_QUEUES = 0x07
    INTERRUPT_COALESCING = 0x08
    ASYNC_EVENT_CONFIG = 0x0B
    KEEP_ALIVE_TIMER = 0x0F
    HOST_BEHAVIOR_SUPPORT = 0x16


# Asynchronous event types and the notice we raise/understand (NVMe 2.0, 5.2).
AER_TYPE_NOTICE = 0x2
AER_NOTICE_NS_ATTR_CHANGED = 0x00
# Async Event Configuration bit enabling Namespace Attribute Notices.
AEC_NS_ATTR = 1 << 8


def build_identify(cns: int, nsid: int = 0, cntid: int = 0, csi: int = 0) -> SQE:
    return SQE(AdminOpc.IDENTIFY, nsid=nsid, cdw10=cns | (cntid << 16), cdw11=csi << 24)


class IdentifyArgs(namedtuple("IdentifyArgs", "cns cntid nsid csi")):
    """An Identify command's arguments (ints)."""

    __slots__ = ()


def parse_identify(sqe: SQE) -> IdentifyArgs:
    return IdentifyArgs(sqe.cdw10 & 0xFF, sqe.cdw10 >> 16, sqe.nsid, sqe.cdw11 >> 24)


class GetLogPage(namedtuple("GetLogPage", "lid length offset lsp lsi rae nsid csi",
                             defaults=(0, 0, 0, False, 0xFFFFFFFF, 0))):
    """A Get Log Page's arguments: ``length`` and ``offset`` in bytes (length a
    multiple of 4, offset 64-bit), ``rae`` a bool, the rest ints."""

    __slots__ = ()


def build_get_log_page(g: GetLogPage) -> SQE:
    if g.length <= 0 or g.length % 4:
        raise ValueError(f"log page length {g.length} is not a positive multiple of 4")
    if g.offset % 4:
        raise ValueError(f"log page offset {g.offset} is not dword aligned")
    numd = g.length // 4 - 1  # 0's based dword count, split in NUMDL/NUMDU
    return SQE(AdminOpc.GET_LOG_PAGE, nsid=g.nsid,
               cdw10=g.lid | (g.lsp & 0x7F) << 8 | int(g.rae) << 15 | (numd & 0xFFFF) << 16,
               cdw11=(numd >> 16) | g.lsi << 16,
               cdw12=g.offset & 0xFFFFFFFF, cdw13=g.offset >> 32, cdw14=g.csi << 24)


def parse_get_log_page(sqe: SQE) -> GetLogPage:
    numd = (sqe.cdw10 >> 16) | (sqe.cdw11 & 0xFFFF) << 16
    return GetLogPage(lid=sqe.cdw10 & 0xFF, length=(numd + 1) * 4,
                      offset=sqe.cdw12 | sqe.cdw13 << 32, lsp=(sqe.cdw10 >> 8) & 0x7F,
                      lsi=sqe.cdw11 >> 16, rae=bool(sqe.cdw10 >> 15 & 1), nsid=sqe.nsid,
                      csi=sqe.cdw14 >> 24)


def build_set_features(fid: int, cdw11: int = 0, nsid: int = 0, save: bool = False) -> SQE:
    return SQE(AdminOpc.SET_FEATURES, nsid=nsid, cdw10=fid | int(save) << 31, cdw11=cdw11)


def build_get_features(fid: int, sel: int = 0, nsid: int = 0, cdw11: int = 0) -> SQE:
    return SQE(AdminOpc.GET_FEATURES, nsid=nsid, cdw10=fid | (sel & 7) << 8, cdw11=cdw11)


def feature_id(sqe: SQE) -> int:
    return sqe.cdw10 & 0xFF


def num_queues_value(nsqr: int, ncqr: int) -> int:
    """CDW11 / completion DW0 of Number of Queues: both counts 0's based."""
    return (nsqr - 1) | (ncqr - 1) << 16


def parse_num_queues(value: int) -> tuple[int, int]:
    """(submission, completion) queue counts, 1's based, from a 0's based pair."""
    return (value & 0xFFFF) + 1, (value >> 16) + 1


def build_set_num_queues(count: int) -> SQE:
    return build_set_features(Feature.NUMBER_OF_QUEUES, num_queues_value(count, count))


# Host Behavior Support (NVMe Base 2.0, 5.27.1.18): a 512-byte structure
# carried as data by Set and Get Features 16h.  Byte 0 is ACRE, Advanced
# Command Retry Enable: 1 lets the controller set the CRD field of a status
# (the host then waits CRDT1..3 of Identify Controller before a retry) and
# return Command Interrupted; 0 disables both; other values are reserved.
HOST_BEHAVIOR_SIZE = 512
ACRE_ENABLED = 1


def encode_host_behavior(*, acre: bool) -> bytes:
    return bytes([ACRE_ENABLED if acre else 0]).ljust(HOST_BEHAVIOR_SIZE, b"\0")


def host_behavior_acre(data) -> int:
    """The ACRE byte of a Host Behavior Support structure (0, 1, or a reserved value)."""
    if len(data) < HOST_BEHAVIOR_SIZE:
        raise ValueError(f"Host Behavior Support data of {len(data)} bytes, "
                         f"expected {HOST_BEHAVIOR_SIZE}")
    return data[0]


def build_keep_alive() -> SQE:
    return SQE(AdminOpc.KEEP_ALIVE)


def build_async_event_request() -> SQE:
    return SQE(AdminOpc.ASYNC_EVENT_REQUEST)


class AsyncEvent(namedtuple("AsyncEvent", "type info lid")):
    """An Asynchronous Event's completion dword 0, split (ints)."""

    __slots__ = ()


def aer_dw0(ev: AsyncEvent) -> int:
    return ev.type | ev.info << 8 | ev.lid << 16


def parse_aer(dw0: int) -> AsyncEvent:
    return AsyncEvent(dw0 & 0x7, (dw0 >> 8) & 0xFF, (dw0 >> 16) & 0xFF)
