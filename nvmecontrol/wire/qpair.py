"""The NVMe/TCP queue-pair state machine, for both roles, with no I/O.

NVMe/TCP 1.0, 3.3-3.6.  Bytes go in (through the decoder's buffer), events
come out, and the buffers to transmit accumulate in ``outgoing`` for one
``sendmsg``.  Rules enforced here:

* Connection initialization: the host sends ICReq first, the controller
  answers ICResp; nothing else may cross before that (PDU Sequence Error).
  The controller grants digests only if the host asked for them and the
  controller allows them.
* Command identifiers: the host allocates CIDs from a pool sized by the
  queue (so a full queue cannot be overrun); a response or data PDU for a
  CID that is not outstanding is a protocol error.
* Data transfer: writes up to the in-capsule limit travel in the
  CapsuleCmd; larger ones wait for R2T and go out as H2CData PDUs of at most
  MAXH2CDATA bytes, LAST_PDU on the final one of each R2T.  Reads arrive as
  C2HData within the command's length; SUCCESS on the last one completes
  the command without a CapsuleResp.
* SQ flow control: the controller reports SQHD in every response; the host
  tracks it unless flow control was disabled at Connect.
* TermReq: a fatal error ends the connection; ``terminate`` queues our
  TermReq, a received one raises :class:`ConnectionLost`.

Errors found in what the peer sent raise :class:`PeerProtocolError`, whose
``fes``/``fei`` say what TermReq to send back (``termreq_for``).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from nvmecontrol.errors import ConnectionLost, LocalProtocolError, PeerProtocolError
from nvmecontrol.wire import pdu as P
from nvmecontrol.wire.status import SC_TRANSIENT_TRANSPORT_ERROR, SCT_GENERIC, make_status
from nvmecontrol.wire.capsule import (CQE, SGL_DATA_BLOCK_OFFSET, SGL_TRANSPORT_DATA_BLOCK,
                                      SQE, decode_cqe, encode_cqe, encode_sqe)

# Admin queues accept up to 8 KiB of in-capsule data (NVMe/TCP 3.3.2: the
# admin queue's ICDOFF/IOCCSZ do not apply; 8 KiB is the minimum supported).
ADMIN_ICD = 8192
# Largest single transfer a host queue pair accepts; bounds C2HData PLEN
# against a hostile controller.  Commands above it are split by callers.
MAX_TRANSFER = 8 << 20
DEFAULT_MAXH2CDATA = 0x20000
# Generic status Transient Transport Error (SCT 0, SC 0x22): a command whose
# data failed its digest (NVMe/TCP 3.6.2.11); the host may retry it.
STATUS_TRANSIENT_TRANSPORT = make_status(SCT_GENERIC, SC_TRANSIENT_TRANSPORT_ERROR)


class Established(NamedTuple):
    """Connection initialization finished with these parameters."""

    hdgst: bool
    ddgst: bool
    cpda: int
    hpda: int
    maxh2cdata: int
    maxr2t: int


class Completion(NamedTuple):
    """A command completed (CapsuleResp, or C2HData with SUCCESS).

    ``tag`` is what the submitter attached to the command: resolving it here,
    while the CID is still reserved, means a caller that resubmits while
    walking a batch of events can never confuse a reused CID.
    """

    cid: int
    cqe: CQE
    tag: object = None


class ReadData(NamedTuple):
    """C2HData for a command submitted with ``read_len`` and no buffer.

    ``data`` is a view into the decoder's buffer, valid until the next
    receive: forward it (or copy it) before reading from the socket again.
    """

    cid: int
    offset: int
    data: memoryview
    tag: object = None


class Command(NamedTuple):
    """A command arrived at the controller; ``data`` is in-capsule data or None."""

    cid: int
    sqe: bytes
    data: memoryview | bytes | None
    digest_error: bool = False


class WriteData(NamedTuple):
    """H2CData for a command the controller asked data for (after R2T)."""

    cid: int
    offset: int
    data: memoryview | bytes
    done: bool  # all requested data has now arrived
    digest_error: bool = False


def termreq_for(err: PeerProtocolError, offending: bytes, *, role: str) -> list:
    """Encoded TermReq answering ``err`` (to send before closing)."""
    fes = err.fes if err.fes is not None else P.FES.INVALID_HEADER_FIELD
    return [P.encode_termreq(P.TermReq(fes, err.fei, bytes(offending[:P.TERM_MAX_DATA]),
                                       h2c=(role == P.ROLE_HOST)))]


# The SGL descriptor at SQE bytes 24-39: address, length, 3 reserved bytes
# and the descriptor type byte.
_SGL_AT_24 = struct.Struct("<QI3xB")


class _Base:
    role: str

    def __init__(self, decoder: P.PduDecoder):
        self.decoder = decoder
        self.outgoing: list = []  # buffers for the next sendmsg
        self.established: Established | None = None
        self.closed = False
        self.hdgst = False
        self.ddgst = False
        self.pda_tx = 0  # alignment the peer asked for our data

    def take_outgoing(self) -> list:
        out, self.outgoing = self.outgoing, []
        return out

    def terminate(self, fes: int, fei: int = 0, offending: bytes = b"") -> None:
        """Queue our TermReq; nothing else is sent on this connection afterwards."""
        if not self.closed:
            self.outgoing.append(P.encode_termreq(
                P.TermReq(fes, fei, offending[:P.TERM_MAX_DATA], h2c=(self.role == P.ROLE_HOST))))
        self.closed = True

    def _pdus(self):
        """Every complete PDU received so far.

        The decoder stops after an IC PDU so that the negotiated digests and
        PDA apply to what follows; the caller handles the IC PDU (which
        configures the decoder) before this generator resumes and decodes
        the rest of the buffer, so bytes already received are not left
        waiting for the next read.
        """
        while True:
            pdus = self.decoder.decode()
            yield from pdus
            if not pdus or type(pdus[-1]) not in (P.ICReq, P.ICResp):
                return

    def _apply(self, est: Established, pda_rx: int, pda_tx: int) -> None:
        self.established = est
        self.hdgst, self.ddgst = est.hdgst, est.ddgst
        self.pda_tx = pda_tx
        d = self.decoder
        d.connected, d.hdgst, d.ddgst, d.pda = True, est.hdgst, est.ddgst, pda_rx

    def _termreq_received(self, t: P.TermReq):
        self.closed = True
        try:
            name = P.FES(t.fes).name.lower().replace("_", " ")
        except ValueError:
            name = f"FES 0x{t.fes:x}"
        return ConnectionLost(f"peer terminated the connection: {name} (FEI {t.fei})")


class _Pending:
    """Host-side state of one outstanding command."""

    __slots__ = ("read_into", "read_len", "received", "write_data", "digest_error", "tag")

    def __init__(self, read_into, read_len, write_data, tag):
        self.digest_error = False
        self.read_into = read_into
        self.read_len = len(read_into) if read_into is not None else read_len
        self.received = 0
        self.write_data = write_data
        self.tag = tag


class HostQueuePair(_Base):
    """The host end of one NVMe/TCP connection (admin or I/O queue)."""

    role = P.ROLE_HOST

    def __init__(self, *, queue_size: int, hdgst: bool = False, ddgst: bool = False,
                 hpda: int = 0, maxr2t: int = 0, max_icd: int = ADMIN_ICD,
                 buffer_size: int = 1 << 20):
        super().__init__(P.PduDecoder(P.ROLE_HOST, buffer_size=buffer_size,
                                      max_data=MAX_TRANSFER))
        if not 2 <= queue_size <= 65535:
            raise ValueError(f"queue size {queue_size} out of range 2..65535")
        self.want_hdgst, self.want_ddgst, self.hpda, self.maxr2t = hdgst, ddgst, hpda, maxr2t
        self.max_icd = max_icd
        self.maxh2cdata = DEFAULT_MAXH2CDATA
        self.queue_size = queue_size
        # A queue of N entries holds at most N-1 commands (NVMe 2.0, 3.3.1.5).
        self._free_cids = list(range(queue_size - 2, -1, -1))
        self._pending: list[_Pending | None] = [None] * (queue_size - 1)
        self.sq_flow_control = True
        self.sqhd = 0
        self.sqtail = 0

    # -- connection initialization --
    def start(self) -> None:
        dgst = (P.DGST_HDGST if self.want_hdgst else 0) | (P.DGST_DDGST if self.want_ddgst else 0)
        self.outgoing.append(P.encode_icreq(P.ICReq(self.hpda, dgst, self.maxr2t)))

    def _on_icresp(self, r: P.ICResp) -> Established:
        asked = (P.DGST_HDGST if self.want_hdgst else 0) | (P.DGST_DDGST if self.want_ddgst else 0)
        if r.dgst & ~asked:
            raise PeerProtocolError("ICResp enables a digest the host did not ask for",
                                    P.FES.INVALID_HEADER_FIELD, 11)
        self.maxh2cdata = r.maxh2cdata
        est = Established(bool(r.dgst & P.DGST_HDGST), bool(r.dgst & P.DGST_DDGST),
                          r.cpda, self.hpda, r.maxh2cdata, self.maxr2t)
        self._apply(est, pda_rx=self.hpda, pda_tx=r.cpda)
        return est

    # -- handoff to another process (FreeBSD's qpair nvlist, in spirit) --
    def handoff_state(self) -> dict:
        """What another process needs to carry on with this queue pair's socket.

        Only an idle queue pair can be handed over: no command outstanding,
        nothing received but undecoded, nothing waiting to be sent.
        """
        est = self.established
        if est is None or self.closed or self.outstanding or self.decoder.pending or self.outgoing:
            raise LocalProtocolError("only an idle, connected queue pair can be handed over")
        return {"queue_size": self.queue_size, "max_icd": self.max_icd, "hdgst": est.hdgst,
                "ddgst": est.ddgst, "cpda": est.cpda, "hpda": est.hpda,
                "maxh2cdata": est.maxh2cdata, "maxr2t": est.maxr2t,
                "sq_flow_control": self.sq_flow_control, "sqhd": self.sqhd, "sqtail": self.sqtail}

    @classmethod
    def adopt(cls, state: dict, *, buffer_size: int = 1 << 20) -> "HostQueuePair":
        """The queue pair described by :meth:`handoff_state`, already established."""
        qp = cls(queue_size=state["queue_size"], hdgst=state["hdgst"], ddgst=state["ddgst"],
                 hpda=state["hpda"], maxr2t=state["maxr2t"], max_icd=state["max_icd"],
                 buffer_size=buffer_size)
        qp.maxh2cdata = state["maxh2cdata"]
        est = Established(state["hdgst"], state["ddgst"], state["cpda"], state["hpda"],
                          state["maxh2cdata"], state["maxr2t"])
        qp._apply(est, pda_rx=state["hpda"], pda_tx=state["cpda"])
        qp.sq_flow_control = state["sq_flow_control"]
        qp.sqhd, qp.sqtail = state["sqhd"], state["sqtail"]
        return qp

    # -- submission --
    @property
    def outstanding(self) -> int:
        return self.queue_size - 1 - len(self._free_cids)

    def can_submit(self) -> bool:
        if not self._free_cids:
            return False
        return not self.sq_flow_control or (self.sqtail + 1) % self.queue_size != self.sqhd

    def submit(self, sqe: SQE | bytearray, *, write_data=None, read_into=None, read_len: int = 0,
               tag=None) -> int:
        """Queue a command; returns its CID.

        ``sqe`` is an SQE or its 64 encoded bytes (a bytearray this call may
        change: the data path builds them directly).  ``write_data``
        (bytes-like) goes in-capsule when it fits, else after R2T;
        ``read_into`` (writable memoryview) receives C2HData, or, with
        ``read_len`` instead, the data arrive as :class:`ReadData` events
        (zero-copy).  ``tag`` comes back in the command's events.
        """
        if self.established is None or self.closed:
            raise LocalProtocolError("queue pair is not connected")
        if not self.can_submit():
            raise LocalProtocolError("submission queue is full")
        cid = self._free_cids.pop()
        raw = sqe if type(sqe) is bytearray else encode_sqe(sqe)
        raw[2] = cid & 0xFF
        raw[3] = cid >> 8
        icd = None
        wlen = len(write_data) if write_data is not None else 0
        if wlen and wlen <= self.max_icd:
            _SGL_AT_24.pack_into(raw, 24, 0, wlen, SGL_DATA_BLOCK_OFFSET)
            icd, held = write_data, None
        else:
            length = wlen or (len(read_into) if read_into is not None else read_len)
            _SGL_AT_24.pack_into(raw, 24, 0, length, SGL_TRANSPORT_DATA_BLOCK)
            held = write_data if wlen else None
        self._pending[cid] = _Pending(read_into, read_len, held, tag)
        self.sqtail = (self.sqtail + 1) % self.queue_size
        self.outgoing.extend(P.encode_capsule_cmd(raw, icd, hdgst=self.hdgst,
                                                  ddgst=self.ddgst, pda=self.pda_tx))
        return cid

    def outstanding_tags(self) -> list:
        """Tags of every command not completed (to resubmit after a lost connection)."""
        return [p.tag for p in self._pending if p is not None and p.tag is not None]

    def _pending_for(self, cid: int, what: str) -> _Pending:
        p = self._pending[cid] if cid < len(self._pending) else None
        if p is None:
            raise PeerProtocolError(f"{what} for command {cid:#x}, which is not outstanding",
                                    P.FES.INVALID_HEADER_FIELD, 8)
        return p

    def _complete(self, cid: int):
        """Free ``cid``; returns the command's tag."""
        tag = self._pending[cid].tag
        self._pending[cid] = None
        self._free_cids.append(cid)
        return tag

    # -- receive --
    def receive(self) -> list:
        """Process every complete PDU received so far; returns events."""
        events = []
        for pdu in self._pdus():
            t = type(pdu)
            if t is P.CapsuleResp:
                cqe = decode_cqe(pdu.cqe)
                if self._pending_for(cqe.cid, "response").digest_error and not cqe.status:
                    cqe = cqe._replace(status=STATUS_TRANSIENT_TRANSPORT)
                if self.sq_flow_control:
                    self.sqhd = cqe.sqhd
                events.append(Completion(cqe.cid, cqe, self._complete(cqe.cid)))
            elif t is P.C2HData:
                events += self._on_c2h(pdu)
            elif t is P.R2T:
                self._on_r2t(pdu)
            elif t is P.ICResp:
                events.append(self._on_icresp(pdu))
            else:  # TermReq
                raise self._termreq_received(pdu)
        return events

    def _on_c2h(self, d: P.C2HData) -> list:
        p = self._pending_for(d.cccid, "C2HData")
        n = len(d.data)
        if d.datao != p.received or d.datao + n > p.read_len:
            raise PeerProtocolError(
                f"C2HData offset {d.datao}+{n} outside the expected {p.received}..{p.read_len}",
                P.FES.DATA_OUT_OF_RANGE, 12)
        if p.read_into is not None:
            p.read_into[d.datao:d.datao + n] = d.data
            out = []
        else:
            out = [ReadData(d.cccid, d.datao, d.data, p.tag)]
        p.received += n
        p.digest_error |= d.digest_error
        if d.success:
            if p.received != p.read_len:
                raise PeerProtocolError("C2HData SUCCESS before all data was sent",
                                        P.FES.INVALID_HEADER_FIELD, 1)
            # SUCCESS implies SQ flow control is off, so SQHD is not tracked.
            status = STATUS_TRANSIENT_TRANSPORT if p.digest_error else 0
            out.append(Completion(d.cccid, CQE(cid=d.cccid, status=status), self._complete(d.cccid)))
        return out

    def _on_r2t(self, r: P.R2T) -> None:
        p = self._pending_for(r.cccid, "R2T")
        data = p.write_data
        if data is None or r.r2tl == 0 or r.r2to + r.r2tl > len(data):
            raise PeerProtocolError(f"R2T {r.r2to}+{r.r2tl} outside the command's write data",
                                    P.FES.DATA_OUT_OF_RANGE, 12)
        view = memoryview(data)
        end = r.r2to + r.r2tl
        off = r.r2to
        while off < end:
            n = min(self.maxh2cdata, end - off)
            self.outgoing.extend(P.encode_h2c_data(
                P.H2CData(r.cccid, r.ttag, off, view[off:off + n], last=(off + n == end)),
                hdgst=self.hdgst, ddgst=self.ddgst, pda=self.pda_tx))
            off += n


