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
import socket
import time

from nvmecontrol.errors import ConnectError, ConnectionLost, PeerProtocolError, PeerTimeout
from nvmecontrol.transport.address import format_address
from nvmecontrol.wire import pdu as P
from nvmecontrol.wire.qpair import ControllerQueuePair, Established, HostQueuePair

# sendmsg takes at most IOV_MAX buffers (1024 on Linux).
_IOV_MAX = 1024


def set_nodelay(sock: socket.socket) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def sendmsg_all(sock: socket.socket, buffers: list) -> None:
    """Send every buffer, resuming after partial sends without copying."""
    # Empty buffers are dropped: a send that can only make zero progress
    # would otherwise loop forever.
    views = [v for v in (memoryview(b).cast("B") for b in buffers) if len(v)]
    while views:
        sent = sock.sendmsg(views[:_IOV_MAX])
        while sent:
            n = len(views[0])
            if sent >= n:
                sent -= n
                views.pop(0)
            else:
                views[0] = views[0][sent:]
                sent = 0


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
            last = f"{format_address(sockaddr[0], sockaddr[1])}: connection timed out"
            sock.close()
            continue
        except OSError as e:
            last = f"{format_address(sockaddr[0], sockaddr[1])}: {os.strerror(e.errno) if e.errno else e}"
            sock.close()
            continue
        set_nodelay(sock)
        return sock
    raise ConnectError(f"cannot connect to {last}" if last else "no address to connect to")


class TcpQueuePair:
    """A connected socket plus its queue-pair state machine (either role)."""

    def __init__(self, sock: socket.socket, qp: HostQueuePair | ControllerQueuePair,
                 *, timeout: float | None = 30.0):
        self.sock = sock
        self.qp = qp
        self.timeout = timeout
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

    def flush(self) -> None:
        out = self.qp.take_outgoing()
        if not out:
            return
        try:
            sendmsg_all(self.sock, out)
        except socket.timeout:
            raise PeerTimeout(f"{self._who()}: send timed out (peer not reading)") from None
        except OSError as e:
            raise ConnectionLost(f"{self._who()}: send failed: {os.strerror(e.errno or errno.EIO)}") from None

    def poll(self, deadline: float | None = None) -> list:
        """Receive once (waiting until ``deadline``, monotonic) and return events."""
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PeerTimeout(f"{self._who()}: no answer in time")
            self.sock.settimeout(remaining)
        buf = self.qp.decoder.get_buffer()
        try:
            n = self.sock.recv_into(buf)
        except socket.timeout:
            raise PeerTimeout(f"{self._who()}: no answer within {self._timeout_text(deadline)}") from None
        except OSError as e:
            raise ConnectionLost(f"{self._who()}: receive failed: {os.strerror(e.errno or errno.EIO)}") from None
        finally:
            if deadline is not None:
                # Later sends and deadline-less polls must not inherit what
                # was left of this deadline.
                self.sock.settimeout(self.timeout)
        if n == 0:
            self.qp.closed = True
            raise ConnectionLost(f"{self._who()}: connection closed by peer")
        self.qp.decoder.buffer_updated(n)
        try:
            events = self.qp.receive()
        except PeerProtocolError as e:
            self._terminate(e)
            raise
        self.flush()
        return events

    def _timeout_text(self, deadline) -> str:
        return f"{self.timeout:g} s" if self.timeout else "the deadline"

    def _terminate(self, e: PeerProtocolError) -> None:
        """Send the TermReq for ``e`` (best effort) and close."""
        if e.fes is not None and not self.qp.closed:
            self.qp.terminate(e.fes, e.fei, e.offending)
            try:
                self.sock.settimeout(1.0)
                sendmsg_all(self.sock, self.qp.take_outgoing())
            except OSError:
                pass
        self.close()

    def _who(self) -> str:
        if self.peer:
            return format_address(self.peer[0], self.peer[1])
        return "peer"

    def close(self) -> None:
        self.qp.closed = True
        try:
            self.sock.close()
        except OSError:
            pass

    @property
    def established(self) -> Established | None:
        return self.qp.established


