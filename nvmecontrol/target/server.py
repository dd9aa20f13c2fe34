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
from nvmecontrol.target import ana
from nvmecontrol.target import constants as K
from nvmecontrol.target.config import (DEFAULT_BLOCK_SIZE, MAX_NSID, MEM_PREFIXES,
                                       NamespaceConfig, PortConfig, TargetConfig, check_nsid,
                                       dump_nvmetcli)
from nvmecontrol.target.connection import Connection
from nvmecontrol.target.control import ControlServer
from nvmecontrol.target.controller import EVENT_DISC, Controller, NoLongerServed
from nvmecontrol.target.discovery import is_wildcard
from nvmecontrol.target.lobby import MAX_HANDSHAKING, Lobby, Notices
from nvmecontrol.target.port_params import parse_port_params
from nvmecontrol.target.subsystem import Subsystem
from nvmecontrol.transport.address import format_address

log = logging.getLogger("nvmfd")

# Connections the kernel completes before we accept them: generous, so a
# burst of connects (or a flood of idle ones, which the lobby sheds oldest
# first) does not make real hosts' SYNs wait for a retransmission.
LISTEN_BACKLOG = 1024


class Port:
    """A listening endpoint (nvmet's "port"): address, subsystems, referrals."""

    discovery_only = False

    def __init__(self, cfg: PortConfig):
        self.sock: socket.socket | None = None
        self.update(cfg)

    def update(self, cfg: PortConfig) -> None:
        """Take the settings of ``cfg`` (a reload keeps the port and its listener)."""
        self.cfg = cfg
        self.portid = cfg.portid
        self.traddr = cfg.traddr
        self.trsvcid = cfg.trsvcid
        self.adrfam = cfg.adrfam
        self.treq = cfg.treq
        self.subsystems = cfg.subsystems
        self.referrals = cfg.referrals
        # Limits for new connections (port_params.py), checked at load.
        self.params = parse_port_params(cfg.param, f"port {cfg.portid}")

    @property
    def address(self) -> str:
        return format_address(self.traddr, self.trsvcid)

    @property
    def listen_trsvcid(self) -> str:
        return self.trsvcid


class DiscoveryPort:
    """FreeBSD nvmfd's ``-P``: a listener that serves only the discovery
    controller, whose log lists the subsystems of its I/O port ``io`` at
    that port's address (an I/O Connect here is refused, as FreeBSD's
    Invalid Parameter on SUBNQN)."""

    discovery_only = True

    def __init__(self, io: Port, trsvcid: str):
        self.io = io
        self.listen_trsvcid = trsvcid
        self.sock: socket.socket | None = None

    # What the discovery log and the association list show: the I/O port.
    portid = property(lambda self: self.io.portid)
    traddr = property(lambda self: self.io.traddr)
    trsvcid = property(lambda self: self.io.trsvcid)
    adrfam = property(lambda self: self.io.adrfam)
    treq = property(lambda self: self.io.treq)
    subsystems = property(lambda self: self.io.subsystems)
    referrals = property(lambda self: self.io.referrals)
    params = property(lambda self: self.io.params)
    cfg = property(lambda self: self.io.cfg)

    @property
    def address(self) -> str:
        return format_address(self.io.traddr, self.listen_trsvcid)


