"""Accepted connections that have not spoken yet: cheap until the host sends its ICReq.

The host speaks first on an NVMe/TCP connection (ICReq, NVMe/TCP 3.6.1),
so nvmfd spends nothing on a connection but its descriptor until a whole
ICReq (or whatever the peer sends instead, up to its first PDU) has
arrived: one thread with a selector accepts on every listening socket and
collects those first bytes from every such connection.  Then the
connection is handed to the server (``Server.admit``), which gives it its
thread, receive buffer and queue pair, the bytes already received fed to
its decoder.  Thousands of idle or half-open connections therefore cost a
descriptor and a small record each, not a thread and buffers.

Limits, each with its reason:

* Time: a connection must send its ICReq within ``HANDSHAKE_TIMEOUT_S``
  of being accepted, or it is closed; the rest of the handshake (ICResp,
  Connect) runs on the connection's thread against the same deadline.
* Connections past their ICReq that have not completed Connect yet hold a
  thread and buffers: at most ``MAX_HANDSHAKING`` of them, the oldest
  closed for a new one (``Server.admit``), as idle ones are here.
* Descriptors: pending connections never take the last ``FD_RESERVE``
  descriptors of the daemon's limit, which stay for served connections,
  namespaces, the control socket and its clients.  When there is no room,
  the oldest pending connection is closed to admit the new one: a flood of
  connections that never speak cannot lock out a real host, which sends
  its ICReq as soon as it is connected.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import selectors
import socket
import threading
import time
from collections import OrderedDict

from nvmecontrol.target import constants as K
from nvmecontrol.wire import pdu as P

log = logging.getLogger("nvmfd")

# Bytes collected before a connection is handed over: a whole ICReq (or
# the first 8 bytes, when they are not an ICReq's header).
ICREQ_LEN = P.IC_HLEN
# Descriptors kept free of pending connections (see the module docstring):
# control clients (MAX_CONTROL_CLIENTS), namespaces added at run time and
# removed ones in their close grace period, log and pid files.
FD_RESERVE = 128
# Pending connections at most, whatever the descriptor limit: each costs
# about 1 KiB here and a socket in the kernel.
MAX_PENDING = 32768
# Pending connections at least, however low the descriptor limit: below
# this the reserve gives way (accept fails with EMFILE when truly out, and
# then the oldest pending connection makes room).
MIN_PENDING = 16
# Connections admitted (thread, buffers) that have not completed Connect:
# a host opens all its queues' connections before it connects them one by
# one (Linux: up to 16 granted I/O queues each), so 8 hosts setting up at
# once fit; beyond it the oldest is closed, so a flood of clients that send
# an ICReq and stop cannot hold a thread each until HANDSHAKE_TIMEOUT_S.
MAX_HANDSHAKING = 128
# Connections accepted per listening socket per wakeup, so that one flooded
# port cannot starve the collection of ICReqs from connections already in.
ACCEPT_BATCH = 64
# Out of descriptors with no silent connection left to close: how long the
# accept thread pauses before trying again (the listener stays readable).
EMFILE_PAUSE_S = 0.05
# Repeated notices (connections dropped or refused under pressure) are
# logged at most this often, with a count.
NOTICE_INTERVAL_S = 10.0


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft descriptor limit to the hard one; returns (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft, hard


def _open_descriptors() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 64  # no procfs: a guess on the safe side


class _Pending:
    __slots__ = ("sock", "port", "deadline", "got")

    def __init__(self, sock: socket.socket, port, deadline: float):
        self.sock = sock
        self.port = port
        self.deadline = deadline
        self.got = bytearray()


class Notices:
    """Counts of one kind of event, logged at most every NOTICE_INTERVAL_S."""

    def __init__(self, level: int, text: str):
        self.level = level
        self.text = text
        self.count = 0
        self.last = -NOTICE_INTERVAL_S

    def add(self, n: int = 1) -> None:
        self.count += n
        now = time.monotonic()
        if now - self.last >= NOTICE_INTERVAL_S:
            log.log(self.level, self.text, self.count)
            self.count = 0
            self.last = now


class Lobby:
    """The accept thread: listening sockets and connections waiting for their ICReq."""

    def __init__(self, server, ports: list):
        self.server = server
        self.ports = ports
        self.pending: OrderedDict[int, _Pending] = OrderedDict()  # by fd, oldest first
        self._stop = False
        self._waker_r, self._waker_w = socket.socketpair()
        self._waker_r.setblocking(False)
        self._thread: threading.Thread | None = None
        self._timed_out = Notices(logging.INFO,
                                   "closed %d connections that sent no ICReq in time")
        self._evicted = Notices(logging.WARNING, "descriptors short: closed %d idle "
                                 "connections (oldest first) to accept new ones")
        self._refused = Notices(logging.WARNING,
                                 "refused %d connections (no descriptor or connection left)")
        self._sel: selectors.BaseSelector | None = None
        self._limit = 0
        # Listeners added or removed at run time (configuration reload),
        # applied by the accept thread, which owns the selector.
        self._changes: list[tuple[bool, object]] = []
        self._changes_lock = threading.Lock()

    def start(self) -> None:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        # What is open now (namespaces, listeners, control socket) is not ours
        # to count again; FD_RESERVE covers what opens later.
        self._limit = max(MIN_PENDING,
                          min(MAX_PENDING, soft - FD_RESERVE - _open_descriptors()))
        self._thread = threading.Thread(target=self._run, name="nvmfd-accept", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop = True
        try:
            self._waker_w.send(b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        else:
            self._waker_r.close()  # the thread closes it when it ran
        self._waker_w.close()

    def add_port(self, port) -> None:
        """Accept on ``port`` (its socket bound and listening) from now on."""
        self._change(True, port)

    def remove_port(self, port) -> None:
        """Stop accepting on ``port``: its listener and its pending connections
        are closed by the accept thread (it owns them)."""
        self._change(False, port)

    def _change(self, add: bool, port) -> None:
        with self._changes_lock:
            self._changes.append((add, port))
        try:
            self._waker_w.send(b"x")
        except OSError:
            pass

    def _apply_changes(self) -> None:
        with self._changes_lock:
            changes, self._changes = self._changes, []
        sel = self._sel
        for add, port in changes:
            if add:
                port.sock.setblocking(False)
                sel.register(port.sock, selectors.EVENT_READ, port)
                continue
            for p in [p for p in self.pending.values() if p.port is port]:
                self._drop(p)
            sock, port.sock = port.sock, None
            if sock is not None:
                try:
                    sel.unregister(sock)
                except (KeyError, ValueError):
                    pass  # shut down before: _accept unregistered it
                sock.close()

    # -- the thread --
    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        try:
            sel.register(self._waker_r, selectors.EVENT_READ, None)
            for port in self.ports:
                port.sock.setblocking(False)
                sel.register(port.sock, selectors.EVENT_READ, port)
            self._sel = sel
            while not self._stop:
                timeout = None
                if self.pending:
                    oldest = next(iter(self.pending.values()))
                    timeout = max(0.0, oldest.deadline - time.monotonic())
                for key, _mask in sel.select(timeout):
                    data = key.data
                    if data is None:
                        try:
                            self._waker_r.recv(4096)
                        except OSError:
                            pass
                        self._apply_changes()
                        continue  # the waker: the loop condition decides
                    try:
                        if type(data) is _Pending:
                            self._receive(data)
                        else:
                            self._accept(key.fileobj, data)
                    except Exception:  # a bug of ours: costs that connection only
                        log.exception("accept thread: internal error")
                        if type(data) is _Pending and data.sock.fileno() in self.pending:
                            self._drop(data)
                self._expire(time.monotonic())
        except Exception:  # a bug of ours in the loop itself: no more accepts, say so
            log.exception("accept thread: internal error; no more connections accepted")
        finally:
            for p in self.pending.values():
                p.sock.close()
            self.pending.clear()
            # Listeners removed just before the stop: no one else closes them.
            with self._changes_lock:
                changes, self._changes = self._changes, []
            for add, port in changes:
                if not add and port.sock is not None:
                    port.sock.close()
                    port.sock = None
            sel.close()
            self._waker_r.close()

    def _accept(self, lsock: socket.socket, port) -> None:
        pending = self.pending
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _addr = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Our budget was wrong (descriptors opened elsewhere):
                    # make room from the idle ones, or wait for the next wakeup.
                    if pending:
                        self._drop(next(iter(pending.values())))
                        self._evicted.add()
                        continue
                    self._refused.add()
                    # The listener stays readable: pause rather than spin.
                    time.sleep(EMFILE_PAUSE_S)
                    return
                if e.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue  # the peer gave up before we accepted
                if self._stop or e.errno == errno.EINVAL:  # shut down: stopping
                    self._sel.unregister(lsock)
                    return
                log.warning("port %d: accept failed: %s", port.portid, e.strerror or e)
                return
            if len(pending) >= self._limit - self.server.connection_count():
                if not pending:
                    sock.close()
                    self._refused.add()
                    continue
                self._drop(next(iter(pending.values())))
                self._evicted.add()
            sock.setblocking(False)
            p = _Pending(sock, port, time.monotonic() + K.HANDSHAKE_TIMEOUT_S)
            pending[sock.fileno()] = p
            self._sel.register(sock, selectors.EVENT_READ, p)

    def _receive(self, p: _Pending) -> None:
        try:
            chunk = p.sock.recv(ICREQ_LEN - len(p.got))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(p)
            return
        if not chunk:
            self._drop(p)
            return
        got = p.got
        got += chunk
        if len(got) < P.CH_SIZE:
            return
        # Anything but the header of an ICReq goes to the queue pair at once,
        # which answers it (a TermReq naming the field, as before the lobby).
        if len(got) >= ICREQ_LEN or got[0] != P.PduType.ICReq \
                or int.from_bytes(got[4:8], "little") != ICREQ_LEN:
            self._sel.unregister(p.sock)
            del self.pending[p.sock.fileno()]
            p.sock.setblocking(True)
            if not self.server.admit(p.sock, p.port, bytes(got), p.deadline):
                self._refused.add()

    def _drop(self, p: _Pending) -> None:
        self._sel.unregister(p.sock)
        del self.pending[p.sock.fileno()]
        p.sock.close()

    def _expire(self, now: float) -> None:
        pending = self.pending
        n = 0
        while pending:
            p = next(iter(pending.values()))
            if p.deadline > now:
                break
            self._drop(p)
            n += 1
        if n:
            self._timed_out.add(n)
