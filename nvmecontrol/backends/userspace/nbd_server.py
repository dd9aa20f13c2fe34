"""NBD listeners and connections of a userspace session.

Each accepted connection is bound to an I/O queue by the session's router
and gets one thread: the fixed-newstyle handshake
(``nbd.protocol.Handshake``), then the transmission phase, reading requests
in batches, turning them into NVMe commands (``request.split``) and
submitting them through the router.  Replies are sent by whichever thread
completed the request (an I/O queue's receiver), under the connection's
send lock, one ``sendmsg`` per batch.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading

from nvmecontrol.backends.userspace.request import (FLUSH, KINDS, READ, WRITE, NbdRequest,
                                                    split)
from nvmecontrol.errors import NvmeControlError
from nvmecontrol.nbd import protocol as N
from nvmecontrol.transport.tcp import sendmsg_all, set_nodelay

log = logging.getLogger("nvmecontrol.session")

# A client that has not finished its handshake in this long is dropped.
HANDSHAKE_TIMEOUT_S = 30.0
# Arrival order of requests across connections (parked requests replay in it).
_arrival = itertools.count()
# Reply headers packed on the hot path (nbd.protocol's layouts).
_data_header = N.CHUNK_DATA_HEADER.pack
_DATA_CHUNK = (N.STRUCTURED_REPLY_MAGIC, N.REPLY_FLAG_DONE, N.REPLY_TYPE_OFFSET_DATA)
_simple = N.SIMPLE_REPLY.pack


class NbdConnection:
    """One NBD client connection in the transmission phase."""

    def __init__(self, sock: socket.socket, index: int, session):
        self.sock = sock
        self.index = index  # for the log
        self.slot = index  # the router's choice of I/O queue
        self.session = session  # namespace_for(export), router
        self.send_lock = threading.Lock()
        self.structured = False
        self.export = None
        self.namespace = None
        self.alive = True
        self.inflight = 0
        self._inflight_lock = threading.Lock()
        self._closing = False  # NBD_CMD_DISC seen: close when inflight drops to 0

    # -- replies (any thread) --
    def reply(self, reqs: list[NbdRequest]) -> None:
        out = []
        append = out.append
        structured = self.structured
        for r in reqs:
            if r.kind != READ:
                append(_simple(N.SIMPLE_REPLY_MAGIC, r.error, r.cookie))
            elif r.error:
                append(N.structured_error(r.cookie, r.error) if structured
                       else _simple(N.SIMPLE_REPLY_MAGIC, r.error, r.cookie))
            elif not structured:
                append(_simple(N.SIMPLE_REPLY_MAGIC, 0, r.cookie))
                append(r.buf)
            elif r.length:
                # Lengths were checked against the export's maximum block
                # at arrival, so the chunk header is packed as is.
                append(_data_header(*_DATA_CHUNK, r.cookie, r.length + 8, r.offset))
                append(r.buf)
            else:
                append(N.structured_none(r.cookie))  # OFFSET_DATA needs a byte
            r.buf = None
        self._send(out)
        with self._inflight_lock:
            self.inflight -= len(reqs)
            close = self._closing and self.inflight == 0
        if close:
            self.close()

    def reply_error(self, cookie: int, kind: int, error: int) -> None:
        """An immediate error (a bad request the controller never sees)."""
        self._send([N.structured_error(cookie, error) if kind == READ and self.structured
                    else N.simple_reply(cookie, error)])

    def _send(self, out: list) -> None:
        if not self.alive:
            return
        try:
            with self.send_lock:
                sendmsg_all(self.sock, out)
        except OSError as e:
            log.info("NBD client %d: send failed (%s); dropping its replies", self.index,
                     e.strerror or e)
            self.alive = False

    def close(self) -> None:
        self.alive = False
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    # -- the connection's thread --
    def serve(self, exports: dict, default: str | None) -> None:
        try:
            leftover = self._handshake(exports, default)
            if self.export is not None:
                self._transmission(leftover)
        except NvmeControlError as e:
            log.warning("NBD client %d: %s", self.index, e)
        except OSError as e:
            log.info("NBD client %d: %s", self.index, e.strerror or e)
        finally:
            with self._inflight_lock:
                self._closing = True
                idle = self.inflight == 0
            if idle:
                self.close()

    def _handshake(self, exports: dict, default: str | None) -> bytes:
        hs = N.Handshake(exports, default)
        self.sock.settimeout(HANDSHAKE_TIMEOUT_S)
        while True:
            out = hs.take_outgoing()
            if out:
                sendmsg_all(self.sock, out)
            if hs.done:
                break
            data = self.sock.recv(65536)
            hs.feed(data)
            if not data and not hs.done:
                raise N.NbdProtocolError("client closed the connection during the handshake")
        self.sock.settimeout(None)
        if hs.export is None:
            return b""
        self.export = hs.export
        self.structured = hs.structured_replies
        self.namespace = self.session.namespace_for(hs.export.name)
        log.info("NBD client %d: export %r (%s replies)", self.index, hs.export.name,
                 "structured" if self.structured else "simple")
        return hs.leftover

    def _transmission(self, leftover: bytes) -> None:
        ns = self.namespace
        decoder = N.RequestDecoder(max_payload=self.export.max_block)
        if leftover:
            decoder.feed(leftover)
        recv_into = self.sock.recv_into
        unaligned = ns.lba_size - 1  # LBA sizes are powers of two (fixed: see ns.retired)
        max_read = self.export.max_block
        read_only = ns.read_only
        arrival = _arrival.__next__
        while True:
            if ns.retired:
                log.info("NBD client %d: namespace %d is gone or reformatted: disconnecting",
                         self.index, ns.nsid)
                return
            size = ns.size  # a resize applies from the next batch
            parts = []
            count = 0
            for flags, kind, cookie, offset, length, data in decoder.decode():
                if kind not in KINDS:
                    if kind == N.CMD_DISC:
                        self._submit(parts, count)
                        return
                    self.reply_error(cookie, kind, N.EINVAL)
                    continue
                error = 0
                if kind != FLUSH:
                    if offset + length > size:
                        error = N.ENOSPC if kind == WRITE else N.EINVAL
                    elif (offset | length) & unaligned:
                        error = N.EINVAL
                    elif kind == READ and length > max_read:
                        # The decoder bounds writes by their payload; a read's buffer
                        # is ours to allocate: past the advertised maximum block size
                        # a client could make us hold its whole namespace (proto.md,
                        # "Block size constraints": EINVAL).
                        error = N.EINVAL
                    elif kind != READ and read_only:
                        error = N.EPERM
                if error:
                    self.reply_error(cookie, kind, error)
                    continue
                req = NbdRequest(self, cookie, kind, offset, length, arrival())
                if length == 0 and kind != FLUSH:
                    req.buf = b""
                    with self._inflight_lock:
                        self.inflight += 1
                    self.reply([req])
                    continue
                # A write's payload is copied out of the receive buffer: it must
                # outlive this batch (and a reconnect) until the controller has it.
                split(req, ns, bytes(data) if kind == WRITE else None,
                      flags & N.CMD_FLAG_FUA, parts)
                count += 1
            if parts:
                self._submit(parts, count)
            n = recv_into(decoder.get_buffer())
            if n == 0:
                return
            decoder.buffer_updated(n)

    def _submit(self, parts: list, count: int) -> None:
        if parts:
            with self._inflight_lock:
                self.inflight += count
            self.session.router.submit(self, parts)


# Socket buffers big enough for a few large replies in flight: fewer
# blocking sends while the client drains a MiB (measured: 1 MiB reads).
SOCKET_BUFFER_BYTES = 4 << 20


def _large_buffers(sock: socket.socket) -> None:
    for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER_BYTES)
        except OSError:
            pass


class NbdListener:
    """Accepts NBD clients on one socket (unix or TCP) until closed."""

    def __init__(self, sock: socket.socket, session, exports_fn, counter):
        self.sock = sock
        self.session = session  # namespace_for(export), router
        self.exports_fn = exports_fn  # () -> (exports, default)
        self.counter = counter  # shared connection numbering
        # Kept from the start: the state file is written again after close().
        self.address = sock.getsockname()
        self.thread = threading.Thread(target=self._accept_loop, daemon=True, name="nbd-accept")

    @classmethod
    def unix(cls, path: str, session, exports_fn, counter) -> "NbdListener":
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(64)
        return cls(sock, session, exports_fn, counter)

    @classmethod
    def tcp(cls, addrinfo: list, session, exports_fn, counter) -> "NbdListener":
        family, sockaddr = addrinfo[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(64)
        return cls(sock, session, exports_fn, counter)


    def start(self) -> None:
        self.thread.start()

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _peer = self.sock.accept()
            except OSError:
                return  # closed
            set_nodelay(conn)
            _large_buffers(conn)
            index = next(self.counter)
            c = NbdConnection(conn, index, self.session)
            self.session.router.bind(c)
            exports, default = self.exports_fn()
            threading.Thread(target=c.serve, args=(exports, default), daemon=True,
                             name=f"nbd-conn{index}").start()

    def close(self) -> None:
        # shutdown() wakes the thread blocked in accept(); close() alone does not.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