class Server:
    def __init__(self, config: TargetConfig, *, allow_hdgst: bool = True,
                 allow_ddgst: bool = True, read_only: bool = False,
                 log_associations: bool = False, control_path: str | None = None,
                 clock=time.monotonic, discovery_trsvcid: str | None = None,
                 config_path: str | None = None):
        """``discovery_trsvcid``: FreeBSD's ``-P``, a discovery-only listener
        beside each port; ``config_path``: the file a reload reads (``-c``)."""
        self.config = config
        self.config_path = config_path
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
        self.discovery_ports = [DiscoveryPort(p, discovery_trsvcid) for p in self.ports] \
            if discovery_trsvcid is not None else []
        self._evicted = Notices(logging.WARNING, "closed %d connections that had not "
                                "completed Connect (oldest first) to serve new ones")
        # One reload or host ACL change at a time (SIGHUP and the control socket).
        self.reconfigure_lock = threading.Lock()
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
        self.lobby = Lobby(self, self.listeners())
        self.lobby.start()
        self._spawn(self._housekeeping, "nvmfd-keepalive")

    def _spawn(self, fn, name: str, *args) -> None:
        t = threading.Thread(target=fn, args=args, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def listeners(self) -> list:
        """Every listening endpoint: the ports, then the discovery-only ones (-P)."""
        return self.ports + self.discovery_ports

    def _bind(self) -> None:
        for port in self.ports:
            self.listen(port, self.ports)
        for port in self.discovery_ports:
            port.sock = listen_socket(port.traddr, port.listen_trsvcid, port.adrfam,
                                      self.discovery_ports, port.address)
            port.listen_trsvcid = str(port.sock.getsockname()[1])

    @staticmethod
    def listen(port: Port, beside: list) -> None:
        """Open ``port``'s listener; a TRSVCID of 0 becomes the one bound."""
        port.sock = listen_socket(port.traddr, port.trsvcid, port.adrfam, beside, port.address)
        port.trsvcid = str(port.sock.getsockname()[1])
        port.cfg.trsvcid = port.trsvcid

    def bound_ports(self) -> list[int]:
        return [int(p.listen_trsvcid) for p in self.listeners()]

    def stop(self) -> None:
        """Close listeners and every connection, wait for threads, close namespaces."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        if self.lobby is not None:
            self.lobby.stop()
        for port in self.listeners():
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
        for port in self.listeners():
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
            evict = self._oldest_handshaking()
            try:
                conn = Connection(self, sock, port, self._next_conn, first=first,
                                  deadline=deadline)
            except OSError as e:  # no memory for its buffers
                log.warning("port %d: cannot serve a connection: %s", port.portid,
                            e.strerror or e)
                sock.close()
                return False
            # The port's ICResp limit; its thread has not sent ICResp yet.
            conn.qp.maxh2cdata = port.params.maxh2cdata
            self._next_conn += 1
            self.connections.add(conn)
        if evict is not None:
            evict.abort()
            self._evicted.add()
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

    def _oldest_handshaking(self):
        """The connection to close for a new one when MAX_HANDSHAKING connections
        have not completed Connect (caller holds ``lock``), else None."""
        waiting = [c for c in self.connections if c.ctrl is None and not c.closing]
        if len(waiting) < MAX_HANDSHAKING:
            return None
        return min(waiting, key=lambda c: c.id)

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
        if port.discovery_only or nqn not in port.subsystems:
            return None
        return self.subsystems.get(nqn)

    def new_controller(self, conn: Connection, sub: Subsystem | None, hostnqn: str,
                       hostid: bytes, kato_ms: int) -> Controller | None:
        with self.lock:
            if len(self.controllers) >= K.MAX_CONTROLLERS or self._stop.is_set():
                return None
            # Checked again under the lock a reload commits under: a Connect
            # that passed its checks just before must not escape the new rules.
            if sub is not None and self.find_subsystem(sub.nqn, conn.port) is not sub:
                raise NoLongerServed("subsystem")
            if sub is not None and not sub.host_allowed(hostnqn):
                raise NoLongerServed("host")
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
                      block_size: int = DEFAULT_BLOCK_SIZE,
                      ana_grpid: int = ana.DEFAULT_GRPID) -> tuple[str, int]:
        with self.reconfigure_lock, self.lock:
            sub = self._subsystem_for(subnqn)
            if nsid is None:
                nsid = sub.free_nsid()
            check_nsid(nsid, "ns-add")
            ana.check_grpid(ana_grpid, "ns-add")
            # As a configuration's ana_grpid: a group some port lists.
            known = ana.known_groups([p.cfg for p in self.ports])
            if ana_grpid not in known:
                raise UsageError(f"ns-add: ANA group {ana_grpid} is not an ANA group of any "
                                 f"port (groups: {', '.join(map(str, known))})")
            if not device.startswith(MEM_PREFIXES):
                device = os.path.abspath(device)
            sub.add_namespace(NamespaceConfig(nsid=nsid, path=device, read_only=read_only,
                                              block_size=block_size, ana_grpid=ana_grpid))
            self.genctr += 1
            notify = self._controllers_of(sub)
        log.warning("namespace %d (%s) added to %s", nsid, device, sub.nqn)
        self._notify(notify, nsid)
        return sub.nqn, nsid

    def remove_namespace(self, nsid: int, *, subnqn: str | None = None) -> tuple[str, int]:
        with self.reconfigure_lock, self.lock:
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

    # -- configuration changes (reload.py) --
    def reload(self, config: TargetConfig) -> dict:
        """Serve ``config`` from now on (SIGHUP); see ``reload.apply_config``."""
        from nvmecontrol.target.reload import apply_config
        with self.reconfigure_lock:
            return apply_config(self, config)

    def add_host(self, hostnqn: str, *, subnqn: str | None = None, auth=None) -> dict:
        """Allow ``hostnqn`` on a subsystem (``auth``: its DH-HMAC-CHAP settings)."""
        from nvmecontrol.target.reload import apply_config, with_host
        with self.reconfigure_lock:
            sub = self._subsystem_for(subnqn)
            return dict(apply_config(self, with_host(self.config, sub.nqn, hostnqn, auth)),
                        subsystem=sub.nqn, allow_any_host=sub.cfg.allow_any_host)

    def remove_host(self, hostnqn: str, *, subnqn: str | None = None) -> dict:
        """Take ``hostnqn`` off a subsystem's allowed hosts; its associations
        there end unless the subsystem allows any host."""
        from nvmecontrol.target.reload import apply_config, without_host
        with self.reconfigure_lock:
            sub = self._subsystem_for(subnqn)
            if hostnqn not in sub.cfg.allowed_hosts:
                raise NotFound(f"host {hostnqn} is not an allowed host of {sub.nqn}")
            return dict(apply_config(self, without_host(self.config, sub.nqn, hostnqn)),
                        subsystem=sub.nqn, allow_any_host=sub.cfg.allow_any_host)


def listen_socket(traddr: str, trsvcid: str, adrfam: str, beside: list,
                  address: str) -> socket.socket:
    """A listening TCP socket on ``traddr``:``trsvcid`` (``beside``: the
    listeners it shares the daemon with, for the IPv6 wildcard rule)."""
    try:
        infos = socket.getaddrinfo(traddr, int(trsvcid), socket.AF_UNSPEC, socket.SOCK_STREAM,
                                   socket.IPPROTO_TCP, socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UsageError(f"cannot listen on {address}: {e.strerror}") from None
    family, _t, _p, _c, sockaddr = infos[0]
    v4_ports = {p.listen_trsvcid for p in beside
                if p.adrfam == "ipv4" and p.listen_trsvcid != "0"}
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and is_wildcard(traddr) and trsvcid in v4_ports:
            # Both wildcards on one port: leave IPv4 to the IPv4 socket.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(LISTEN_BACKLOG)
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"cannot listen on {address}: {e.strerror or e}") from None
    return sock
