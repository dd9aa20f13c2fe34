"""A fault-injection TCP proxy for NVMe/TCP tests (loopback, host <-> target).

The proxy listens on 127.0.0.1, dials the target for every connection it
accepts, and forwards each direction PDU by PDU: it reads the common header
(type, flags, HLEN, PDO, PLEN; NVMe/TCP 1.0 section 3.6.1) and waits for the
whole PDU before passing it on, so a fault can be aimed at "the 5th C2HData
of an I/O queue" or "the data digest of an H2CData".  It learns which queue a
connection carries from the Fabrics Connect command's QID (SQE bytes 42-43),
so faults can target the admin queue or the I/O queues alone.

Faults (:class:`Fault`) are matched per connection, in the order given; the
first that matches a PDU fires.  Actions:

``drop``      swallow the PDU, the connection stays up
``close``     FIN both sides instead of forwarding the PDU
``reset``     RST both sides (SO_LINGER 0) instead of forwarding the PDU
``stall``     stop forwarding this direction for ``seconds`` (0: until
              :meth:`FaultProxy.thaw`), then go on with what was held
``delay``     hold this PDU ``seconds``, then forward it
``truncate``  forward the first ``keep`` bytes of the PDU, then FIN
``corrupt``   flip the bits of one byte (``spot``: ``hdgst``, ``ddgst``,
              ``data``, ``psh`` or an offset inside the PDU)
``mutate``    forward ``mutator(rng, pdu)`` instead (any bytes: the fuzzers'
              hostile PDUs); the proxy keeps parsing its input, so the PDUs
              after it are still found

A fault given ``at_byte`` instead of a PDU selector fires where that byte of
the direction's stream passes (the PDU is split there).  A stream that is
not NVMe/TCP (PLEN below 8 or absurdly large) is forwarded raw from that point
on, without faults.  :meth:`FaultProxy.freeze` holds every direction of every
connection, new ones included, like a controller process that stopped.

Works the same against nvmfd and against the kernel target of the interop
tier (a qemu port forward on 127.0.0.1): it only needs an address to dial.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

H2C = "h2c"  # host to controller
C2H = "c2h"  # controller to host

ACTIONS = frozenset({"drop", "close", "reset", "stall", "delay", "truncate", "corrupt",
                     "mutate"})
# NVMe/TCP PDU types (section 3.6.2) by name, for readable faults and reports.
PDU_TYPES = {"ICReq": 0x00, "ICResp": 0x01, "H2CTermReq": 0x02, "C2HTermReq": 0x03,
             "CapsuleCmd": 0x04, "CapsuleResp": 0x05, "H2CData": 0x06, "C2HData": 0x07,
             "R2T": 0x09}
TYPE_NAMES = {v: k for k, v in PDU_TYPES.items()}
CH = struct.Struct("<BBBBI")  # type, flags, hlen, pdo, plen
F_HDGST, F_DDGST = 0x01, 0x02
OPC_FABRICS, FCTYPE_CONNECT = 0x7F, 0x01
# Larger than any PDU a test sends (MDTS 1 MiB plus headers); a bigger PLEN
# means the stream is not NVMe/TCP (or is hostile) and is forwarded raw.
MAX_PARSED_PLEN = 8 << 20
RECV_SIZE = 1 << 20


@dataclass
class Fault:
    """One fault: where it fires (direction, PDU type, Nth match, queue,
    connections) and what it does there (``action`` and its arguments)."""

    action: str
    direction: str = C2H
    pdu: str | None = None  # a PDU_TYPES name; None: any PDU
    nth: int | tuple[int, int] = 1  # Nth matching PDU of a connection; (lo, hi): seeded pick
    every: bool = False  # fire at every Nth match, not only the first
    probability: float | None = None  # instead of nth: each match fires with this chance
    at_byte: int | None = None  # fire at this byte offset of the direction instead
    queue: str | None = None  # "admin", "io" or None (any, and before Connect)
    connections: range | None = None  # accept-order numbers it applies to; None: all
    limit: int | None = None  # firings over all connections; None: no limit
    spot: str | int = "data"  # corrupt: hdgst, ddgst, data, psh or an offset in the PDU
    seconds: float = 0.0  # stall, delay
    keep: int = 0  # truncate
    mutator: object = None  # mutate: (random.Random, bytearray) -> bytes
    fired: int = 0

    def __post_init__(self):
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}")
        if self.direction not in (H2C, C2H):
            raise ValueError(f"direction must be {H2C!r} or {C2H!r}")
        if self.pdu is not None and self.pdu not in PDU_TYPES:
            raise ValueError(f"unknown PDU type {self.pdu!r}")

    def describe(self) -> str:
        where = (f"byte {self.at_byte}" if self.at_byte is not None else
                 f"{self.probability:.0%} of {self.pdu or 'PDU'}s" if self.probability else
                 f"{'every ' if self.every else ''}#{self.nth} {self.pdu or 'PDU'}")
        q = f" on {self.queue} queues" if self.queue else ""
        return f"{self.action} {self.direction} at {where}{q}"


@dataclass
class _Direction:
    name: str
    src: socket.socket
    dst: socket.socket
    offset: int = 0  # bytes forwarded or consumed so far
    # Keyed by id(fault): faults come and go (clear, add) during a test.
    matches: Counter = field(default_factory=Counter)  # PDUs that matched the fault
    nth: dict = field(default_factory=dict)  # the fault's N on this connection
    raw: bool = False


class _Connection:
    def __init__(self, proxy: "FaultProxy", number: int, host: socket.socket,
                 target: socket.socket):
        self.proxy, self.number = proxy, number
        self.host, self.target = host, target
        self.qid: int | None = None
        self.lock = threading.Lock()
        self.ended = threading.Event()
        self.stall_until = {H2C: 0.0, C2H: 0.0}  # monotonic; inf: until thaw
        self.dirs = {H2C: _Direction(H2C, host, target), C2H: _Direction(C2H, target, host)}
        self.open_dirs = 2

    @property
    def queue(self) -> str | None:
        return None if self.qid is None else ("admin" if self.qid == 0 else "io")

    def end(self, how: str) -> None:
        """Close both sockets: ``reset`` sends RST, anything else FIN.  SHUT_RD
        first wakes the other direction's thread blocked in recv() (a bare
        close() would not, and the RST would wait for it)."""
        with self.lock:
            if self.ended.is_set():
                return
            self.ended.set()
        self.proxy._ended(self, how)  # counted before either peer can see the end
        for s in (self.host, self.target):
            try:
                if how == "reset":
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.shutdown(socket.SHUT_RD)
                else:
                    s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


class FaultProxy:
    """``with FaultProxy(("127.0.0.1", port), faults) as p:`` and dial ``p.port``."""

    def __init__(self, target: tuple[str, int], faults=(), *, seed: int = 0):
        self.target = target
        self.faults: list[Fault] = list(faults)
        self.retired: list[Fault] = []  # cleared faults, kept for fired() and report()
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.connections = 0
        self.live: set[_Connection] = set()
        self.pdus = Counter()  # (direction, type name) -> PDUs forwarded or faulted
        self.endings = Counter()  # how connections ended: fin, reset, refused, ...
        self.events: list[str] = []  # one line per fault fired
        self._frozen = threading.Event()
        self._wake = threading.Condition(self.lock)
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True,
                                          name="fault-proxy-accept")

    # -- life cycle --
    def start(self) -> "FaultProxy":
        self._acceptor.start()
        return self

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping = True
        self.thaw()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self._acceptor.join(10)
        for c in list(self.live):
            c.end("fin")
        for t in list(self._threads):
            t.join(10)

    # -- controls --
    def add(self, fault: Fault) -> Fault:
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        """No more faults from here on (their counts stay in the report)."""
        with self.lock:
            self.retired += self.faults
            self.faults = []

    def freeze(self) -> None:
        """Hold every byte in both directions, new connections included."""
        self._frozen.set()

    def thaw(self) -> None:
        with self._wake:
            self._frozen.clear()
            for c in self.live:
                c.stall_until = {H2C: 0.0, C2H: 0.0}
            self._wake.notify_all()

    def reset_all(self, how: str = "reset") -> int:
        """End every live connection now; returns how many there were."""
        conns = list(self.live)
        for c in conns:
            c.end(how)
        return len(conns)

    def fired(self) -> int:
        return sum(f.fired for f in self.retired + self.faults)

    def report(self) -> str:
        lines = [f"proxy -> {self.target[0]}:{self.target[1]}: {self.connections} connections, "
                 f"endings {dict(self.endings)}"]
        for f in self.retired + self.faults:
            lines.append(f"  {f.describe()}: fired {f.fired}")
        pdus = ", ".join(f"{d} {t} {n}" for (d, t), n in sorted(self.pdus.items()))
        lines.append(f"  PDUs seen: {pdus}")
        return "\n".join(lines)

    # -- threads --
    def _accept_loop(self) -> None:
        while not self._stopping:
            try:
                host, _ = self.listener.accept()
            except OSError:
                return
            try:
                target = socket.create_connection(self.target, timeout=5)
                target.settimeout(None)
            except OSError:
                # Nothing listening behind us: refuse as the target would (RST).
                host.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                host.close()
                with self.lock:
                    self.endings["refused"] += 1
                continue
            for s in (host, target):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                conn = _Connection(self, self.connections, host, target)
                self.connections += 1
                self.live.add(conn)
                self._threads = [t for t in self._threads if t.is_alive()]
                for d in (H2C, C2H):
                    t = threading.Thread(target=self._pump, args=(conn, conn.dirs[d]),
                                         daemon=True, name=f"fault-proxy-{d}-{conn.number}")
                    self._threads.append(t)
                    t.start()

    def _ended(self, conn: _Connection, how: str) -> None:
        with self._wake:
            self.live.discard(conn)
            self.endings[how] += 1
            self._wake.notify_all()

    def _hold(self, conn: _Connection, d: str) -> None:
        """Wait while frozen or while this direction is stalled."""
        with self._wake:
            while not conn.ended.is_set():
                now = time.monotonic()
                until = conn.stall_until[d]
                if self._frozen.is_set():
                    self._wake.wait(0.05)
                elif until > now:
                    self._wake.wait(min(until - now, 0.05))
                else:
                    return

    def _pump(self, conn: _Connection, d: _Direction) -> None:
        buf = bytearray()
        while not conn.ended.is_set():
            self._hold(conn, d.name)
            try:
                chunk = d.src.recv(RECV_SIZE)
            except OSError:
                chunk = b""
            if not chunk:
                self._hold(conn, d.name)  # a frozen peer's FIN is held like its bytes
                self._half_close(conn, d, buf)
                return
            if d.raw:
                self._send(conn, d, chunk)
                continue
            buf += chunk
            while len(buf) >= CH.size and not d.raw:
                plen = CH.unpack_from(buf)[4]
                if plen < CH.size or plen > MAX_PARSED_PLEN:
                    d.raw = True
                    self._send(conn, d, bytes(buf))
                    buf.clear()
                    break
                if len(buf) < plen:
                    break
                pdu = bytearray(buf[:plen])
                del buf[:plen]
                if not self._forward(conn, d, pdu):
                    return

    def _half_close(self, conn: _Connection, d: _Direction, leftover: bytearray) -> None:
        """EOF from one side: pass on what was left (a partial PDU) and the FIN."""
        if conn.ended.is_set():
            return
        if leftover:
            self._send(conn, d, bytes(leftover))
        try:
            d.dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        with conn.lock:
            conn.open_dirs -= 1
            last = conn.open_dirs == 0
        if last:
            conn.end("fin")

    def _send(self, conn: _Connection, d: _Direction, data) -> bool:
        try:
            d.dst.sendall(data)
        except OSError:
            conn.end("fin")
            return False
        d.offset += len(data)
        return True

    def _learn_queue(self, conn: _Connection, d: _Direction, ptype: int, pdu: bytearray) -> None:
        # Fabrics Connect in the first CapsuleCmd: SQE at 8, opcode, FCTYPE at
        # SQE byte 4, QID in CDW10 bits 31:16 (SQE bytes 42-43).
        if d.name == H2C and conn.qid is None and ptype == 0x04 and len(pdu) >= 8 + 44 \
                and pdu[8] == OPC_FABRICS and pdu[8 + 4] == FCTYPE_CONNECT:
            conn.qid = struct.unpack_from("<H", pdu, 8 + 42)[0]

    def _match(self, conn: _Connection, d: _Direction, ptype: int, plen: int):
        """(fault, cut offset in the PDU) of the first fault firing on this PDU."""
        with self.lock:
            for f in self.faults:
                if f.direction != d.name or (f.limit is not None and f.fired >= f.limit):
                    continue
                if f.connections is not None and conn.number not in f.connections:
                    continue
                if f.queue is not None and f.queue != conn.queue:
                    continue
                key = id(f)
                if f.at_byte is not None:
                    if d.offset <= f.at_byte < d.offset + plen and not d.matches[key]:
                        d.matches[key] = 1
                        return f, f.at_byte - d.offset
                    continue
                if f.pdu is not None and PDU_TYPES[f.pdu] != ptype:
                    continue
                if f.probability is not None:
                    if self.rng.random() < f.probability:
                        return f, None
                    continue
                if key not in d.nth:
                    d.nth[key] = (self.rng.randint(*f.nth) if isinstance(f.nth, tuple)
                                  else f.nth)
                d.matches[key] += 1
                n, count = d.nth[key], d.matches[key]
                if count == n or (f.every and count % n == 0):
                    return f, None
        return None, None

    def _forward(self, conn: _Connection, d: _Direction, pdu: bytearray) -> bool:
        # A freeze that began while this PDU was being received holds it too.
        self._hold(conn, d.name)
        if conn.ended.is_set():
            return False
        ptype, flags, hlen, pdo, plen = CH.unpack_from(pdu)
        self._learn_queue(conn, d, ptype, pdu)
        name = TYPE_NAMES.get(ptype, f"type{ptype:#x}")
        with self.lock:
            self.pdus[(d.name, name)] += 1
        f, cut = self._match(conn, d, ptype, plen)
        if f is None:
            return self._send(conn, d, pdu)
        spot = self._spot(f, flags, hlen, pdo, plen) if f.action == "corrupt" else None
        if f.action == "corrupt" and spot is None:
            return self._send(conn, d, pdu)  # no such field in this PDU: not a hit
        with self.lock:
            f.fired += 1
            self.events.append(f"conn {conn.number} ({conn.queue or '?'}) {d.name} {name} "
                               f"@{d.offset}: {f.action}")
        if f.action in ("reset", "close"):
            if cut:
                self._send(conn, d, pdu[:cut])
            conn.end("reset" if f.action == "reset" else "fin")
            return False
        if f.action == "drop":
            d.offset += len(pdu)
            return True
        if f.action == "mutate":
            with self.lock:
                out = f.mutator(self.rng, pdu)
            return self._send(conn, d, out) if out else True
        if f.action == "truncate":
            self._send(conn, d, pdu[:cut if cut is not None else f.keep])
            conn.end("fin")
            return False
        if f.action == "corrupt":
            at = cut if cut is not None else spot
            pdu[at] ^= 0xFF
            return self._send(conn, d, pdu)
        if f.action == "delay":
            if cut and not self._send(conn, d, pdu[:cut]):
                return False
            conn.ended.wait(f.seconds)
            return self._send(conn, d, pdu[cut or 0:])
        # stall: hold from here (cut or PDU start) for seconds or until thaw
        if cut and not self._send(conn, d, pdu[:cut]):
            return False
        conn.stall_until[d.name] = time.monotonic() + f.seconds if f.seconds else float("inf")
        self._hold(conn, d.name)
        if conn.ended.is_set():
            return False
        return self._send(conn, d, pdu[cut or 0:])

    @staticmethod
    def _spot(f: Fault, flags: int, hlen: int, pdo: int, plen: int) -> int | None:
        """The byte ``corrupt`` flips, or None when the PDU has no such field."""
        if isinstance(f.spot, int):
            return f.spot if f.spot < plen else None
        if f.spot == "hdgst":
            return hlen if flags & F_HDGST else None
        if f.spot == "ddgst":
            return plen - 1 if flags & F_DDGST else None
        if f.spot == "data":
            return pdo if pdo and pdo < plen else None
        if f.spot == "psh":
            return CH.size if hlen > CH.size else None
        raise ValueError(f"unknown corrupt spot {f.spot!r}")
