"""One TCP connection (one NVMe/TCP queue pair), driven by one thread.

The loop is the queue driver's (``transport.tcp.TcpQueuePair.serve``), the
batched design of ``performance-limits.md`` §5: one ``recv_into`` straight
into the decoder's buffer, every complete PDU in it decoded and answered,
and every answer (C2HData payloads as memoryviews of a reused read arena,
CapsuleResps, R2Ts) sent with one ``sendmsg``.

Life cycle: the lobby (``lobby.py``) accepts the connection and collects
its ICReq; then the server admits it and this thread answers those bytes
(ICResp, the wire state machine).  Fabrics Connect turns the connection
into the admin queue of a new controller or an I/O queue of an existing
one (``controller.handle_connect``); until then any other command fails
with Invalid Opcode, as in the Linux target.  A connection must get that
far within HANDSHAKE_TIMEOUT_S of being accepted.  A connected I/O queue
hands each whole batch to ``IoQueue.batch`` (the fast path).

Threads: the connection thread owns the decoder; everything that touches
the queue pair's output (``qp.outgoing``, SQHD) or the socket's send side
runs under ``lock`` (the driver's), because asynchronous event completions
and keep-alive or administrative terminations come from other threads.
Those never close the socket themselves: ``abort`` shuts it down, and the
owning thread sees the end of its stream and cleans up (closing a
descriptor another thread is blocked on could hand its number to a new
socket).

Protocol errors in what the host sent get the C2HTermReq the wire state
machine chose (FES/FEI, sent by the driver), are logged once, and end only
this connection.
"""

from __future__ import annotations

import logging
import mmap
import socket
import struct
import threading
import time

from nvmecontrol.errors import ConnectionLost, LocalProtocolError, PeerProtocolError, PeerTimeout
from nvmecontrol.target import constants as K
from nvmecontrol.target.discovery import unmap
from nvmecontrol.transport.address import format_address
from nvmecontrol.transport.tcp import TcpQueuePair, set_nodelay
from nvmecontrol.wire.pdu import FES
from nvmecontrol.wire.qpair import Command, ControllerQueuePair, WriteData

log = logging.getLogger("nvmfd")

_monotonic = time.monotonic


