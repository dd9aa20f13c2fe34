"""The nvmfd server: listeners, the association registry, keep-alive, control.

One listening socket per port (each serves the discovery controller and
every I/O subsystem linked to it, as the Linux target does), one accept
thread holding every connection until its ICReq arrived (``lobby.py``),
then one thread per connection (``connection.py``), one housekeeping
thread that ends associations whose keep-alive timer ran out, and the
control socket (``control.py``).

``lock`` guards the registry (controllers, connections, subsystem
namespaces, GENCTR).  It is never held while sending on a connection:
asynchronous event notices are posted from a separate thread after the
registry changed, so a host that stopped reading cannot stall the control
socket.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time

from nvmecontrol.errors import NotFound, UsageError
from nvmecontrol.target import constants as K
from nvmecontrol.target.config import (DEFAULT_BLOCK_SIZE, MAX_NSID, MEM_PREFIXES,
                                       NamespaceConfig, PortConfig, TargetConfig, check_nsid,
                                       dump_nvmetcli)
from nvmecontrol.target.connection import Connection
from nvmecontrol.target.control import ControlServer
from nvmecontrol.target.controller import EVENT_DISC, Controller
from nvmecontrol.target.discovery import is_wildcard
from nvmecontrol.target.lobby import Lobby
from nvmecontrol.target.subsystem import Subsystem
from nvmecontrol.transport.address import format_address

log = logging.getLogger("nvmfd")

# Connections the kernel completes before we accept them: generous, so a
# burst of connects (or a flood of idle ones, which the lobby sheds oldest
# first) does not make real hosts' SYNs wait for a retransmission.
LISTEN_BACKLOG = 1024


class Port:
    """A listening endpoint (nvmet's "port"): address, subsystems, referrals."""

    def __init__(self, cfg: PortConfig):
        self.cfg = cfg
        self.portid = cfg.portid
        self.traddr = cfg.traddr
        self.trsvcid = cfg.trsvcid
        self.adrfam = cfg.adrfam
        self.treq = cfg.treq
        self.subsystems = cfg.subsystems
        self.referrals = cfg.referrals
        self.sock: socket.socket | None = None

    @property
    def address(self) -> str:
        return format_address(self.traddr, self.trsvcid)


class Server:
    def __init__(self, config: TargetConfig, *, allow_hdgst: bool = True,
                 allow_ddgst: bool = True, read_only: bool = False,
                 log_associations: bool = False, control_path: str | None = None,
                 clock=time.monotonic):
        self.config = config
        # The time seam: keep-alive timers are told the time by it (tests
        # pass a made-up clock and wake the housekeeping thread).
        self.clock = clock
        self.allow_hdgst = allow_hdgst
        self.allow_ddgst = allow_ddgst
        self.read_only = read_only
        self.log_associations = log_associations
        self.control_path = control_path
        self.subsystems: dict[str, Subsystem] = {
            s.nqn: Subsystem(s, read_only=read_only) for s in config.subsystems}
        self.ports = [Port(p) for p in config.ports]
        self.lock = threading.RLock()
        self.controllers: dict[int, Controller] = {}
        self.discovery_cntlids: dict[int, Controller] = {}
        self.connections: set[Connection] = set()
        self.genctr = 1
        self._next_conn = 1
        self._next_assoc = 1
        self.started = time.time()
        self.serial = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:16]
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self.lobby: Lobby | None = None
        self.control: ControlServer | None = None
        self.running = False

    # -- start / stop --
    def start(self) -> None:
        """Open namespaces, bind every port, start threads.  Raises UsageError/OSError."""
        self.bind()
        self.serve()

    def bind(self) -> None:
        """Everything that can fail on a bad configuration, before any thread runs
        (so a daemon can bind, report errors on the terminal, then fork)."""
        try:
            for sub in self.subsystems.values():
                sub.open_namespaces()
            self._bind()
            if self.control_path:
                self.control = ControlServer(self, self.control_path)
                self.control.bind()
        except BaseException:
            self._close_resources()
            if self.control is not None:
                self.control.stop()
            raise

    def serve(self) -> None:
        """Start the accept, keep-alive and control threads."""
        self.running = True
        if self.control is not None:
            self.control.serve()
        self.lobby = Lobby(self, self.ports)
        self.lobby.start()
        self._spawn(self._housekeeping, "nvmfd-keepalive")

    def _spawn(self, fn, name: str, *args) -> None:
        t = threading.Thread(target=fn, args=args, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _bind(self) -> None:
        v4_ports = {p.trsvcid for p in self.ports if p.adrfam == "ipv4" and p.trsvcid != "0"}
        for port in self.ports:
            try:
                infos = socket.getaddrinfo(port.traddr, int(port.trsvcid), socket.AF_UNSPEC,
                                           socket.SOCK_STREAM, socket.IPPROTO_TCP,
                                           socket.AI_PASSIVE)
            except socket.gaierror as e:
                raise UsageError(f"cannot listen on {port.address}: {e.strerror}") from None
            family, _t, _p, _c, sockaddr = infos[0]
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6 and is_wildcard(port.traddr) \
                        and port.trsvcid in v4_ports:
                    # Both wildcards on one port: leave IPv4 to the IPv4 socket.
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(sockaddr)
                sock.listen(LISTEN_BACKLOG)
            except OSError as e:
                sock.close()
                raise OSError(e.errno, f"cannot listen on {port.address}: "
                              f"{e.strerror or e}") from None
            port.sock = sock
            port.trsvcid = str(sock.getsockname()[1])
            port.cfg.trsvcid = port.trsvcid

    def bound_ports(self) -> list[int]:
        return [int(p.trsvcid) for p in self.ports]

    def stop(self) -> None:
        """Close listeners and every connection, wait for threads, close namespaces."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        if self.lobby is not None:
            self.lobby.stop()
        for port in self.ports:
            if port.sock is not None:
                try:
                    port.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        if self.control is not None:
            self.control.stop()
        with self.lock:
            conns = list(self.connections)
        for c in conns:
            c.abort()
        for c in conns:
            c.thread.join(timeout=5.0)
        for t in self._threads:
            t.join(timeout=5.0)
        self._close_resources()
        self.running = False

    def _close_resources(self) -> None:
        for port in self.ports:
            if port.sock is not None:
                port.sock.close()
                port.sock = None
        for sub in self.subsystems.values():
            sub.close()

    def wait(self, timeout: float | None = None) -> bool:
        return self._stop.wait(timeout)

    # -- accepting --
    def connection_count(self) -> int:
        """Connections served (each holds a descriptor and a thread)."""
        return len(self.connections)

    def admit(self, sock: socket.socket, port: Port, first: bytes, deadline: float) -> bool:
        """Serve a connection whose first PDU (``first``) arrived; False when refused.

        Called by the lobby; ``deadline`` (monotonic) is when its handshake
        must be over, counted from accept.
        """
        with self.lock:
            if len(self.connections) >= K.MAX_CONNECTIONS or self._stop.is_set():
                sock.close()
                return False
            try:
                conn = Connection(self, sock, port, self._next_conn, first=first,
                                  deadline=deadline)
            except OSError as e:  # no memory for its buffers
                log.warning("port %d: cannot serve a connection: %s", port.portid,
                            e.strerror or e)
                sock.close()
                return False
            self._next_conn += 1
            self.connections.add(conn)
        try:
            conn.start()
        except RuntimeError as e:  # no thread left
            log.warning("port %d: cannot serve a connection: %s", port.portid, e)
            with self.lock:
                self.connections.discard(conn)
            conn.driver.close()
            conn.release()
            return False
        return True

    # -- keep-alive --
    def _housekeeping(self) -> None:
        clock = self.clock
        while not self._stop.is_set():
            next_check = self._reap(clock())
            self._wake.wait(max(0.005, next_check - clock()))
            self._wake.clear()

    def _reap(self, now: float) -> float:
        """End the associations whose keep-alive timer ran out; returns when to look again.

        A function of its own so that no controller stays referenced from the
        sleeping thread's locals (that would keep an ended association, its
        admin connection and buffers alive until the next association).
        """
        next_check = now + 1.0
        expired = []
        with self.lock:
            for ctrl in self.controllers.values():
                if ctrl.dead:
                    continue
                if ctrl.kato.expired(now):
                    ctrl.dead = True
                    expired.append(ctrl)
                    continue
                deadline = ctrl.kato.next_deadline()
                if deadline is not None:
                    next_check = min(next_check, deadline)
        for ctrl in expired:
            log.warning("association %d (host %s, %s): keep-alive timeout (KATO %d ms) "
                        "expired; closing its queues", ctrl.id, ctrl.hostnqn, ctrl.subnqn,
                        ctrl.effective_kato_ms)
            ctrl.abort()
        return next_check

    def check_keep_alive(self) -> None:
        """Look at every Keep Alive Timer now (after the clock moved)."""
        self._wake.set()

    # -- registry --
    def find_subsystem(self, nqn: str, port: Port) -> Subsystem | None:
        if nqn not in port.subsystems:
            return None
        return self.subsystems.get(nqn)

    def new_controller(self, conn: Connection, sub: Subsystem | None, hostnqn: str,
                       hostid: bytes, kato_ms: int) -> Controller | None:
        with self.lock:
            if len(self.controllers) >= K.MAX_CONTROLLERS or self._stop.is_set():
                return None
            if sub is None:
                used = self.discovery_cntlids
                cntlid = next((i for i in range(1, 0xFFF0) if i not in used), None)
            else:
                cntlid = sub.alloc_cntlid()
            if cntlid is None:
                return None
            ctrl = Controller(self, assoc_id=self._next_assoc, subsystem=sub, cntlid=cntlid,
                              hostnqn=hostnqn, hostid=hostid, kato_ms=kato_ms, admin=conn,
                              port=conn.port)
            self._next_assoc += 1
            if sub is None:
                self.discovery_cntlids[cntlid] = ctrl
            else:
                sub.controllers[cntlid] = ctrl
            self.controllers[ctrl.id] = ctrl
        self._wake.set()  # a new keep-alive deadline
        return ctrl

    def log_association(self, ctrl: Controller, conn: Connection) -> None:
        if self.log_associations:
            log.info("association %d: host %s connected to %s (controller %d) from %s, "
                     "KATO %d ms", ctrl.id, ctrl.hostnqn, ctrl.subnqn, ctrl.cntlid, conn.peer,
                     ctrl.kato_ms)

    def connection_closed(self, conn: Connection, why: str | None) -> None:
        aborted = []
        with self.lock:
            self.connections.discard(conn)
            ctrl = conn.ctrl
            if conn.io is not None:
                ctrl.sub.retire_stats(conn.io.stats)
            if ctrl is None:
                return
            if conn.qid == 0 and ctrl.admin is conn:
                ctrl.dead = True
                self.controllers.pop(ctrl.id, None)
                if ctrl.sub is None:
                    self.discovery_cntlids.pop(ctrl.cntlid, None)
                else:
                    ctrl.sub.controllers.pop(ctrl.cntlid, None)
                aborted = list(ctrl.io_queues.values())
                ctrl.io_queues.clear()
            else:
                if ctrl.io_queues.get(conn.qid) is conn:
                    del ctrl.io_queues[conn.qid]
                return
        for q in aborted:
            q.abort()
        if self.log_associations:
            n = ctrl.max_queues
            log.info("association %d ended (%s): host %s, %s, %d queue%s, peer %s, %.1f s",
                     ctrl.id, why or "closed", ctrl.hostnqn, ctrl.subnqn, n,
                     "" if n == 1 else "s", conn.peer, time.time() - ctrl.created)

    # -- control operations --
    def associations(self) -> list[dict]:
        with self.lock:
            ctrls = sorted(self.controllers.values(), key=lambda c: c.id)
            return [{
                "id": c.id,
                "transport": "TCP",
                "hostnqn": c.hostnqn,
                "subnqn": c.subnqn,
                "cntlid": c.cntlid,
                "discovery": c.discovery,
                "peer": c.admin.peer,
                "local": format_address(c.admin.local_host, c.admin.local_port),
                "portid": c.port.portid,
                "queues": c.queue_count(),
                "kato_ms": c.kato_ms,
                "since": c.created,
            } for c in ctrls if not c.dead]

    def terminate(self, *, assoc_id: int | None = None, hostnqn: str | None = None,
                  all: bool = False) -> int:
        with self.lock:
            if all:
                targets = list(self.controllers.values())
            elif assoc_id is not None:
                c = self.controllers.get(assoc_id)
                if c is None:
                    raise NotFound(f"no association {assoc_id}")
                targets = [c]
            else:
                targets = [c for c in self.controllers.values() if c.hostnqn == hostnqn]
                if not targets:
                    raise NotFound(f"no association of host {hostnqn}")
        for c in targets:
            log.warning("association %d (host %s, %s): terminated by administrative request",
                        c.id, c.hostnqn, c.subnqn)
            c.abort()
        return len(targets)

    def _subsystem_for(self, subnqn: str | None) -> Subsystem:
        if subnqn:
            sub = self.subsystems.get(subnqn)
            if sub is None:
                raise NotFound(f"no subsystem {subnqn}")
            return sub
        if len(self.subsystems) != 1:
            raise UsageError(f"{len(self.subsystems)} subsystems are served; name one "
                             "with --subsystem")
        return next(iter(self.subsystems.values()))

    def add_namespace(self, device: str, *, nsid: int | None = None,
                      subnqn: str | None = None, read_only: bool = False,
                      block_size: int = DEFAULT_BLOCK_SIZE) -> tuple[str, int]:
        with self.lock:
            sub = self._subsystem_for(subnqn)
            if nsid is None:
                nsid = sub.free_nsid()
            check_nsid(nsid, "ns-add")
            if not device.startswith(MEM_PREFIXES):
                device = os.path.abspath(device)
            sub.add_namespace(NamespaceConfig(nsid=nsid, path=device, read_only=read_only,
                                              block_size=block_size))
            self.genctr += 1
            notify = self._controllers_of(sub)
        log.warning("namespace %d (%s) added to %s", nsid, device, sub.nqn)
        self._notify(notify, nsid)
        return sub.nqn, nsid

    def remove_namespace(self, nsid: int, *, subnqn: str | None = None) -> tuple[str, int]:
        with self.lock:
            sub = self._subsystem_for(subnqn)
            if not 1 <= nsid <= MAX_NSID:
                raise NotFound(f"namespace {nsid} does not exist in {sub.nqn}")
            sub.remove_namespace(nsid)
            self.genctr += 1
            notify = self._controllers_of(sub)
        log.warning("namespace %d removed from %s", nsid, sub.nqn)
        self._notify(notify, nsid)
        return sub.nqn, nsid

    def _controllers_of(self, sub: Subsystem) -> tuple[list, list]:
        io = [c for c in self.controllers.values() if c.sub is sub and not c.dead]
        disc = [c for c in self.controllers.values() if c.discovery and not c.dead]
        return io, disc

    def _notify(self, targets: tuple[list, list], nsid: int) -> None:
        io, disc = targets

        def run():
            for c in io:
                c.namespace_changed(nsid)
            for c in disc:
                c.post_event(EVENT_DISC)
        threading.Thread(target=run, name="nvmfd-aen", daemon=True).start()

    def dump_config(self) -> dict:
        with self.lock:
            return dump_nvmetcli(self.config)
