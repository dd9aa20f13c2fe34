"""NBD requests on their way to NVMe commands: the records the data path shares.

The NBD side (``nbd_server``) builds an :class:`NbdRequest` per request it
accepts; :func:`split` turns it into the NVMe command(s) that carry it
(:class:`Part`, the tag each command's queue-pair events come back with);
an I/O queue (``bridge.QueueWorker``) completes them and hands the request
back to its connection for the reply.  Request kinds are the NBD command
types (plain ints), as on the wire.
"""

from __future__ import annotations

from nvmecontrol.nbd import protocol as N
from nvmecontrol.wire.nvm import DSM_DEALLOCATE, FUA, NvmOpc, encode_dsm_ranges, encode_io

READ, WRITE, FLUSH, TRIM, ZERO = (N.CMD_READ, N.CMD_WRITE, N.CMD_FLUSH, N.CMD_TRIM,
                                  N.CMD_WRITE_ZEROES)
# The NBD commands the bridge carries out (DISC and unknown ones are not requests).
KINDS = frozenset({READ, WRITE, FLUSH, TRIM, ZERO})

_OPC_READ, _OPC_WRITE = int(NvmOpc.READ), int(NvmOpc.WRITE)
_OPC_FLUSH, _OPC_ZEROES, _OPC_DSM = (int(NvmOpc.FLUSH), int(NvmOpc.WRITE_ZEROES),
                                     int(NvmOpc.DATASET_MANAGEMENT))


class NbdRequest:
    """One NBD request on its way through the bridge."""

    __slots__ = ("conn", "cookie", "kind", "offset", "length", "remaining", "error", "buf",
                 "seq")

    def __init__(self, conn, cookie: int, kind: int, offset: int, length: int, seq: int = 0):
        self.conn = conn  # the NBD connection that answers it
        self.cookie = cookie
        self.kind = kind  # NBD command type: READ, WRITE, FLUSH, TRIM, ZERO
        self.offset = offset
        self.length = length
        self.remaining = 0  # parts not yet completed
        self.error = 0  # NBD errno of the first failed part
        self.buf = None  # read data: a view of one PDU, or gathered from several
        self.seq = seq  # arrival order, kept when parked commands are replayed


class Part:
    """One NVMe command of a request (the tag its queue-pair events carry)."""

    __slots__ = ("req", "opc", "nsid", "slba", "nlb", "cdw12", "data", "read_len", "buf_off",
                 "retries")

    def __init__(self, req: NbdRequest, opc: int, nsid: int, slba: int, nlb: int,
                 cdw12: int = 0, data=None, read_len: int = 0, buf_off: int = 0):
        self.req = req
        self.opc, self.nsid, self.slba, self.nlb, self.cdw12 = opc, nsid, slba, nlb, cdw12
        self.data = data  # write payload (owned: it must outlive a reconnect)
        self.read_len = read_len
        self.buf_off = buf_off  # where this part's read data go in req.buf
        self.retries = 0

    def submit(self, qp) -> int:
        """Queue this command on host queue pair ``qp``; returns its CID."""
        opc = self.opc
        if opc == _OPC_DSM:
            # One range in the data; NR 0 (one range), AD set.
            sqe = encode_io(opc, self.nsid, cdw10=0, cdw11=DSM_DEALLOCATE)
        else:
            sqe = encode_io(opc, self.nsid, self.slba, self.nlb, cdw12_flags=self.cdw12)
        return qp.submit(sqe, write_data=self.data, read_len=self.read_len, tag=self)


class Namespace:
    """What the bridge needs to map byte ranges of one namespace to LBAs."""

    __slots__ = ("nsid", "lba_size", "size", "max_cmd_bytes", "can_write_zeroes", "can_trim",
                 "read_only")

    def __init__(self, nsid: int, lba_size: int, size: int, *, max_cmd_bytes: int,
                 can_write_zeroes: bool, can_trim: bool, read_only: bool = False):
        self.nsid, self.lba_size, self.size = nsid, lba_size, size
        self.max_cmd_bytes = max_cmd_bytes
        self.can_write_zeroes, self.can_trim, self.read_only = can_write_zeroes, can_trim, read_only


# Write Zeroes and DSM ranges carry block counts; these bound one command.
_MAX_ZERO_BLOCKS = 0x10000
_MAX_TRIM_BLOCKS = 0xFFFFFFFF
# NLB of one Read/Write is 16 bits, 1's based.
_MAX_RW_BLOCKS = 0x10000


def split(req: NbdRequest, ns: Namespace, data=None, fua: bool = False) -> list[Part]:
    """The NVMe commands carrying ``req`` on ``ns`` (the caller checked bounds and alignment)."""
    kind = req.kind
    if kind == FLUSH:
        return [Part(req, _OPC_FLUSH, ns.nsid, 0, 0)]
    lba = ns.lba_size
    slba, blocks = req.offset // lba, req.length // lba
    if kind == READ or kind == WRITE:
        step = max(1, min(ns.max_cmd_bytes // lba, _MAX_RW_BLOCKS))
        if blocks <= step:  # the usual case: one command
            if kind == READ:
                return [Part(req, _OPC_READ, ns.nsid, slba, blocks, 0, None, req.length)]
            return [Part(req, _OPC_WRITE, ns.nsid, slba, blocks, FUA if fua else 0, data)]
        parts = []
        view = memoryview(data) if kind == WRITE else None  # slices share the payload
        for first in range(0, blocks, step):
            n = min(step, blocks - first)
            off, end = first * lba, (first + n) * lba
            if kind == READ:
                parts.append(Part(req, _OPC_READ, ns.nsid, slba + first, n, 0, None,
                                  end - off, off))
            else:
                parts.append(Part(req, _OPC_WRITE, ns.nsid, slba + first, n,
                                  FUA if fua else 0, view[off:end]))
        return parts
    if kind == ZERO:
        flags = FUA if fua else 0
        return [Part(req, _OPC_ZEROES, ns.nsid, slba + first,
                     min(_MAX_ZERO_BLOCKS, blocks - first), flags)
                for first in range(0, blocks, _MAX_ZERO_BLOCKS)]
    # TRIM: one Dataset Management range per part
    return [Part(req, _OPC_DSM, ns.nsid, slba + first, 0,
                 data=encode_dsm_ranges([(slba + first, min(_MAX_TRIM_BLOCKS, blocks - first))]))
            for first in range(0, blocks, _MAX_TRIM_BLOCKS)]