class Connection:
    def __init__(self, server, sock: socket.socket, port, conn_id: int, *,
                 first: bytes = b"", deadline: float | None = None):
        """``first``: bytes the lobby already received (the ICReq);
        ``deadline`` (monotonic): when the handshake must be over."""
        self.server = server
        self.sock = sock
        self._first = first
        self._handshake_deadline = deadline
        self.port = port
        self.id = conn_id
        try:
            peer = sock.getpeername()
            local = sock.getsockname()
        except OSError:
            peer = local = ("?", 0)
        if not isinstance(peer, tuple):  # AF_UNIX (tests): no address
            peer = local = ("local", 0)
        self.peer_host, self.peer_port = peer[0], peer[1]
        self.local_host, self.local_port = local[0], local[1]
        self.peer = format_address(unmap(self.peer_host), self.peer_port)
        self.qp = ControllerQueuePair(
            allow_hdgst=server.allow_hdgst, allow_ddgst=server.allow_ddgst,
            maxh2cdata=K.MAXH2CDATA, max_icd=K.IN_CAPSULE_DATA, max_transfer=K.MAX_TRANSFER)
        self.driver = TcpQueuePair(sock, self.qp, timeout=None)
        self.lock = self.driver.lock
        # Set by Connect: the controller, our queue ID and the command handler.
        self.ctrl = None
        self.qid = 0
        self.io = None
        self.on_command = self._unconnected_command
        # Set on a queue that must authenticate (``auth.IoAuthGate``): once the
        # queue is on the fast path, it takes a re-authentication's commands
        # out of each batch.
        self.auth_gate = None
        # Set by Connect: the association's keep-alive timer (traffic based:
        # every batch received restarts it) and the server's clock.
        self._activity = None
        self._clock = server.clock
        # CID -> (callback, state) of transfers waiting for H2CData.
        self.transfers: dict[int, tuple] = {}
        # Anonymous memory: pages cost nothing until a read uses them (a
        # bytearray would be zero-filled, 4 MiB per connection up front).
        self.arena = mmap.mmap(-1, K.READ_ARENA_BYTES, flags=mmap.MAP_PRIVATE)
        self.arena_view = memoryview(self.arena)
        self.arena_used = 0
        # RAM namespace ranges queued straight from their mapping
        # (MemBackend.lend): (backend, start, end, view), given back once sent.
        self.lent: list = []
        self.lent_bytes = 0  # at most READ_ARENA_BYTES between two flushes
        # Where lent data that a send could not take at once are copied
        # (made on first need, anonymous memory like the arena).
        self.spill: mmap.mmap | None = None
        self.closing = False
        self.connecting = False  # Connect data is being collected through R2T
        self.errors = 0
        self.thread = threading.Thread(target=self.run, name=f"nvmfd-conn{conn_id}", daemon=True)

    # -- thread --
    def start(self) -> None:
        self.thread.start()

    def run(self) -> None:
        sock = self.sock
        why = None
        # The whole handshake is bounded, not each receive: a host dribbling
        # bytes cannot hold the thread either.
        handshake_deadline = self._handshake_deadline
        if handshake_deadline is None:
            handshake_deadline = _monotonic() + K.HANDSHAKE_TIMEOUT_S
        try:
            set_nodelay(sock)
            if self._first:
                # What the lobby received: answer it before waiting for more.
                self.qp.decoder.feed(self._first)
                self._first = b""
                try:
                    self._on_batch()
                except PeerProtocolError as e:
                    self.driver.terminate(e)
                    raise
            self.driver.serve(self._on_batch,
                              deadline=lambda: handshake_deadline if self.ctrl is None else None)
        except PeerProtocolError as e:
            self._log_protocol_error(e)
            why = "protocol error"
        except PeerTimeout:
            why = f"no Connect within {K.HANDSHAKE_TIMEOUT_S:g} s"
            log.info("connection %d from %s: %s", self.id, self.peer, why)
        except ConnectionLost as e:
            why = "closed by the host" if self.qp.closed and not self.closing else str(e)
        except OSError as e:
            why = e.strerror or str(e)
        except LocalProtocolError as e:  # a bug of ours; keep the daemon alive
            log.error("connection %d from %s: internal error: %s", self.id, self.peer, e)
            why = "internal error"
        except Exception:
            log.exception("connection %d from %s: internal error", self.id, self.peer)
            why = "internal error"
        finally:
            self.closing = True
            self.driver.close()
            if self.errors > K.MAX_LOGGED_ERRORS_PER_CONNECTION:
                log.info("connection %d from %s: %d command errors in all (%d not logged)",
                         self.id, self.peer, self.errors,
                         self.errors - K.MAX_LOGGED_ERRORS_PER_CONNECTION)
            self.server.connection_closed(self, why)
            self.release()

    def release(self) -> None:
        """Give the arena back and drop the references that form cycles (the
        connection is over, its thread is ending or never ran).

        The connection referred to its controller and its I/O queue and they
        to it: without this, a closed connection and its buffers (the arena,
        the decoder's receive buffer) would wait for a full garbage
        collection, which an idle daemon may not run for hours (100
        associations that had read at QD16 left 100 MiB behind, growing with
        every 100 more).
        """
        with self.lock:
            self.transfers.clear()
            self.arena_used = 0
            if self.lent:
                self.give_back()
            try:
                self.arena_view.release()
                self.arena.close()
                if self.spill is not None:
                    self.spill.close()
            except (BufferError, ValueError):
                pass  # a view is still out there: the collector frees it
            self.io = None
            self.on_command = None
            self.auth_gate = None
            self.ctrl = None
            self._activity = None

    def _on_batch(self) -> bool:
        activity = self._activity
        if activity is not None:
            activity(self._clock())
        with self.lock:
            if self.closing:
                return False
            io = self.io
            if io is not None:
                # A connected I/O queue on the fast path.
                events = self.qp.receive_raw()
                gate = self.auth_gate
                if gate is not None:
                    events = gate.intercept(events)
                io.batch(events)
            else:
                for ev in self.qp.receive():
                    t = type(ev)
                    if t is Command:
                        # Looked up per command: Connect switches the handler mid-batch.
                        self.on_command(ev)
                    elif t is WriteData:
                        self.write_data(ev)
            self.flush()
        return True

    def write_data(self, ev: WriteData) -> None:
        """H2CData arrived for a transfer this connection asked for by R2T."""
        entry = self.transfers.get(ev.cid)
        if entry is not None:
            entry[0](ev, entry[1])

    def _log_protocol_error(self, e: PeerProtocolError) -> None:
        fes = e.fes
        if fes is not None:
            try:
                name = FES(fes).name
            except ValueError:
                name = f"0x{fes:x}"
            log.warning("connection %d from %s: %s; sent C2HTermReq (FES %s, FEI %d)",
                        self.id, self.peer, e, name, e.fei)
        else:
            log.warning("connection %d from %s: %s", self.id, self.peer, e)

    # -- output --
    # The send arena holds what a batch sends that we build ourselves: read
    # data, and on the I/O fast path (io.IoQueue.batch) whole PDUs packed
    # back to back, so a batch of reads leaves as one contiguous buffer
    # (one iovec) instead of a header and a payload per command.  Whatever
    # writes into it appends its finished region to ``qp.outgoing`` before
    # anything else is queued, so the order of the PDUs is kept; a flush
    # makes all of it free again (sendmsg has copied it).
    def flush(self) -> None:
        """Send everything queued (caller holds ``lock``); the arena is free again."""
        out = self.qp.take_outgoing()
        try:
            if out and self.lent:
                out = self._send_lent(out)
            if out:
                self.driver.send(out)
        finally:
            self.arena_used = 0
            if self.lent:
                self.give_back()

    def _send_lent(self, out: list) -> list:
        """One send that cannot block, then the lent ranges are given back;
        returns what is left to send, the lent data in it copied.

        A host reading slowly would otherwise hold the ranges, and every
        other host's writes to them, for as long as it liked.
        """
        sent = self.driver.send_nowait(out)
        lent_views = {id(entry[3]) for entry in self.lent}
        rest = []
        spilled = 0
        for b in out:
            n = len(b)
            if sent >= n:
                sent -= n
                continue
            copy = id(b) in lent_views
            if sent:
                b, sent = b[sent:], 0
            if copy:
                # Into memory this connection keeps (a fresh 1 MiB bytes
                # object costs its page faults on every copy).
                if self.spill is None:
                    self.spill = mmap.mmap(-1, K.READ_ARENA_BYTES, flags=mmap.MAP_PRIVATE)
                n = len(b)
                self.spill[spilled:spilled + n] = b
                b = memoryview(self.spill)[spilled:spilled + n]
                spilled += n
            rest.append(b)
        self.give_back()
        return rest

    def give_back(self) -> None:
        """Writes may land in the ranges this connection sent (or will never send)."""
        lent, self.lent = self.lent, []
        self.lent_bytes = 0
        for backend, start, end, _view in lent:
            backend.give_back(start, end)

    def read_buffer(self, n: int) -> memoryview:
        """Space for ``n`` bytes of read data, valid until the next flush."""
        used = self.arena_used
        if used + n > K.READ_ARENA_BYTES:
            if n > K.READ_ARENA_BYTES:
                return memoryview(bytearray(n))
            self.flush()
            used = 0
        self.arena_used = used + n
        return self.arena_view[used:used + n]

    def respond(self, cid: int, status: int = 0, dw0: int = 0, dw1: int = 0) -> None:
        self.qp.respond(cid, status, dw0, dw1, self.qid)

    def send_read(self, cid: int, data) -> None:
        """Read data, completed by C2HData SUCCESS or, with SQ flow control, a CapsuleResp."""
        qp = self.qp
        if qp.sq_flow_control:
            qp.send_data(cid, data)
            qp.respond(cid, 0, 0, 0, self.qid)
        else:
            qp.send_data(cid, data, success=True)

    def fail(self, cid: int, status: int, why: str, *, opc: int = 0, nsid: int = 0,
             lba: int = 0, pel: int = K.PEL_NONE, dw0: int = 0) -> None:
        """Complete ``cid`` with an error status, record and (rate-limited) log it."""
        self.errors += 1
        if self.errors <= K.MAX_LOGGED_ERRORS_PER_CONNECTION:
            log.info("connection %d from %s, queue %d: command %#x (opcode %#04x) failed "
                     "with status %#06x: %s", self.id, self.peer, self.qid, cid, opc, status, why)
        ctrl = self.ctrl
        if ctrl is not None:
            ctrl.record_error(self.qid, cid, status, opc=opc, nsid=nsid, lba=lba, pel=pel)
        self.qp.respond(cid, status, dw0, 0, self.qid)

    # -- data from the host --
    def collect(self, cid: int, length: int, done) -> None:
        """Ask for ``length`` bytes by R2T; ``done(cid, data, digest_error)`` when all arrived."""
        self.transfers[cid] = (self._collect_data, [bytearray(length), done, False])
        self.qp.request_data(cid, length)

    def _collect_data(self, ev: WriteData, state: list) -> None:
        buf = state[0]
        buf[ev.offset:ev.offset + len(ev.data)] = ev.data
        if ev.digest_error:
            state[2] = True
        if ev.done:
            del self.transfers[ev.cid]
            state[1](ev.cid, bytes(buf), state[2])

    # -- before Connect --
    def _unconnected_command(self, ev: Command) -> None:
        from nvmecontrol.target.controller import handle_connect  # import cycle
        handle_connect(self.server, self, ev)

    # -- teardown from other threads --
    def abort(self) -> None:
        """End the connection from another thread (the owner cleans up)."""
        self.closing = True
        self.driver.abort()

    def connected(self, ctrl, qid: int, handler) -> None:
        """Connect succeeded: from now on commands go to ``handler``."""
        self.ctrl = ctrl
        self.qid = qid
        self.on_command = handler
        self._activity = ctrl.kato.on_activity
        self.sock.settimeout(None)
        # Blocking sends still give up when the host stops reading.
        sec = int(K.SEND_STALL_TIMEOUT_S)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                                 struct.pack("ll", sec, 0))
        except OSError:
            pass
