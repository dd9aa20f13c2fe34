"""Blocking TCP sockets driving a sans-IO NVMe/TCP queue pair.

One socket per queue pair (NVMe/TCP 2.1).  Every socket gets TCP_NODELAY:
without it a header and its payload sent apart stall 40 ms on delayed ACKs.
Receives go straight into the decoder's buffer (``recv_into``), and all
queued PDUs leave in one ``sendmsg`` with the payloads as memoryviews.

On a protocol error found in what the peer sent, we answer with the TermReq
the state machine chose and close, as NVMe/TCP 3.6.2.9 requires.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import threading
import time

from nvmecontrol.errors import ConnectError, ConnectionLost, PeerProtocolError, PeerTimeout
from nvmecontrol.transport.address import format_sockaddr
from nvmecontrol.wire import pdu as P
from nvmecontrol.wire.qpair import ControllerQueuePair, Established, HostQueuePair

# sendmsg takes at most IOV_MAX buffers (1024 on Linux).
_IOV_MAX = 1024


def set_nodelay(sock: socket.socket) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def sendmsg_all(sock: socket.socket, buffers: list) -> None:
    """Send every buffer, resuming after partial sends without copying.

    Every buffer must be byte-sized (bytes, bytearray, mmap or a ``B``
    memoryview): the fast path compares the bytes sent with their lengths.
    """
    if len(buffers) <= _IOV_MAX:
        # The usual case: one sendmsg takes everything.
        sent = sock.sendmsg(buffers)
        if sent == sum(map(len, buffers)):
            return
    else:
        sent = 0
    # Empty buffers are dropped: a send that can only make zero progress
    # would otherwise loop forever.
    views = [v for v in (memoryview(b).cast("B") for b in buffers) if len(v)]
    while True:
        while sent:
            n = len(views[0])
            if sent >= n:
                sent -= n
                views.pop(0)
            else:
                views[0] = views[0][sent:]
                sent = 0
        if not views:
            return
        sent = sock.sendmsg(views[:_IOV_MAX])


def dial(addrinfo: list, *, timeout: float) -> socket.socket:
    """Connect to the first address of ``addrinfo`` that answers (as getaddrinfo order).

    ``addrinfo`` is a list of (family, sockaddr).  Raises ConnectError naming
    the last failure.
    """
    last = None
    for family, sockaddr in addrinfo:
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.settimeout(timeout)
        try:
            sock.connect(sockaddr)
        except socket.timeout:
            last = f"{format_sockaddr(sockaddr)}: connection timed out"
            sock.close()
            continue
        except OSError as e:
            last = f"{format_sockaddr(sockaddr)}: {os.strerror(e.errno) if e.errno else e}"
            sock.close()
            continue
        set_nodelay(sock)
        return sock
    raise ConnectError(f"cannot connect to {last}" if last else "no address to connect to")


class TcpQueuePair:
    """A connected TCP socket driving a queue-pair state machine (either role).

    The TCP implementation of :class:`~nvmecontrol.transport.driver.QueueDriver`.
    ``lock`` guards the queue pair's state (submissions, ``outgoing``) when
    several threads use it; ``send_lock`` makes each ``sendmsg`` sequence
    atomic on the socket.  The synchronous path (``poll``) needs neither.
    """

    def __init__(self, sock: socket.socket, qp: HostQueuePair | ControllerQueuePair,
                 *, timeout: float | None = 30.0):
        self.sock = sock
        self.qp = qp
        self.timeout = timeout
        self.lock = threading.Lock()
        self.send_lock = threading.Lock()
        self._waiters = 0  # threads in wait_readable
        sock.settimeout(timeout)
        try:
            self.peer = sock.getpeername()
        except OSError:
            self.peer = None

    @classmethod
    def connect_host(cls, addrinfo: list, *, timeout: float = 30.0, **qp_args) -> "TcpQueuePair":
        """Dial, then run connection initialization (ICReq/ICResp) as host."""
        sock = dial(addrinfo, timeout=timeout)
        tq = cls(sock, HostQueuePair(**qp_args), timeout=timeout)
        try:
            tq.qp.start()
            tq.flush()
            deadline = time.monotonic() + timeout
            while tq.qp.established is None:
                tq.poll(deadline)
        except BaseException:
            tq.close()
            raise
        return tq

    def set_timeout(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.sock.settimeout(timeout)

    def wait_readable(self, timeout: float) -> bool:
        """True once data (or the end of the stream) can be received; False after ``timeout``."""
        self._waiters += 1
        try:
            readable, _, _ = select.select([self.sock], [], [], timeout)
        except (OSError, ValueError):
            return True  # closed under us: the next receive says so
        finally:
            self._waiters -= 1
        return bool(readable)

    # -- sending --
    def send(self, buffers: list) -> None:
        """Send ``buffers`` (one writer at a time); errors become ours."""
        try:
            with self.send_lock:
                sendmsg_all(self.sock, buffers)
        except socket.timeout:
            raise PeerTimeout(f"{self.peer_text}: send timed out (peer not reading)") from None
        except OSError as e:
            raise ConnectionLost(f"{self.peer_text}: send failed: "
                                 f"{os.strerror(e.errno or errno.EIO)}") from None

    def send_nowait(self, buffers: list) -> int:
        """One ``sendmsg`` that does not block; returns the bytes it took (0: none fit)."""
        try:
            with self.send_lock:
                return self.sock.sendmsg(buffers[:_IOV_MAX], [], socket.MSG_DONTWAIT)
        except BlockingIOError:
            return 0
        except OSError as e:
            raise ConnectionLost(f"{self.peer_text}: send failed: "
                                 f"{os.strerror(e.errno or errno.EIO)}") from None

    def flush(self) -> None:
        out = self.qp.take_outgoing()
        if out:
            self.send(out)

    # -- receiving --
    def _fill(self) -> None:
        """One ``recv_into`` the decoder's buffer, with the socket's current timeout."""
        try:
            n = self.sock.recv_into(self.qp.decoder.get_buffer())
        except socket.timeout:
            raise
        except OSError as e:
            raise ConnectionLost(f"{self.peer_text}: receive failed: "
                                 f"{os.strerror(e.errno or errno.EIO)}") from None
        if n == 0:
            self.qp.closed = True
            raise ConnectionLost(f"{self.peer_text}: connection closed by peer")
        self.qp.decoder.buffer_updated(n)

    def poll(self, deadline: float | None = None) -> list:
        """Receive once (waiting until ``deadline``, monotonic) and return events."""
        try:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PeerTimeout(f"{self.peer_text}: no answer in time")
                self.sock.settimeout(remaining)
            try:
                self._fill()
            finally:
                if deadline is not None:
                    # Later sends and deadline-less polls must not inherit what
                    # was left of this deadline.
                    self.sock.settimeout(self.timeout)
        except socket.timeout:
            raise PeerTimeout(f"{self.peer_text}: no answer within "
                              f"{self._timeout_text()}") from None
        except OSError as e:
            # The socket was closed under us (another thread tore the
            # association down): settimeout says EBADF.
            raise ConnectionLost(f"{self.peer_text}: {os.strerror(e.errno or errno.EIO)}") from None
        try:
            events = self.qp.receive()
        except PeerProtocolError as e:
            self.terminate(e)
            self.close()
            raise self._from_peer(e)
        self.flush()
        return events

    def serve(self, on_batch, *, deadline=None) -> None:
        """The data path's receive loop: one receive per wakeup, then ``on_batch()``.

        ``on_batch`` decodes and answers what arrived (``qp.receive()``, under
        ``lock`` when other threads use the queue pair) and returns False to
        stop.  ``deadline()``, when given, is asked before each receive for a
        monotonic time by which data must arrive (None: wait for ever).
        A protocol error raised by ``on_batch`` is answered with its TermReq
        before it propagates; the end of the stream raises ConnectionLost.
        """
        fill = self._fill
        timed = False
        while True:
            if deadline is not None:
                when = deadline()
                if when is not None:
                    remaining = when - time.monotonic()
                    if remaining <= 0:
                        raise PeerTimeout(f"{self.peer_text}: deadline passed")
                    self.sock.settimeout(remaining)
                    timed = True
                elif timed:
                    self.sock.settimeout(self.timeout)
                    timed = False
            try:
                fill()
            except socket.timeout:
                raise PeerTimeout(f"{self.peer_text}: nothing received in time") from None
            try:
                if on_batch() is False:
                    return
            except PeerProtocolError as e:
                self.terminate(e)
                raise self._from_peer(e)

    def _from_peer(self, e: PeerProtocolError) -> PeerProtocolError:
        """``e`` with the peer named in its message (once), and a hint when
        the very first PDU's type was not NVMe/TCP's at all."""
        peer = self.peer_text
        text = str(e)
        if peer not in text:
            text = f"{text} from {peer}"
            if self.qp.established is None and e.fei == P.FEI_TYPE:
                other = "controller" if self.qp.role == P.ROLE_HOST else "host"
                text += f": not an NVMe/TCP {other}?"
            e.args = (text,)
        return e

    def _timeout_text(self) -> str:
        return f"{self.timeout:g} s" if self.timeout else "the deadline"

    # -- ending --
    def terminate(self, e: PeerProtocolError) -> None:
        """Send the TermReq for ``e`` (best effort, bounded); the caller closes."""
        with self.lock:
            if e.fes is None or self.qp.closed:
                self.qp.closed = True
                return
            self.qp.terminate(e.fes, e.fei, e.offending)
            out = self.qp.take_outgoing()
        # Bounded: a thread stuck in a send (the peer is not reading) must not
        # keep us from closing; the TermReq is best effort.
        if not self.send_lock.acquire(timeout=1.0):
            return
        try:
            self.sock.settimeout(1.0)
            sendmsg_all(self.sock, out)
        except OSError:
            pass
        finally:
            self.send_lock.release()

    @property
    def peer_text(self) -> str:
        if self.peer and isinstance(self.peer, tuple):
            return format_sockaddr(self.peer)
        return "peer"

    def abort(self) -> None:
        """Wake a thread blocked in ``serve`` from another thread (it then closes).

        shutdown() rather than close(): closing a descriptor another thread is
        blocked on could hand its number to a new socket.
        """
        self.qp.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        self.qp.closed = True
        try:
            if self._waiters:
                # A thread in wait_readable holds the socket open in the
                # kernel: close() alone would send no FIN until it wakes.
                self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    @property
    def established(self) -> Established | None:
        return self.qp.established
