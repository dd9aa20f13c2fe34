"""A small blocking NBD client for a session's exports (the public API's session namespaces).

The client half of the NBD protocol (NetworkBlockDevice/nbd ``doc/proto.md``),
as much as a session's export needs: fixed newstyle, NBD_OPT_GO for one
export, simple replies only (no structured replies are asked for, so every
reply is one header, followed by the data for a successful read).

Requests are pipelined: :meth:`NbdClient.send` writes a request from any
thread and returns; one receiver thread reads the replies in whatever order
the server sends them and hands each to ``on_reply(tag, errno)``.  Read data
is received straight into the buffer given with the request.  When the
connection breaks, ``on_lost(error, tags)`` gets every request not answered.
"""

from __future__ import annotations

import itertools
import logging
import socket
import struct
import threading
from typing import Callable, NamedTuple

from nvmecontrol.errors import ConnectError, ConnectionLost, PeerProtocolError, UsageError
from nvmecontrol.nbd import protocol as N

log = logging.getLogger(__name__)

_GREETING = struct.Struct(">QQH")  # NBDMAGIC, IHAVEOPT, handshake flags
_OPTION = struct.Struct(">QII")  # IHAVEOPT, option, length
_OPTION_REPLY = struct.Struct(">QIII")  # magic, option, reply type, length
_REQUEST = struct.Struct(">IHHQQI")  # magic, flags, type, cookie, offset, length
_SIMPLE_REPLY = struct.Struct(">IIQ")  # magic, error, cookie
# An option reply longer than this is not something a session sends; a
# hostile or confused server must not make us allocate without bound.
MAX_OPTION_REPLY = 64 * 1024
# Replies to one GO: the INFO records a server may send before its ACK.
MAX_OPTION_REPLIES = 32


class ExportInfo(NamedTuple):
    """What the handshake told about the export (sizes in bytes)."""

    size: int
    flags: int  # transmission flags (N.TransmissionFlag)
    min_block: int
    preferred_block: int
    max_block: int

    @property
    def read_only(self) -> bool:
        return bool(self.flags & N.TransmissionFlag.READ_ONLY)


