"""NBD listeners and connections of a userspace session.

Each accepted connection gets one thread: the fixed-newstyle handshake
(``nbd.protocol.Handshake``), then the transmission phase, reading requests
in batches and handing them to the session's dispatcher.  Replies are sent
by whichever thread completed the request (an I/O queue's receiver), under
the connection's send lock, one ``sendmsg`` per batch.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from nvmecontrol.backends.userspace.bridge import NbdRequest
from nvmecontrol.errors import NvmeControlError
from nvmecontrol.nbd import protocol as N
from nvmecontrol.transport.tcp import sendmsg_all, set_nodelay

log = logging.getLogger("nvmecontrol.session")

# A client that has not finished its handshake in this long is dropped.
HANDSHAKE_TIMEOUT_S = 30.0
_KINDS = {N.CMD_READ: "read", N.CMD_WRITE: "write", N.CMD_FLUSH: "flush", N.CMD_TRIM: "trim",
          N.CMD_WRITE_ZEROES: "zero"}


class NbdConnection:
    """One NBD client connection in the transmission phase."""

    def __init__(self, sock: socket.socket, index: int, dispatcher):
        self.sock = sock
        self.index = index  # picks the I/O queue
        self.dispatcher = dispatcher
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
        structured = self.structured
        for r in reqs:
            if r.kind == "read":
                if r.error:
                    out.append(N.structured_error(r.cookie, r.error) if structured
                               else N.simple_reply(r.cookie, r.error))
                else:
                    out.append(N.structured_data_header(r.cookie, r.offset, r.length) if structured
                               else N.simple_reply(r.cookie, 0))
                    out.append(r.buf)
            else:
                out.append(N.simple_reply(r.cookie, r.error))
            r.buf = None
        self._send(out)
        with self._inflight_lock:
            self.inflight -= len(reqs)
            close = self._closing and self.inflight == 0
        if close:
            self.close()

    def reply_error(self, cookie: int, kind: str, error: int) -> None:
        """An immediate error (a bad request the controller never sees)."""
        self._send([N.structured_error(cookie, error) if kind == "read" and self.structured
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
        self.namespace = self.dispatcher.namespace_for(hs.export.name)
        log.info("NBD client %d: export %r (%s replies)", self.index, hs.export.name,
                 "structured" if self.structured else "simple")
        return hs.leftover

    def _transmission(self, leftover: bytes) -> None:
        ns = self.namespace
        decoder = N.RequestDecoder(max_payload=self.export.max_block)
        if leftover:
            decoder.feed(leftover)
        sock = self.sock
        dispatcher = self.dispatcher
        size, lba = ns.size, ns.lba_size
        max_read = self.export.max_block
        while True:
            batch = []
            for r in decoder.decode():
                kind = _KINDS.get(r.type)
                if kind is None:
                    if r.type == N.CMD_DISC:
                        self._submit(batch)
                        return
                    self.reply_error(r.cookie, "other", N.EINVAL)
                    continue
                error = 0
                if kind != "flush":
                    if r.offset + r.length > size:
                        error = N.ENOSPC if kind == "write" else N.EINVAL
                    elif r.offset % lba or r.length % lba:
                        error = N.EINVAL
                    elif kind == "read" and r.length > max_read:
                        # The decoder bounds writes by their payload; a read's buffer
                        # is ours to allocate: past the advertised maximum block size
                        # a client could make us hold its whole namespace (proto.md,
                        # "Block size constraints": EINVAL).
                        error = N.EINVAL
                if not error and kind != "read" and ns.read_only:
                    error = N.EPERM
                if error:
                    self.reply_error(r.cookie, kind, error)
                    continue
                req = NbdRequest(self, r.cookie, kind, r.offset, r.length, 0)
                if r.length == 0 and kind != "flush":
                    req.buf = b""
                    with self._inflight_lock:
                        self.inflight += 1
                    self.reply([req])
                    continue
                data = bytes(r.data) if kind == "write" else None  # owned until completed
                batch.append((req, data, bool(r.flags & N.CMD_FLAG_FUA)))
            self._submit(batch)
            n = sock.recv_into(decoder.get_buffer())
            if n == 0:
                return
            decoder.buffer_updated(n)

    def _submit(self, batch: list) -> None:
        if batch:
            with self._inflight_lock:
                self.inflight += len(batch)
            self.dispatcher.submit(self, batch)


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

    def __init__(self, sock: socket.socket, dispatcher, exports_fn, counter):
        self.sock = sock
        self.dispatcher = dispatcher
        self.exports_fn = exports_fn  # () -> (exports, default)
        self.counter = counter  # shared connection numbering
        self.thread = threading.Thread(target=self._accept_loop, daemon=True, name="nbd-accept")

    @classmethod
    def unix(cls, path: str, dispatcher, exports_fn, counter) -> "NbdListener":
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(64)
        return cls(sock, dispatcher, exports_fn, counter)

    @classmethod
    def tcp(cls, addrinfo: list, dispatcher, exports_fn, counter) -> "NbdListener":
        family, sockaddr = addrinfo[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(64)
        return cls(sock, dispatcher, exports_fn, counter)

    @property
    def address(self):
        return self.sock.getsockname()

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
            c = NbdConnection(conn, index, self.dispatcher)
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
