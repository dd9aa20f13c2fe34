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
from nvmecontrol.wire.nvm import DSM_DEALLOCATE, FUA, NvmOpc, encode_dsm_ranges

READ, WRITE, FLUSH, TRIM, ZERO = (N.CMD_READ, N.CMD_WRITE, N.CMD_FLUSH, N.CMD_TRIM,
                                  N.CMD_WRITE_ZEROES)
# The NBD commands the bridge carries out (DISC and unknown ones are not requests).
KINDS = frozenset({READ, WRITE, FLUSH, TRIM, ZERO})

_OPC_READ, _OPC_WRITE = int(NvmOpc.READ), int(NvmOpc.WRITE)
_OPC_FLUSH, _OPC_ZEROES, _OPC_DSM = (int(NvmOpc.FLUSH), int(NvmOpc.WRITE_ZEROES),
                                     int(NvmOpc.DATASET_MANAGEMENT))


class Part:
    """One NVMe command of a request (the tag its queue-pair events carry)."""

    __slots__ = ("req", "opc", "nsid", "slba", "nlb", "cdw12", "data", "read_len", "buf_off",
                 "retries")

    def __init__(self, req: "NbdRequest", opc: int, nsid: int, slba: int, nlb: int,
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
            return qp.submit_io(opc, self.nsid, 0, 0, 0, write_data=self.data, tag=self,
                                cdw10=0, cdw11=DSM_DEALLOCATE)
        return qp.submit_io(opc, self.nsid, self.slba, self.nlb, self.cdw12,
                            write_data=self.data, read_len=self.read_len, tag=self)


class NbdRequest(Part):
    """One NBD request on its way through the bridge.

    A request that fits one NVMe command (nearly all of them) is its own
    part: one object per request on the hot path, not two.
    """

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
        self.retries = 0

    @property
    def req(self) -> "NbdRequest":
        # Not a slot holding self: that cycle would leave every request, and
        # the write payload it holds, to the garbage collector instead of
        # freeing it when its reply is sent (RSS grew 45 -> 220 MiB).
        return self


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


def split(req: NbdRequest, ns: Namespace, data=None, fua: bool = False,
          out: list | None = None) -> list:
    """The NVMe commands carrying ``req`` on ``ns``, appended to ``out`` (returned).

    The caller checked bounds and alignment; ``req.remaining`` is set to the
    number of commands.
    """
    if out is None:
        out = []
    kind = req.kind
    nsid = ns.nsid
    if kind == FLUSH:
        _as_command(req, _OPC_FLUSH, nsid, 0, 0, 0, None, 0)
        req.remaining = 1
        out.append(req)
        return out
    lba = ns.lba_size
    slba, blocks = req.offset // lba, req.length // lba
    first_new = len(out)
    if kind == READ or kind == WRITE:
        step = max(1, min(ns.max_cmd_bytes // lba, _MAX_RW_BLOCKS))
        if blocks <= step:  # the usual case: the request is its own command
            if kind == READ:
                _as_command(req, _OPC_READ, nsid, slba, blocks, 0, None, req.length)
            else:
                _as_command(req, _OPC_WRITE, nsid, slba, blocks, FUA if fua else 0, data, 0)
            req.remaining = 1
            out.append(req)
            return out
        view = memoryview(data) if kind == WRITE else None  # slices share the payload
        for first in range(0, blocks, step):
            n = min(step, blocks - first)
            off, end = first * lba, (first + n) * lba
            if kind == READ:
                out.append(Part(req, _OPC_READ, nsid, slba + first, n, 0, None, end - off, off))
            else:
                out.append(Part(req, _OPC_WRITE, nsid, slba + first, n, FUA if fua else 0,
                                view[off:end]))
    elif kind == ZERO:
        flags = FUA if fua else 0
        out.extend(Part(req, _OPC_ZEROES, nsid, slba + first,
                        min(_MAX_ZERO_BLOCKS, blocks - first), flags)
                   for first in range(0, blocks, _MAX_ZERO_BLOCKS))
    else:  # TRIM: one Dataset Management range per part
        out.extend(Part(req, _OPC_DSM, nsid, slba + first, 0,
                        data=encode_dsm_ranges([(slba + first,
                                                 min(_MAX_TRIM_BLOCKS, blocks - first))]))
                   for first in range(0, blocks, _MAX_TRIM_BLOCKS))
    req.remaining = len(out) - first_new
    return out


def _as_command(req: NbdRequest, opc: int, nsid: int, slba: int, nlb: int, cdw12: int, data,
                read_len: int) -> None:
    req.opc, req.nsid, req.slba, req.nlb, req.cdw12 = opc, nsid, slba, nlb, cdw12
    req.data, req.read_len, req.buf_off = data, read_len, 0
