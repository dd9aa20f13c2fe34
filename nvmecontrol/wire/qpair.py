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
from collections import namedtuple

from nvmecontrol.errors import ConnectionLost, LocalProtocolError, PeerProtocolError
from nvmecontrol.wire import pdu as P
from nvmecontrol.wire.status import SC_TRANSIENT_TRANSPORT_ERROR, SCT_GENERIC, make_status
from nvmecontrol.wire.capsule import (CQE, PSDT_SGL, SGL_DATA_BLOCK_OFFSET,
                                      SGL_TRANSPORT_DATA_BLOCK, SQE)

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
# NLB is 16 bits, 0's based: wire.nvm.MAX_NLB, written here so that the admin
# path does not import the NVM command set (a test keeps the two equal).
_MAX_NLB = 0x10000


# The events below are collections.namedtuple classes, not typing.NamedTuple
# (the same classes): typing costs every command's start-up about 3 ms.
Established = namedtuple("Established", "hdgst ddgst cpda hpda maxh2cdata maxr2t")
Established.__doc__ = "Connection initialization finished with these parameters."

Completion = namedtuple("Completion", "cid cqe tag data", defaults=(None, None))
Completion.__doc__ = """A command completed (CapsuleResp, or C2HData with SUCCESS).

    ``tag`` is what the submitter attached to the command: resolving it here,
    while the CID is still reserved, means a caller that resubmits while
    walking a batch of events can never confuse a reused CID.  ``data`` is
    set when a read submitted with ``read_len`` got all its data in the one
    C2HData that completed it (the usual case): a view into the decoder's
    buffer, as :class:`ReadData` would have carried, without that second
    event.
    """

ReadData = namedtuple("ReadData", "cid offset data tag", defaults=(None,))
ReadData.__doc__ = """C2HData for a command submitted with ``read_len`` and no buffer.

    ``data`` is a view into the decoder's buffer, valid until the next
    receive: forward it (or copy it) before reading from the socket again.
    """

Command = namedtuple("Command", "cid sqe data digest_error", defaults=(False,))
Command.__doc__ = "A command arrived at the controller; ``data`` is in-capsule data or None."

# done: all requested data has now arrived
WriteData = namedtuple("WriteData", "cid offset data done digest_error", defaults=(False,))
WriteData.__doc__ = "H2CData for a command the controller asked data for (after R2T)."


def termreq_for(err: PeerProtocolError, offending: bytes, *, role: str) -> list:
    """Encoded TermReq answering ``err`` (to send before closing)."""
    fes = err.fes if err.fes is not None else P.FES.INVALID_HEADER_FIELD
    return [P.encode_termreq(P.TermReq(fes, err.fei, bytes(offending[:P.TERM_MAX_DATA]),
                                       h2c=(role == P.ROLE_HOST)))]


# The SGL descriptor at SQE bytes 24-39: address, length, 3 reserved bytes
# and the descriptor type byte.
# The SQE's fields around its SGL (bytes 24-39, which the queue pair fills):
# OPC, flags, CID, NSID, CDW2, CDW3, MPTR, CDW10-15.
_SQE_FIELDS = struct.Struct("<BBHIIIQ16x6I")


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


# Receive buffer per queue pair.  A PDU must sit whole in it (its data are
# handed on as a view), so when the space left cannot hold the next one the
# partial PDU is moved to the front.  With 1 MiB PDUs streaming into a
# buffer of about twice that, nearly every PDU was moved (46% of the bytes
# a session received in 1 MiB and 128 KiB reads); at 4 MiB, 12%.  The
# buffer is anonymous memory and rewinds whenever it is empty, so a queue
# carrying small PDUs only ever touches its first pages.
RECEIVE_BUFFER_BYTES = 4 << 20


# Host-side state of one outstanding command: a plain list indexed by these
# (building a list costs a quarter of a slotted object's __init__, and the
# host builds one per command).
P_READ_INTO, P_READ_LEN, P_RECEIVED, P_WRITE_DATA, P_DIGEST_ERROR, P_TAG = range(6)


_tnew = tuple.__new__


