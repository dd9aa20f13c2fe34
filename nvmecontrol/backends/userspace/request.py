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
# The commands whose CDW12 bits 15:0 are a block count.
_HAS_NLB = frozenset({_OPC_READ, _OPC_WRITE, _OPC_ZEROES})


class Part:
    """One NVMe command of a request: a record for ``HostQueuePair.queue_records``.

    The command is kept as the dwords it is sent with (CDW10-12: SLBA and
    NLB, 0's based, with the FUA flag), so a submission packs them as they
    are; the part is the tag its queue-pair events carry.
    """

    __slots__ = ("req", "opc", "nsid", "c10", "c11", "c12", "data", "read_len", "buf_off",
                 "retries")

    def __init__(self, req: "NbdRequest", opc: int, nsid: int, slba: int, nlb: int,
                 flags: int = 0, data=None, read_len: int = 0, buf_off: int = 0):
        self.req = req
        self.opc, self.nsid = opc, nsid
        self.c10, self.c11 = slba & 0xFFFFFFFF, slba >> 32
        self.c12 = flags | (nlb - 1 if nlb else 0)
        self.data = data  # write payload (owned: it must outlive a reconnect)
        self.read_len = read_len
        self.buf_off = buf_off  # where this part's read data go in req.buf
        self.retries = 0

    @property
    def slba(self) -> int:
        return self.c10 | self.c11 << 32

    @property
    def nlb(self) -> int:
        """Blocks (1's based); 0 for commands without a block count."""
        return (self.c12 & 0xFFFF) + 1 if self.opc in _HAS_NLB else 0


class NbdRequest(Part):
    """One NBD request on its way through the bridge.

    A request that fits one NVMe command (nearly all of them) is its own
    part: one object per request on the hot path, not two.
    """

    __slots__ = ("conn", "cookie", "kind", "offset", "length", "remaining", "error", "status",
                 "buf", "seq")

    def __init__(self, conn, cookie: int, kind: int, offset: int, length: int, seq: int = 0):
        self.conn = conn  # the NBD connection that answers it
        self.cookie = cookie
        self.kind = kind  # NBD command type: READ, WRITE, FLUSH, TRIM, ZERO
        self.offset = offset
        self.length = length
        self.remaining = 0  # parts not yet completed
        self.error = 0  # NBD errno of the first failed part
        self.status = 0  # its NVMe status (the control socket's I/O passthrough reports it)
        self.buf = None  # read data: a view of one PDU, or gathered from several
        self.seq = seq  # arrival order, kept when parked commands are replayed
        self.retries = 0
        # The command fields are split()'s to set.
        self.data, self.read_len, self.buf_off = None, 0, 0

    @property
    def req(self) -> "NbdRequest":
        # Not a slot holding self: that cycle would leave every request, and
        # the write payload it holds, to the garbage collector instead of
        # freeing it when its reply is sent (RSS grew 45 -> 220 MiB).
        return self


class Namespace:
    """What the bridge needs to map byte ranges of one namespace to LBAs."""

    __slots__ = ("nsid", "lba_size", "size", "max_cmd_bytes", "can_write_zeroes", "can_trim",
                 "read_only", "rw_step", "max_rw_bytes", "retired")

    def __init__(self, nsid: int, lba_size: int, size: int, *, max_cmd_bytes: int,
                 can_write_zeroes: bool, can_trim: bool, read_only: bool = False):
        self.nsid, self.lba_size, self.size = nsid, lba_size, size
        self.max_cmd_bytes = max_cmd_bytes
        self.can_write_zeroes, self.can_trim, self.read_only = can_write_zeroes, can_trim, read_only
        # Blocks and bytes one Read/Write carries at most.
        self.rw_step = max(1, min(max_cmd_bytes // lba_size, _MAX_RW_BLOCKS))
        self.max_rw_bytes = self.rw_step * lba_size
        # Removed or reformatted at the controller: its NBD clients are let go.
        self.retired = False


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
    flags = FUA if fua else 0
    if kind == READ or kind == WRITE:
        lba = ns.lba_size
        length = req.length
        if length <= ns.max_rw_bytes:
            # The usual case, on the hot path: the request is its own command.
            slba = req.offset // lba
            req.nsid = ns.nsid
            req.c10, req.c11 = slba & 0xFFFFFFFF, slba >> 32
            req.c12 = flags | (length // lba - 1)
            if kind == READ:
                req.opc, req.read_len = _OPC_READ, length
            else:
                req.opc, req.data = _OPC_WRITE, data
            req.remaining = 1
            out.append(req)
            return out
    first_new = len(out)
    nsid = ns.nsid
    if kind == FLUSH:
        req.opc, req.nsid, req.c10, req.c11, req.c12 = _OPC_FLUSH, nsid, 0, 0, 0
        out.append(req)
    elif kind == READ or kind == WRITE:
        slba, blocks = req.offset // lba, req.length // lba
        step = ns.rw_step
        view = memoryview(data) if kind == WRITE else None  # slices share the payload
        for first in range(0, blocks, step):
            n = min(step, blocks - first)
            off, end = first * lba, (first + n) * lba
            if kind == READ:
                out.append(Part(req, _OPC_READ, nsid, slba + first, n, 0, None, end - off, off))
            else:
                out.append(Part(req, _OPC_WRITE, nsid, slba + first, n, flags, view[off:end]))
    elif kind == ZERO:
        slba, blocks = req.offset // ns.lba_size, req.length // ns.lba_size
        out.extend(Part(req, _OPC_ZEROES, nsid, slba + first,
                        min(_MAX_ZERO_BLOCKS, blocks - first), flags)
                   for first in range(0, blocks, _MAX_ZERO_BLOCKS))
    else:  # TRIM: one Dataset Management range per part
        slba, blocks = req.offset // ns.lba_size, req.length // ns.lba_size
        for first in range(0, blocks, _MAX_TRIM_BLOCKS):
            p = Part(req, _OPC_DSM, nsid, 0, 0, data=encode_dsm_ranges(
                [(slba + first, min(_MAX_TRIM_BLOCKS, blocks - first))]))
            # NR 0 (one range) in CDW10, Attribute - Deallocate in CDW11.
            p.c10, p.c11 = 0, DSM_DEALLOCATE
            out.append(p)
    req.remaining = len(out) - first_new
    return out