class _Transfer:
    """Controller-side state of an R2T-driven write."""

    __slots__ = ("ttag", "expected", "received")

    def __init__(self, ttag: int, expected: int):
        self.ttag, self.expected, self.received = ttag, expected, 0


class ControllerQueuePair(_Base):
    """The controller end of one NVMe/TCP connection."""

    role = P.ROLE_CONTROLLER

    def __init__(self, *, allow_hdgst: bool = True, allow_ddgst: bool = True, cpda: int = 0,
                 maxh2cdata: int = DEFAULT_MAXH2CDATA, max_icd: int = ADMIN_ICD,
                 max_transfer: int = MAX_TRANSFER, buffer_size: int = 1 << 20):
        super().__init__(P.PduDecoder(P.ROLE_CONTROLLER, buffer_size=buffer_size,
                                      max_data=max(max_icd, maxh2cdata)))
        self.allow_hdgst, self.allow_ddgst, self.cpda = allow_hdgst, allow_ddgst, cpda
        self.maxh2cdata, self.max_icd, self.max_transfer = maxh2cdata, max_icd, max_transfer
        self.sqsize = 32  # set from Connect
        self.sqhd = 0
        self.sq_flow_control = True  # False once Connect disables it
        self._transfers: dict[int, _Transfer] = {}
        self._next_ttag = 0
        self.commands_received = 0

    def receive(self) -> list:
        events = []
        for pdu in self._pdus():
            t = type(pdu)
            if t is P.CapsuleCmd:
                if pdu.data is not None and len(pdu.data) > self.max_icd:
                    raise PeerProtocolError(
                        f"{len(pdu.data)} bytes of in-capsule data exceed {self.max_icd}",
                        P.FES.DATA_LIMIT_EXCEEDED, 4)
                self.sqhd = (self.sqhd + 1) % self.sqsize
                self.commands_received += 1
                cid = int.from_bytes(pdu.sqe[2:4], "little")
                events.append(Command(cid, pdu.sqe, pdu.data, pdu.digest_error))
            elif t is P.H2CData:
                events.append(self._on_h2c(pdu))
            elif t is P.ICReq:
                events.append(self._on_icreq(pdu))
            else:
                raise self._termreq_received(pdu)
        return events

    def _on_icreq(self, r: P.ICReq) -> Established:
        dgst = r.dgst & ((P.DGST_HDGST if self.allow_hdgst else 0)
                         | (P.DGST_DDGST if self.allow_ddgst else 0))
        self.outgoing.append(P.encode_icresp(P.ICResp(self.cpda, dgst, self.maxh2cdata)))
        est = Established(bool(dgst & P.DGST_HDGST), bool(dgst & P.DGST_DDGST),
                          self.cpda, r.hpda, self.maxh2cdata, r.maxr2t)
        self._apply(est, pda_rx=self.cpda, pda_tx=r.hpda)
        return est

    def _on_h2c(self, d: P.H2CData) -> WriteData:
        x = self._transfers.get(d.cccid)
        if x is None or x.ttag != d.ttag:
            raise PeerProtocolError(f"H2CData for command {d.cccid:#x} without a matching R2T",
                                    P.FES.INVALID_HEADER_FIELD, 8 if x is None else 10)
        n = len(d.data)
        if d.datao != x.received or d.datao + n > x.expected:
            raise PeerProtocolError(
                f"H2CData offset {d.datao}+{n} outside the requested 0..{x.expected}",
                P.FES.DATA_OUT_OF_RANGE, 12)
        if n > self.maxh2cdata:
            raise PeerProtocolError(f"H2CData of {n} bytes exceeds MAXH2CDATA",
                                    P.FES.DATA_LIMIT_EXCEEDED, 16)
        x.received += n
        done = x.received == x.expected
        if done != d.last:
            raise PeerProtocolError("H2CData LAST_PDU flag does not match the requested length",
                                    P.FES.INVALID_HEADER_FIELD, 1)
        if done:
            del self._transfers[d.cccid]
        return WriteData(d.cccid, d.datao, d.data, done, d.digest_error)

    # -- transmit --
    def request_data(self, cid: int, length: int) -> None:
        """Ask the host for ``length`` bytes of write data for ``cid`` (one R2T)."""
        if cid in self._transfers:
            raise LocalProtocolError(f"an R2T for command {cid:#x} is already outstanding")
        ttag = self._next_ttag
        self._next_ttag = (ttag + 1) & 0xFFFF
        self._transfers[cid] = _Transfer(ttag, length)
        self.outgoing.extend(P.encode_r2t(P.R2T(cid, ttag, 0, length), hdgst=self.hdgst))

    def send_data(self, cid: int, data, *, success: bool = False) -> None:
        """Queue C2HData for a read; ``success`` completes the command too.

        SUCCESS may only be used while SQ flow control is disabled, since the
        host then does not need SQHD from a response (as the Linux target does).
        """
        success = success and not self.sq_flow_control
        self.outgoing.extend(P.encode_c2h_data(P.C2HData(cid, 0, data, True, success),
                                               hdgst=self.hdgst, ddgst=self.ddgst,
                                               pda=self.pda_tx))

    def can_send_success(self) -> bool:
        return not self.sq_flow_control

    def respond(self, cid: int, status: int = 0, dw0: int = 0, dw1: int = 0, sqid: int = 0) -> None:
        sqhd = self.sqhd if self.sq_flow_control else 0xFFFF
        self.outgoing.extend(P.encode_capsule_resp(
            encode_cqe(CQE(dw0, dw1, sqhd, sqid, cid, status)), hdgst=self.hdgst))

    def abandon(self, cid: int) -> None:
        """Forget an R2T transfer (its command failed)."""
        self._transfers.pop(cid, None)

