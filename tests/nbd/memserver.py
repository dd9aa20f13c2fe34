"""A blocking NBD server over a unix socket, for tests only.

One thread per connection, a bytearray per export, and nothing but
``nvmecontrol.nbd.protocol`` between the socket and the disk, so that real
clients (nbdinfo, nbdcopy, qemu-img, fio) can prove the protocol module.
Each connection leaves a :class:`Session` record of what the client asked;
exceptions in connection threads are kept in ``errors`` for the test to
check.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

from nvmecontrol.nbd import protocol as P


@dataclass
class Session:
    options: list[int] = field(default_factory=list)
    client_flags: int = 0
    export: str | None = None
    structured: bool = False
    commands: list[int] = field(default_factory=list)
    max_batch: int = 0  # most requests decoded from one recv


def send_all(sock: socket.socket, buffers: list) -> None:
    """sendmsg until every buffer is out (a send may stop part way)."""
    views = [memoryview(b).cast("B") for b in buffers if len(b)]
    while views:
        sent = sock.sendmsg(views)
        while sent and sent >= len(views[0]):
            sent -= len(views.pop(0))
        if sent:
            views[0] = views[0][sent:]


class MemServer:
    def __init__(self, path: str, exports: dict[str, P.Export], default: str | None = None,
                 *, offer_structured: bool = True):
        self.path = path
        self.exports = exports
        self.default = default
        self.offer_structured = offer_structured
        self.disks = {name: bytearray(e.size) for name, e in exports.items()}
        self.sessions: list[Session] = []
        self.errors: list[BaseException] = []
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._conns: list[socket.socket] = []
        self._accepter = threading.Thread(target=self._accept_loop, daemon=True)
        self._threads: list[threading.Thread] = []  # one per connection
        self._lock = threading.Lock()

    def start(self) -> "MemServer":
        self._listener.bind(self.path)
        self._listener.listen(16)
        self._accepter.start()
        return self

    def stop(self) -> None:
        # shutdown() wakes a thread blocked in accept() or recv() on Linux.
        for s in [self._listener, *self._conns]:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._accepter.join(10)
        self.wait_idle(10)
        self._listener.close()

    def wait_idle(self, timeout: float = 30) -> None:
        """Wait until every connection so far has ended (its client exited)."""
        for t in list(self._threads):
            t.join(timeout)
            assert not t.is_alive(), "an NBD connection is still open"

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            t = threading.Thread(target=self._connection, args=(conn,), daemon=True)
            with self._lock:
                self._conns.append(conn)
                self._threads.append(t)
            t.start()

    def _connection(self, conn: socket.socket) -> None:
        session = Session()
        with self._lock:
            self.sessions.append(session)
        try:
            with conn:
                self._serve(conn, session)
        except Exception as exc:  # reported by the test through self.errors
            self.errors.append(exc)

    def _serve(self, conn: socket.socket, session: Session) -> None:
        hs = P.Handshake(self.exports, self.default, offer_structured=self.offer_structured)
        session.options = hs.options  # the same list: filled as options arrive
        send_all(conn, hs.take_outgoing())
        while not hs.done:
            hs.feed(conn.recv(65536))
            try:
                send_all(conn, hs.take_outgoing())
            except BrokenPipeError:
                # A client may hang up right after ABORT without reading the ACK.
                if not hs.aborted:
                    raise
        session.client_flags = hs.client_flags
        if hs.aborted:
            return
        export = hs.export
        session.export, session.structured = export.name, hs.structured_replies
        disk = memoryview(self.disks[export.name])
        decoder = P.RequestDecoder()
        decoder.feed(hs.leftover)
        while True:
            requests = decoder.decode()
            session.max_batch = max(session.max_batch, len(requests))
            replies: list = []
            for req in requests:
                session.commands.append(req.type)
                if req.type == P.CMD_DISC:
                    send_all(conn, replies)
                    return
                replies += self._execute(req, export, disk, hs.structured_replies)
            send_all(conn, replies)
            n = conn.recv_into(decoder.get_buffer())
            if not n:
                return
            decoder.buffer_updated(n)

    @staticmethod
    def _execute(req: P.Request, export: P.Export, disk: memoryview, structured: bool) -> list:
        t, off, length, cookie = req.type, req.offset, req.length, req.cookie
        end = off + length
        error = 0
        if t in (P.CMD_READ, P.CMD_WRITE, P.CMD_TRIM, P.CMD_WRITE_ZEROES):
            if t != P.CMD_READ and export.read_only:
                error = P.EPERM
            elif end > export.size:
                error = P.ENOSPC if t == P.CMD_WRITE else P.EINVAL
            elif off % export.min_block or length % export.min_block:
                error = P.EINVAL
        elif t == P.CMD_BLOCK_STATUS:
            error = P.EINVAL  # no metadata context is ever selected
        elif t not in (P.CMD_FLUSH, P.CMD_CACHE):
            error = P.EINVAL
        if error:
            if structured:
                return [P.structured_error(cookie, error, f"{P.CMD_NAMES[t]} refused")]
            return [P.simple_reply(cookie, error)]
        if t == P.CMD_READ:
            data = disk[off:end]
            if not structured:
                return [P.simple_reply(cookie), data]
            if not length:
                return [P.structured_none(cookie)]
            return [P.structured_data_header(cookie, off, length), data]
        if t == P.CMD_WRITE:
            disk[off:end] = req.data
        elif t in (P.CMD_TRIM, P.CMD_WRITE_ZEROES):
            disk[off:end] = bytes(length)
        return [P.simple_reply(cookie)]