class NbdClient:
    """One connection to one export; requests from any thread, replies on a thread of its own."""

    def __init__(self, sock: socket.socket, export: str, *,
                 on_reply: Callable[[object, int], None],
                 on_lost: Callable[[Exception, list], None], timeout: float = 30.0):
        self.sock = sock
        self.export = export
        self._on_reply, self._on_lost = on_reply, on_lost
        sock.settimeout(timeout)
        self.info = _negotiate(sock, export)
        sock.settimeout(None)  # silence on the data path is the server's business
        self._cookies = itertools.count(1)
        self._pending: dict[int, tuple[object, memoryview | None]] = {}
        self._lock = threading.Lock()  # the pending table
        self._send_lock = threading.Lock()  # one request's bytes at a time
        self._closed = False
        self._lost: Exception | None = None
        self._receiver = threading.Thread(target=self._receive, daemon=True,
                                          name=f"nbd-client-{export}")
        self._receiver.start()

    @classmethod
    def connect_unix(cls, path: str, export: str, **kw) -> "NbdClient":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError as e:
            sock.close()
            raise ConnectError(f"NBD socket {path}: {e.strerror or e}") from None
        try:
            return cls(sock, export, **kw)
        except BaseException:
            sock.close()
            raise

    def send(self, cmd: int, offset: int, length: int, tag, *, data=None, into=None,
             flags: int = 0) -> None:
        """Send one request; ``into`` (``length`` bytes) receives a read's data.

        Raises the connection's error if it is already lost.
        """
        with self._lock:
            if self._lost is not None:
                raise self._lost
            cookie = next(self._cookies)
            self._pending[cookie] = (tag, into)
        header = _REQUEST.pack(N.REQUEST_MAGIC, flags, cmd, cookie, offset, length)
        # Not under the table's lock: a server blocked on sending replies we
        # have not read yet must not keep the receiver from reading them.
        try:
            with self._send_lock:
                self.sock.sendall(header)
                if data is not None:
                    self.sock.sendall(data)
        except OSError as e:
            with self._lock:
                self._pending.pop(cookie, None)
            raise ConnectionLost(f"NBD export {self.export}: {e.strerror or e}") from None

    def _receive(self) -> None:
        head = bytearray(_SIMPLE_REPLY.size)
        view = memoryview(head)
        try:
            while True:
                if not _recv_exactly(self.sock, view):
                    raise ConnectionLost(f"NBD export {self.export}: the session closed "
                                         "the connection")
                magic, error, cookie = _SIMPLE_REPLY.unpack(head)
                if magic != N.SIMPLE_REPLY_MAGIC:
                    raise PeerProtocolError(f"NBD export {self.export}: reply magic "
                                            f"{magic:#x} (only simple replies were negotiated)")
                with self._lock:
                    entry = self._pending.pop(cookie, None)
                if entry is None:
                    raise PeerProtocolError(f"NBD export {self.export}: a reply for cookie "
                                            f"{cookie}, which is not outstanding")
                tag, into = entry
                if into is not None and not error and not _recv_exactly(self.sock, into):
                    raise ConnectionLost(f"NBD export {self.export}: the connection closed "
                                         "in the middle of read data")
                self._on_reply(tag, error)
        except BaseException as e:  # any end of the receiver fails what is outstanding
            if isinstance(e, OSError):
                e = ConnectionLost(f"NBD export {self.export}: {e.strerror or e}")
            elif not isinstance(e, (ConnectionLost, PeerProtocolError)):
                log.error("NBD export %s: receiver failed", self.export, exc_info=e)
                e = ConnectionLost(f"NBD export {self.export}: internal error: "
                                   f"{type(e).__name__}: {e}")
            if self._closed:
                e = ConnectionLost(f"NBD export {self.export}: closed")
            with self._lock:
                self._lost = e
                tags = [tag for tag, _ in self._pending.values()]
                self._pending.clear()
            self._on_lost(e, tags)

    def close(self) -> None:
        """Disconnect (NBD_CMD_DISC); requests not answered fail with ConnectionLost."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            lost = self._lost
        if lost is None:
            try:
                with self._send_lock:
                    self.sock.sendall(_REQUEST.pack(N.REQUEST_MAGIC, 0, N.CMD_DISC, 0, 0, 0))
            except OSError:
                pass
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if self._receiver is not threading.current_thread():
            self._receiver.join(10)
        self.sock.close()


def _recv_exactly(sock: socket.socket, view: memoryview) -> bool:
    """Fill ``view``; False when the peer closed first."""
    got, n = 0, len(view)
    while got < n:
        k = sock.recv_into(view[got:])
        if not k:
            return False
        got += k
    return True


def _recv(sock: socket.socket, n: int, export: str) -> bytes:
    buf = bytearray(n)
    try:
        complete = _recv_exactly(sock, memoryview(buf))
    except socket.timeout:
        raise ConnectError(f"NBD export {export}: no answer during the handshake") from None
    except OSError as e:
        raise ConnectError(f"NBD export {export}: {e.strerror or e}") from None
    if not complete:
        raise ConnectError(f"NBD export {export}: the server hung up during the handshake")
    return bytes(buf)


def _negotiate(sock: socket.socket, export: str) -> ExportInfo:
    """Fixed newstyle handshake, then NBD_OPT_GO for ``export`` (proto.md "Option types")."""
    magic, opt_magic, hflags = _GREETING.unpack(_recv(sock, _GREETING.size, export))
    if (magic, opt_magic) != (N.NBDMAGIC, N.IHAVEOPT):
        raise PeerProtocolError(f"NBD export {export}: not a fixed newstyle NBD server")
    if not hflags & N.HandshakeFlag.FIXED_NEWSTYLE:
        raise PeerProtocolError(f"NBD export {export}: the server is not fixed newstyle")
    flags = N.ClientFlag.FIXED_NEWSTYLE
    if hflags & N.HandshakeFlag.NO_ZEROES:
        flags |= N.ClientFlag.NO_ZEROES
    name = export.encode()
    # GO: name length, name, and the one information request (block sizes).
    body = struct.pack(">I", len(name)) + name + struct.pack(">HH", 1, N.Info.BLOCK_SIZE)
    try:
        sock.sendall(struct.pack(">I", flags) + _OPTION.pack(N.IHAVEOPT, N.Opt.GO, len(body)) + body)
    except OSError as e:
        raise ConnectError(f"NBD export {export}: {e.strerror or e}") from None
    size = tflags = None
    blocks = (1, 4096, N.DEFAULT_MAX_PAYLOAD)  # proto.md defaults when not told
    for _ in range(MAX_OPTION_REPLIES):
        rmagic, opt, rtype, length = _OPTION_REPLY.unpack(_recv(sock, _OPTION_REPLY.size, export))
        if rmagic != N.OPT_REPLY_MAGIC or opt != N.Opt.GO or length > MAX_OPTION_REPLY:
            raise PeerProtocolError(f"NBD export {export}: malformed option reply")
        payload = _recv(sock, length, export)
        if rtype == N.Rep.ACK:
            if size is None:
                raise PeerProtocolError(f"NBD export {export}: GO acknowledged without "
                                        "the export's size")
            return ExportInfo(size, tflags, *blocks)
        if rtype & (1 << 31):
            text = payload.decode(errors="replace")
            raise UsageError(f"NBD export {export} refused"
                             + (f": {text}" if text else f" (reply {rtype:#x})"))
        if rtype == N.Rep.INFO and len(payload) >= 2:
            (kind,) = struct.unpack_from(">H", payload)
            if kind == N.Info.EXPORT and len(payload) == 12:
                size, tflags = struct.unpack_from(">QH", payload, 2)
            elif kind == N.Info.BLOCK_SIZE and len(payload) == 14:
                blocks = struct.unpack_from(">III", payload, 2)
    raise PeerProtocolError(f"NBD export {export}: more than {MAX_OPTION_REPLIES} replies to GO")