def new_completion(cid: int, cqe: CQE, tag=None) -> Completion:
    """``Completion(cid, cqe, tag)`` without the NamedTuple's Python-level __new__."""
    return _tnew(Completion, (cid, cqe, tag, None))


def new_read_data(cid: int, offset: int, data, tag=None) -> ReadData:
    return _tnew(ReadData, (cid, offset, data, tag))


# SGL descriptor types in the hot encoders, as plain ints.
_SGL_OFF = int(SGL_DATA_BLOCK_OFFSET)
_SGL_XPORT = int(SGL_TRANSPORT_DATA_BLOCK)
_PSDT_SGL = int(PSDT_SGL)
_IC_KINDS = frozenset(P._IC_TYPES)
_CMD = P.RAW_CMD
_RESP = P.RAW_RESP
_H2C = P.RAW_H2C
_C2H = P.RAW_C2H
_R2T = P.RAW_R2T
_CAPSULE_CMD = P.CAPSULE_CMD
_F_SUCCESS = P.F_SUCCESS
_F_LAST = P.F_LAST_PDU
_pack_data_hdr = P._DATA_HDR.pack
_CMD_HLEN = P.CMD_HLEN
_RESP_HLEN = P.RESP_HLEN
_pack_resp = P._RESP_PDU.pack
_DATA_HLEN = P.DATA_HLEN


class HostQueuePair(_Base):
    """The host end of one NVMe/TCP connection (admin or I/O queue)."""

    role = P.ROLE_HOST

    def __init__(self, *, queue_size: int, hdgst: bool = False, ddgst: bool = False,
                 hpda: int = 0, maxr2t: int = 0, max_icd: int = ADMIN_ICD,
                 buffer_size: int = RECEIVE_BUFFER_BYTES):
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
        self._pending: list[list | None] = [None] * (queue_size - 1)  # P_* lists
        self._ok_cqes: list[CQE | None] = [None] * (queue_size - 1)
        # One CapsuleCmd header per CID, made on first use and rewritten by
        # every command with that CID.  Safe to reuse: a CID is free again
        # only once the controller completed the command, so its capsule
        # left the socket (a synchronous sendmsg) long before.
        self._cmd_hdrs: list[bytearray | None] = [None] * (queue_size - 1)
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
    def adopt(cls, state: dict, *, buffer_size: int = RECEIVE_BUFFER_BYTES) -> "HostQueuePair":
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
        return self.room() > 0

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
        if type(sqe) is bytearray:
            opc, sflags, _cid, nsid, c2, c3, mptr, c10, c11, c12, c13, c14, c15 = \
                _SQE_FIELDS.unpack(sqe)
        else:
            opc, sflags, _cid, nsid, c2, c3, mptr, _sgl, c10, c11, c12, c13, c14, c15 = sqe
        # The SQE's own CID and SGL are replaced by ours.
        return self.queue_command(opc, sflags, nsid, c2, c3, mptr, c10, c11, c12, c13, c14,
                                   c15, write_data, read_into, read_len, tag)

    def submit_io(self, opc: int, nsid: int, slba: int, nlb: int, cdw12: int = 0, *,
                  write_data=None, read_len: int = 0, read_into=None, tag=None,
                  cdw10: int | None = None, cdw11: int | None = None) -> int:
        """Queue an I/O command built straight into its capsule header; returns its CID.

        The same command as ``submit(encode_io(opc, nsid, slba, nlb,
        cdw12_flags=cdw12, cdw10=cdw10, cdw11=cdw11), ...)`` with the same
        checks and data handling, packed with one struct: ``nlb`` is 1's
        based (0: no NLB field, e.g. Flush) and lands 0's based in CDW12
        bits 15:0, below the ``cdw12`` flags (FUA, DEAC); ``cdw10``/``cdw11``,
        when given, replace SLBA's dwords (Dataset Management).
        """
        if nlb:
            # A larger count (or low cdw12 bits) would spill into NLB's
            # neighbours and silently change the command (NVM 1.0, figure 56).
            if not 0 < nlb <= _MAX_NLB or cdw12 & 0xFFFF:
                raise ValueError(f"block count {nlb} out of range 1..{_MAX_NLB} "
                                 f"(CDW12 flags {cdw12:#x})")
            cdw12 |= nlb - 1
        return self.queue_command(opc, _PSDT_SGL, nsid, 0, 0, 0,
                                   slba & 0xFFFFFFFF if cdw10 is None else cdw10,
                                   slba >> 32 if cdw11 is None else cdw11, cdw12, 0, 0, 0,
                                   write_data, read_into, read_len, tag)

    def room(self) -> int:
        """How many commands can be queued now (free CIDs, and SQ slots under flow control).

        0 once the connection is closed (the receiver may find that at any
        moment): callers keep the commands for whoever hands them back.
        """
        if self.established is None or self.closed:
            return 0
        room = len(self._free_cids)
        if self.sq_flow_control:
            room = min(room, (self.sqhd - self.sqtail - 1) % self.queue_size)
        return room

    def queue_command(self, opc, sflags, nsid, c2, c3, mptr, c10, c11, c12, c13, c14, c15,
                      write_data, read_into, read_len, tag) -> int:
        """Queue a command given as its dwords; returns its CID.

        What ``submit`` and ``submit_io`` come down to: the whole CapsuleCmd
        (CH and SQE with our CID and SGL) is packed with one struct.
        """
        if self.established is None or self.closed:
            raise LocalProtocolError("queue pair is not connected")
        if not self.room():
            raise LocalProtocolError("submission queue is full")
        # The CID is taken only once the capsule is built: a field that does
        # not fit (struct.error) must not leak it.
        cid = self._free_cids[-1]
        if read_into is not None:
            read_len = len(read_into)
        length, stype, icd, held = self._layout(write_data, read_len)
        hdr = self._cmd_hdrs[cid]
        if hdr is None:
            hdr = self._cmd_hdrs[cid] = bytearray(_CMD_HLEN)
        flags, pdo, plen = self._framing(icd)
        _CAPSULE_CMD.pack_into(hdr, 0, _CMD, flags, _CMD_HLEN, pdo, plen, opc, sflags, cid,
                               nsid, c2, c3, mptr, 0, length, stype, c10, c11, c12, c13, c14, c15)
        self._free_cids.pop()
        self._pending[cid] = [read_into, read_len, 0, held, False, tag]
        self.sqtail = (self.sqtail + 1) % self.queue_size
        P.put_framed(self.outgoing, hdr, icd, self.hdgst, self.ddgst, pdo)
        return cid

    def queue_records(self, records, start: int = 0) -> int:
        """Queue I/O command records ``records[start:]`` until the queue is full.

        Returns the index after the last one queued.  A record holds
        ``opc``, ``nsid``, ``c10``, ``c11``, ``c12``, ``data`` (write payload
        or None) and ``read_len`` (read data arrive as events, zero-copy); the
        other SQE fields are 0 and the record is its command's tag.  The data
        path's batch submission: one call and one room check per batch.
        """
        end = min(len(records), start + self.room())
        free, pending, hdrs, out = self._free_cids, self._pending, self._cmd_hdrs, self.outgoing
        pack_into = _CAPSULE_CMD.pack_into
        # No digests and no padding: a capsule is its header and in-capsule data.
        plain = not (self.hdgst or self.ddgst or self.pda_tx)
        for i in range(start, end):
            rec = records[i]
            cid = free[-1]
            data = rec.data
            if data is None:
                length, stype, icd, held = rec.read_len, _SGL_XPORT, None, None
            else:
                length, stype, icd, held = self._layout(data, rec.read_len)
            hdr = hdrs[cid]
            if hdr is None:
                hdr = hdrs[cid] = bytearray(_CMD_HLEN)
            if plain:
                if icd is None:
                    pdo, plen = 0, _CMD_HLEN
                else:
                    pdo, plen = _CMD_HLEN, _CMD_HLEN + length
                pack_into(hdr, 0, _CMD, 0, _CMD_HLEN, pdo, plen, rec.opc, _PSDT_SGL, cid,
                          rec.nsid, 0, 0, 0, 0, length, stype, rec.c10, rec.c11, rec.c12, 0, 0, 0)
                out.append(hdr)
                if icd is not None:
                    out.append(icd)
            else:
                flags, pdo, plen = self._framing(icd)
                pack_into(hdr, 0, _CMD, flags, _CMD_HLEN, pdo, plen, rec.opc, _PSDT_SGL, cid,
                          rec.nsid, 0, 0, 0, 0, length, stype, rec.c10, rec.c11, rec.c12, 0, 0, 0)
                P.put_framed(out, hdr, icd, self.hdgst, self.ddgst, pdo)
            free.pop()
            pending[cid] = [None, rec.read_len, 0, held, False, rec]
        if end > start:
            self.sqtail = (self.sqtail + end - start) % self.queue_size
        return end

    def _layout(self, write_data, read_len: int) -> tuple:
        """(SGL length, SGL type, in-capsule data, data held for R2T) of a command."""
        if write_data is None:
            return read_len, _SGL_XPORT, None, None
        wlen = len(write_data)
        if wlen and wlen <= self.max_icd:
            return wlen, _SGL_OFF, write_data, None
        return wlen or read_len, _SGL_XPORT, None, (write_data if wlen else None)

    def _framing(self, icd) -> tuple:
        """(flags, PDO, PLEN) of a CapsuleCmd carrying ``icd`` in-capsule (or None)."""
        if icd is None and not self.hdgst:
            return 0, 0, _CMD_HLEN
        return P.cmd_framing(len(icd) if icd is not None else 0, self.hdgst, self.ddgst,
                             self.pda_tx)

    def outstanding_tags(self) -> list:
        """Tags of every command not completed (to resubmit after a lost connection)."""
        return [p[P_TAG] for p in self._pending if p is not None and p[P_TAG] is not None]

    def _pending_for(self, cid: int, what: str) -> list:
        p = self._pending[cid] if cid < len(self._pending) else None
        if p is None:
            raise PeerProtocolError(f"{what} for command {cid:#x}, which is not outstanding",
                                    P.FES.INVALID_HEADER_FIELD, 8)
        return p

    def _complete(self, cid: int):
        """Free ``cid``; returns the command's tag."""
        tag = self._pending[cid][P_TAG]
        self._pending[cid] = None
        self._free_cids.append(cid)
        return tag

    # -- receive --
    def receive(self) -> list:
        """Process every complete PDU received so far; returns events.

        An error raised for one PDU carries, as ``events``, those of the
        PDUs before it in the same batch.
        """
        events = []
        append = events.append
        pending = self._pending
        npending = len(pending)
        free = self._free_cids
        ok_cqes = self._ok_cqes
        decode = self.decoder.decode_raw
        # p below is a P_* list; its fields are indexed with literals on this
        # path: [0] read_into, [1] read_len, [2] received, [4] digest_error,
        # [5] tag.
        try:
            while True:
                pdus = decode()
                for t in pdus:
                    k = t[0]
                    if k == _C2H:
                        _k, cid, datao, data, flags, bad = t
                        p = pending[cid] if cid < npending else None
                        if p is None:
                            self._pending_for(cid, "C2HData")
                        n = len(data)
                        if datao != p[2] or datao + n > p[1]:
                            raise PeerProtocolError(
                                f"C2HData offset {datao}+{n} outside the expected {p[2]}..{p[1]}",
                                P.FES.DATA_OUT_OF_RANGE, 12)
                        into = p[0]
                        received = p[2] = datao + n
                        if bad:
                            p[4] = True
                        if flags & _F_SUCCESS:
                            if received != p[1]:
                                raise PeerProtocolError("C2HData SUCCESS before all data was sent",
                                                        P.FES.INVALID_HEADER_FIELD, 1)
                            if into is not None:
                                into[datao:received] = data
                                data = None
                            elif datao:
                                if n:  # an empty last PDU (the Linux host takes them) adds nothing
                                    append(_tnew(ReadData, (cid, datao, data, p[5])))
                                data = None
                            # SUCCESS implies SQ flow control is off, so SQHD is not tracked.
                            if p[4]:
                                # Data that failed its digest are not handed on.
                                cqe = CQE(cid=cid, status=STATUS_TRANSIENT_TRANSPORT)
                                data = None
                            else:
                                # CQEs are immutable: one per CID, built once, shared by
                                # every clean SUCCESS completion of that CID.
                                cqe = ok_cqes[cid]
                                if cqe is None:
                                    cqe = ok_cqes[cid] = CQE(cid=cid)
                            pending[cid] = None
                            free.append(cid)
                            append(_tnew(Completion, (cid, cqe, p[5], data)))
                        elif into is not None:
                            into[datao:received] = data
                        elif n:
                            append(_tnew(ReadData, (cid, datao, data, p[5])))
                    elif k == _RESP:
                        _k, dw0, dw1, sqhd, sqid, cid, raw = t
                        p = pending[cid] if cid < npending else None
                        if p is None:
                            self._pending_for(cid, "response")
                        status = raw >> 1
                        if p[4] and not status:
                            status = STATUS_TRANSIENT_TRANSPORT
                        if not status and p[2] != p[1]:
                            # Success without all the read data: the caller
                            # would hand out a buffer the controller never filled.
                            raise PeerProtocolError(
                                f"response to command {cid:#x} reports success after "
                                f"{p[2]} of its {p[1]} bytes of data",
                                P.FES.PDU_SEQUENCE_ERROR, 0)
                        if self.sq_flow_control:
                            self.sqhd = sqhd
                        pending[cid] = None
                        free.append(cid)
                        append(_tnew(Completion, (cid, _tnew(CQE, (dw0, dw1, sqhd, sqid, cid, status)),
                                                  p[5], None)))
                    elif k == _R2T:
                        self._on_r2t(t[1], t[2], t[3], t[4])
                    elif k == P.PduType.ICResp:
                        append(self._on_icresp(t[1]))
                    else:  # TermReq
                        raise self._termreq_received(t[1])
                # The decoder stops after an IC PDU: it was handled (and the
                # negotiated digests/PDA applied), so decode the rest now.
                if not pdus or pdus[-1][0] not in _IC_KINDS:
                    return events
        except (PeerProtocolError, ConnectionLost) as e:
            # The PDUs before the bad one were processed and their CIDs freed:
            # their events travel with the error, so a caller can still
            # complete those commands (they are no longer outstanding).
            e.events = events
            raise

    def _on_r2t(self, cccid: int, ttag: int, r2to: int, r2tl: int) -> None:
        p = self._pending_for(cccid, "R2T")
        data = p[P_WRITE_DATA]
        if data is None or r2tl == 0 or r2to + r2tl > len(data):
            raise PeerProtocolError(f"R2T {r2to}+{r2tl} outside the command's write data",
                                    P.FES.DATA_OUT_OF_RANGE, 12)
        view = memoryview(data)
        end = r2to + r2tl
        off = r2to
        out = self.outgoing
        maxh2cdata = self.maxh2cdata
        # Through the record-taking encoder: R2T-driven data is large, so
        # the per-PDU cost does not matter here (and tests hook this encoder).
        while off < end:
            n = min(maxh2cdata, end - off)
            out.extend(P.encode_h2c_data(
                P.H2CData(cccid, ttag, off, view[off:off + n], last=(off + n == end)),
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
                 max_transfer: int = MAX_TRANSFER, buffer_size: int = RECEIVE_BUFFER_BYTES):
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
        """Every event of the PDUs received so far (Command, WriteData, Established)."""
        return [_tnew(Command, (t[1][2] | t[1][3] << 8, t[1], t[2], t[3])) if type(t) is tuple
                else t for t in self.receive_raw()]

    def receive_raw(self) -> list:
        """As :meth:`receive`, with each command left as the decoder's raw tuple.

        A command is ``(RAW_CMD, sqe, data, digest_error)`` (a plain tuple:
        the data path unpacks the SQE itself, so a Command record per command
        would only be built to be taken apart); every other event is the same
        record :meth:`receive` returns.  Every check is the same.
        """
        events = []
        append = events.append
        max_icd = self.max_icd
        commands = 0
        decode = self.decoder.decode_raw
        try:
            while True:
                pdus = decode()
                for t in pdus:
                    k = t[0]
                    if k == _CMD:
                        data = t[2]
                        if data is not None and len(data) > max_icd:
                            raise PeerProtocolError(
                                f"{len(data)} bytes of in-capsule data exceed {max_icd}",
                                P.FES.DATA_LIMIT_EXCEEDED, 4)
                        commands += 1
                        append(t)
                    elif k == _H2C:
                        append(self._on_h2c(t[1], t[2], t[3], t[4], t[5], t[6]))
                    elif k == P.PduType.ICReq:
                        append(self._on_icreq(t[1]))
                    else:
                        raise self._termreq_received(t[1])
                if not pdus or pdus[-1][0] not in _IC_KINDS:
                    break
        finally:
            # SQHD advances once per command received (NVMe 2.0, 3.3.1.2); the
            # responses to this batch are built after receive returns.
            if commands:
                self.sqhd = (self.sqhd + commands) % self.sqsize
                self.commands_received += commands
        return events

    def _on_icreq(self, r: P.ICReq) -> Established:
        dgst = r.dgst & ((P.DGST_HDGST if self.allow_hdgst else 0)
                         | (P.DGST_DDGST if self.allow_ddgst else 0))
        self.outgoing.append(P.encode_icresp(P.ICResp(self.cpda, dgst, self.maxh2cdata)))
        est = Established(bool(dgst & P.DGST_HDGST), bool(dgst & P.DGST_DDGST),
                          self.cpda, r.hpda, self.maxh2cdata, r.maxr2t)
        self._apply(est, pda_rx=self.cpda, pda_tx=r.hpda)
        return est

    def _on_h2c(self, cccid: int, ttag: int, datao: int, data, flags: int,
                bad: bool) -> WriteData:
        x = self._transfers.get(cccid)
        if x is None or x.ttag != ttag:
            # nvmet finds the command by TTAG alone (CCCID is not read): so
            # may we, off the common path.  TTAGs of outstanding R2Ts differ.
            by_ttag = next((c for c, t in self._transfers.items() if t.ttag == ttag), None)
            if by_ttag is None:
                raise PeerProtocolError(f"H2CData for command {cccid:#x} without a matching R2T",
                                        P.FES.INVALID_HEADER_FIELD, 8 if x is None else 10)
            cccid = by_ttag
            x = self._transfers[cccid]
        n = len(data)
        if datao != x.received or datao + n > x.expected:
            raise PeerProtocolError(
                f"H2CData offset {datao}+{n} outside the requested 0..{x.expected}",
                P.FES.DATA_OUT_OF_RANGE, 12)
        if n > self.maxh2cdata:
            raise PeerProtocolError(f"H2CData of {n} bytes exceeds MAXH2CDATA",
                                    P.FES.DATA_LIMIT_EXCEEDED, 16)
        x.received += n
        # Done by the count: LAST_PDU is not checked, as nvmet does not.
        done = x.received == x.expected
        if done:
            del self._transfers[cccid]
        return _tnew(WriteData, (cccid, datao, data, done, bad))

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
        flags = _F_LAST | _F_SUCCESS if success and not self.sq_flow_control else _F_LAST
        n = len(data)
        if n and not (self.hdgst or self.ddgst or self.pda_tx):
            # = put_data_pdu without digests or padding (one call less per read)
            out = self.outgoing
            out.append(_pack_data_hdr(_C2H, flags, _DATA_HLEN, _DATA_HLEN, _DATA_HLEN + n,
                                      cid, 0, 0, n))
            out.append(data)
            return
        P.put_data_pdu(self.outgoing, _C2H, flags, cid, 0, 0, data, self.hdgst, self.ddgst,
                       self.pda_tx)

    def can_send_success(self) -> bool:
        return not self.sq_flow_control

    def respond(self, cid: int, status: int = 0, dw0: int = 0, dw1: int = 0, sqid: int = 0) -> None:
        sqhd = self.sqhd if self.sq_flow_control else 0xFFFF
        if self.hdgst:
            P.put_capsule_resp(self.outgoing, cid, status, dw0, dw1, sqhd, sqid, True)
        else:  # = put_capsule_resp without a digest, one call less per command
            self.outgoing.append(_pack_resp(_RESP, 0, _RESP_HLEN, 0, _RESP_HLEN, dw0, dw1, sqhd,
                                            sqid, cid, (status & 0x7FFF) << 1))

    def abandon(self, cid: int) -> None:
        """Forget an R2T transfer (its command failed)."""
        self._transfers.pop(cid, None)
