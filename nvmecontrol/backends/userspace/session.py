"""A userspace session: one association held in a process and served over NBD.

The session owns the association that ``connect`` built (handed over with
its sockets, see ``handoff.py``), keeps it alive (Keep Alive every KATO/2),
serves each namespace as an NBD export, answers the control socket, and,
when a connection drops, keeps NBD requests parked while it reconnects the
way FreeBSD's kernel and devd do: at once, then every reconnect-delay
seconds, until ctrl-loss-tmo; ``nvmecontrol reconnect`` forces an attempt.
After reconnecting, parked requests are submitted again in arrival order;
after ctrl-loss-tmo they fail with EIO and the session ends.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import replace

from nvmecontrol.backends.model import REDACTED, ConnectParams, ControllerInfo, NamespaceInfo
from nvmecontrol.backends.userspace.bridge import QueueWorker
from nvmecontrol.backends.userspace.nbd_server import NbdListener
from nvmecontrol.backends.userspace.ns_facts import NO_FACTS, fetch_namespace_facts
from nvmecontrol.backends.userspace.paths import (NBD_PORT, SessionPaths, export_name,
                                                  nbd_tcp_uri, nbd_uri, write_atomically)
from nvmecontrol.backends.userspace.request import Namespace
from nvmecontrol.backends.userspace.router import Router
from nvmecontrol.errors import ConnectionLost, NvmeControlError, PeerTimeout
from nvmecontrol.host.association import Association, connect_association
from nvmecontrol.hostid import HostIdentity
from nvmecontrol.nbd import protocol as N
from nvmecontrol.transport.address import Address, parse_address, resolve
from nvmecontrol.wire.admin import (AEC_NS_ATTR, AER_NOTICE_NS_ATTR_CHANGED, AER_TYPE_NOTICE,
                                    Feature, GetLogPage, build_async_event_request,
                                    build_set_features, parse_aer)
from nvmecontrol.wire.identify import (CNS_ACTIVE_NSID_LIST, CNS_NAMESPACE,
                                       decode_active_nsid_list, decode_identify_namespace)
from nvmecontrol.wire.logpages import LOG_PAGE_SIZES, LogPage, decode_changed_ns_list
from nvmecontrol.wire.status import describe_status
from nvmecontrol.wire.timers import SEND_KEEP_ALIVE, KeepAliveTimer, OverdueCommands

log = logging.getLogger("nvmecontrol.session")

# Largest NVMe transfer one command carries (bounded again by MDTS).
MAX_COMMAND_BYTES = 2 << 20
# NBD's own cap on one request (larger ones are split into commands).
NBD_MAX_PAYLOAD = 32 << 20
# ONCS bits: Write Zeroes (3), Dataset Management (2).
ONCS_DSM, ONCS_WRITE_ZEROES = 1 << 2, 1 << 3
# How long an orderly disconnect waits for requests in flight.
DRAIN_TIMEOUT_S = 10.0

LIVE, CONNECTING, DELETING, DEAD = "live", "connecting", "deleting", "dead"
# The session's states and the only changes between them (docs/backends.md):
# live -> connecting (a queue or the admin queue failed, or a forced
# reconnect), connecting -> live (a new association is installed),
# connecting -> dead (ctrl-loss-tmo passed, or a disconnect while
# reconnecting), live -> deleting (an orderly disconnect).  live -> live
# is the first association's installation.  dead and deleting end the process.
TRANSITIONS = {
    LIVE: frozenset({LIVE, CONNECTING, DELETING}),
    CONNECTING: frozenset({LIVE, DEAD}),
    DELETING: frozenset(),
    DEAD: frozenset(),
}


def _requested_params(forced: list) -> ConnectParams | None:
    """The newest parameters among pending reconnect requests, if any gave some."""
    return next((p for p, _result, _done in reversed(forced) if p is not None), None)


def _answer(forced: list, ok: bool, error: str) -> None:
    for _params, result, done in forced:
        result.update({"ok": ok, "error": error})
        done.set()


class Session:
    """The association, its NBD exports and its reconnection."""

    def __init__(self, name: str, paths: SessionPaths, params: ConnectParams, host: HostIdentity,
                 assoc: Association, *, nbd_tcp: str | None = None, clock=time.monotonic):
        self.name = name
        self.clock = clock  # the time seam: timers are told the time by it
        self.paths = paths
        self.params = params
        self.host = host
        self.assoc = assoc
        self.nbd_tcp = nbd_tcp
        self.lock = threading.Lock()  # state, workers, parked
        self.state_changed = threading.Condition(self.lock)  # notified on every change
        self.state = LIVE
        self.workers: list[QueueWorker] = []
        # The data path's hot path: NBD connections submit through it with no
        # session lock; only a batch that meets a dead queue comes back here.
        self.router = Router(self._resubmit)
        self.parked: list = []
        self.lost_at: float | None = None
        self.last_error = ""
        self.wake = threading.Event()
        self.stop_requested = False
        # Wakes the keep-alive thread: to end, or to time a new association.
        self._keep_alive_wake = threading.Event()
        self._events_wake = threading.Event()  # the same for the events thread
        self._namespaces_lock = threading.Lock()  # one reader of the namespaces at a time
        self._force: list = []  # pending reconnect requests: (params or None, result dict, Event)
        self.namespaces: dict[int, Namespace] = {}
        self.attached: dict[int, str] = {}  # nsid -> /dev/nbdX
        # nsid -> NamespaceFacts (identifiers, ANA state) for devlist -v
        self.ns_facts: dict = {}
        self.listeners: list[NbdListener] = []
        self._conn_counter = itertools.count()
        self.started = time.time()

    # -- set-up --
    def start(self) -> None:
        self.paths.dir.mkdir(mode=0o700, exist_ok=True)
        self._read_namespaces(self.assoc)
        self._install(self.assoc)
        self.listeners.append(NbdListener.unix(str(self.paths.nbd), self, self.exports,
                                               self._conn_counter))
        if self.nbd_tcp:
            addr = parse_address(self.nbd_tcp, default_port=NBD_PORT, listen=True)
            self.listeners.append(NbdListener.tcp(resolve(addr), self, self.exports,
                                                  self._conn_counter))
        for lst in self.listeners:
            lst.start()
        threading.Thread(target=self._keep_alive_loop, daemon=True, name="keep-alive").start()
        threading.Thread(target=self._events_loop, daemon=True, name="async-events").start()
        self.write_state()

    def _read_namespaces(self, assoc: Association, *, if_current: bool = False) -> None:
        """Read the active namespaces of ``assoc`` and make them the exports.

        One reader at a time (the events thread and a reconnect may both ask);
        with ``if_current``, nothing happens unless ``assoc`` is still the
        session's association (an event of a replaced one is stale).
        """
        with self._namespaces_lock:
            if if_current and assoc is not self.assoc:
                return
            self._read_namespaces_locked(assoc)

    def _read_namespaces_locked(self, assoc: Association) -> None:
        cdata = assoc.cdata
        mdts = (1 << cdata.mdts) * 4096 if cdata.mdts else MAX_COMMAND_BYTES
        max_cmd = min(MAX_COMMAND_BYTES, mdts)
        with assoc.admin.lock:
            nsids = decode_active_nsid_list(assoc.identify(CNS_ACTIVE_NSID_LIST, 0))
            found = {}
            decoded = {}
            for nsid in nsids:
                ns = decoded[nsid] = decode_identify_namespace(assoc.identify(CNS_NAMESPACE, nsid))
                lba = ns.block_size() or 512
                found[nsid] = Namespace(nsid, lba, ns.nsze * lba, max_cmd_bytes=max_cmd,
                                        can_write_zeroes=bool(cdata.oncs & ONCS_WRITE_ZEROES),
                                        can_trim=bool(cdata.oncs & ONCS_DSM),
                                        # NSATTR bit 0, write protected: NBD_FLAG_READ_ONLY
                                        read_only=bool(ns.nsattr & 1))
            facts = fetch_namespace_facts(assoc, decoded)
        current = {}
        for nsid, ns in found.items():
            old = self.namespaces.get(nsid)
            if old is None:
                log.info("namespace %d: exported as %s", nsid, export_name(nsid))
                current[nsid] = ns
            elif old.lba_size != ns.lba_size:
                # Another LBA format: every offset its clients computed is
                # wrong now.  They are disconnected; new ones get the new one.
                log.warning("namespace %d was formatted from %d- to %d-byte blocks: its NBD "
                            "clients are disconnected", nsid, old.lba_size, ns.lba_size)
                old.retired = True
                current[nsid] = ns
            else:
                # The same object: the NBD connections that use it see a resize.
                if old.size != ns.size:
                    log.warning("namespace %d changed from %d to %d blocks", nsid,
                                old.size // old.lba_size, ns.size // ns.lba_size)
                    old.size = ns.size
                current[nsid] = old
        for nsid in sorted(set(self.namespaces) - set(found)):
            log.warning("namespace %d is no longer active on the controller: export %s removed "
                        "and its NBD clients disconnected", nsid, export_name(nsid))
            self.namespaces[nsid].retired = True
        # Replaced whole: devlist, new NBD clients and completions read it
        # from other threads.
        self.namespaces = current
        self.ns_facts = facts
        write_atomically(self.paths.namespaces, "".join(f"{n}\n" for n in sorted(current)))

    def exports(self):
        exports = {}
        for nsid, ns in sorted(self.namespaces.items()):
            name = export_name(nsid)
            exports[name] = N.Export(name, ns.size, read_only=ns.read_only,
                                     description=f"{self.params.subnqn} namespace {nsid}",
                                     min_block=ns.lba_size,
                                     preferred_block=max(4096, ns.lba_size),
                                     max_block=NBD_MAX_PAYLOAD, can_trim=ns.can_trim,
                                     can_write_zeroes=ns.can_write_zeroes)
        default = next(iter(exports), None)
        return exports, default

    def namespace_for(self, export: str) -> Namespace:
        return self.namespaces[int(export[2:])]

    def _install(self, assoc: Association) -> None:
        workers = [QueueWorker(hq.driver, i, on_lost=self._on_lost)
                   for i, hq in enumerate(assoc.io)]
        for w in workers:
            w.start()
        with self.lock:
            self.assoc = assoc
            self.workers = workers
            self.router.install(workers)
            self._enter(LIVE)
            self.lost_at = None
            parked, self.parked = self.parked, []
        self._keep_alive_wake.set()  # its first Keep Alive within KATO/2, not later
        self._events_wake.set()  # Asynchronous Events armed on it at once
        if parked:
            log.info("replaying %d commands held during the outage", len(parked))
            parked.sort(key=lambda p: p.req.seq)
            self._resubmit(parked)

    # -- the data path's slow path --
    def _resubmit(self, parts: list) -> None:
        """Parts the router could not place: park them while no association is
        live, else submit them to the live queues (by their connection's slot)."""
        error = N.EIO
        while parts:
            with self.lock:
                if self.state == DEAD:
                    break
                if self.state == DELETING:
                    error = N.ESHUTDOWN  # NBD's "the server is shutting down"
                    break
                if self.state != LIVE:
                    self.parked.extend(parts)
                    return
                workers = self.workers
            groups: dict = {}
            for p in parts:
                groups.setdefault(p.req.conn.slot % len(workers), []).append(p)
            rest = []
            for i, group in groups.items():
                if not workers[i].submit(group):
                    rest.extend(group)
            if rest:
                # That queue just died: its loss is being reported; wait for the
                # state to change, then park or use the new queues.
                with self.lock:
                    self.state_changed.wait_for(
                        lambda: self.state != LIVE or self.workers is not workers, timeout=1.0)
            parts = rest
        self._fail_parts(parts, error)

    def _on_lost(self, worker, parts: list, reason: str) -> None:
        with self.lock:
            self.parked.extend(parts)
            if worker in self.workers:
                self._mark_lost(f"I/O queue {worker.index + 1}: {reason}")

    def _enter(self, state: str) -> None:
        """The one place the state changes (caller holds the lock)."""
        if state not in TRANSITIONS[self.state]:
            raise RuntimeError(f"session state {self.state} -> {state} is not a transition")
        self.state = state
        self.state_changed.notify_all()

    def _mark_lost(self, reason: str) -> None:
        """The live association failed (caller holds the lock): the supervisor
        tears it down, says what is held, and reconnects."""
        if self.state != LIVE:
            return
        self.router.clear()
        self._enter(CONNECTING)
        self.lost_at = time.time()
        self.last_error = reason
        self.wake.set()

    def _fail_parts(self, parts: list, error: int) -> None:
        done: dict = {}
        for p in parts:
            req = p.req
            req.error = req.error or error
            req.remaining -= 1
            if req.remaining == 0:
                done.setdefault(req.conn, []).append(req)
        for conn, reqs in done.items():
            conn.reply(reqs)

    # -- keep-alive and admin commands --
    def _keep_alive_loop(self) -> None:
        """Keep Alive every KATO/2; unanswered for KATO, the controller is lost.

        The timing is ``wire.timers.KeepAliveTimer``'s, told the time by
        ``self.clock``; this thread only waits and runs the command.
        """
        kato = self.params.kato_s
        if not kato:
            return
        clock = self.clock
        timer = watch = None
        timer_assoc = None
        while not self.stop_requested:
            with self.lock:
                live, assoc = self.state == LIVE, self.assoc
            if not live:
                # Nothing to keep alive while reconnecting; _install wakes us
                # for the association that comes next, which gets its own timer.
                timer_assoc = None
                self._keep_alive_wake.wait(1.0)
                self._keep_alive_wake.clear()
                continue
            if assoc is not timer_assoc:  # a new association starts new timers
                timer, timer_assoc = KeepAliveTimer(kato, clock()), assoc
                watch = OverdueCommands(kato, clock())
            deadline = min(timer.next_deadline(), watch.next_deadline())
            self._keep_alive_wake.wait(max(0.0, deadline - clock()))
            self._keep_alive_wake.clear()
            if self.stop_requested:
                return
            with self.lock:
                if self.state != LIVE or self.assoc is not assoc:
                    continue  # changed while we slept: look again
                workers = self.workers
            now = clock()
            if now >= watch.next_deadline():
                overdue = watch.check(now, [t for w in workers for t in w.outstanding_tags()])
                if overdue:
                    timer_assoc = None
                    self._admin_lost(assoc, f"{overdue} I/O command{'s' if overdue > 1 else ''}"
                                     f" not answered within KATO ({kato} s)")
                    continue
            if timer.on_timer(now) != SEND_KEEP_ALIVE:
                continue
            timer.on_sent(clock())
            try:
                with assoc.admin.lock:
                    assoc.keep_alive(timeout=max(0.001, timer.answer_deadline() - clock()))
                timer.on_answered(clock())
            except PeerTimeout:
                timer_assoc = None
                self._admin_lost(assoc, f"Keep Alive not answered within KATO ({kato} s)")
            except (NvmeControlError, OSError) as e:
                # This thread must outlive any one association's failure.
                timer_assoc = None
                self._admin_lost(assoc, f"Keep Alive: {e}")

    def _admin_lost(self, assoc, reason: str) -> None:
        with self.lock:
            if assoc is self.assoc:
                self._mark_lost(reason)

    # -- asynchronous events --
    def _events_loop(self) -> None:
        """Keep an Asynchronous Event Request outstanding on each association.

        On a Namespace Attribute Notice the Changed Namespace List is read
        (which lets the controller send the next notice) and the namespaces
        are read again: exports appear and disappear, and the state devlist
        and completions read follows.  The request's completion is taken
        from the admin queue under the admin lock, as any command's.
        """
        armed, cid = None, None  # the association our request is outstanding on, its CID
        while not self.stop_requested:
            with self.lock:
                live, assoc = self.state == LIVE, self.assoc
            if not live or (assoc is armed and cid is None):
                # Nothing to watch until an association (a new one) is live.
                self._events_wake.wait(1.0)
                self._events_wake.clear()
                continue
            try:
                if assoc is not armed:
                    armed, cid = assoc, None  # one try per association, failed or not
                    cid = self._arm_events(assoc)
                    continue
                assoc.admin.driver.wait_readable(1.0)
                with assoc.admin.lock:
                    if self.stop_requested or assoc is not self.assoc:
                        continue
                    cqe = assoc.admin.take(cid)
                if cqe is None:
                    continue
                cid = None  # until the next request is out
                event, raw, cid = self._next_event(assoc, cqe)
                if event is not None:
                    # After the next request went out: a failure here loses no event.
                    self._on_event(assoc, event, raw)
            except (ConnectionLost, PeerTimeout) as e:
                cid = None
                self._admin_lost(assoc, f"Asynchronous Event: {e}")
            except NvmeControlError as e:
                # A controller refusing the feature or the request: no events
                # from this association, the rest of the session is unaffected.
                log.warning("asynchronous events not available: %s", e)
                cid = None
            except OSError as e:
                # The state files (a full disk, say): the events go on.
                log.warning("asynchronous event: %s", e.strerror or e)

    def _arm_events(self, assoc: Association) -> int | None:
        """Enable Namespace Attribute Notices and submit the first request (its CID)."""
        if not assoc.cdata or not assoc.cdata.oaes & AEC_NS_ATTR:
            log.info("the controller sends no Namespace Attribute Notices: namespaces are "
                     "read again only on reconnect")
            return None
        with assoc.admin.lock:
            assoc.admin.execute(build_set_features(Feature.ASYNC_EVENT_CONFIG, AEC_NS_ATTR),
                                "Set Features (Asynchronous Event Configuration)")
            return assoc.admin.submit(build_async_event_request())

    def _next_event(self, assoc: Association, cqe) -> tuple:
        """A completed request: (the event or None, its log page, the next request's CID).

        Reading the event's log page (RAE clear) lets the controller send the
        next one of its kind; then the next request goes out.  A request that
        ended in error is not renewed.
        """
        if cqe.status:
            log.info("Asynchronous Event Request ended: %s", describe_status(cqe.status))
            return None, b"", None
        ev = parse_aer(cqe.dw0)
        raw = b""
        with assoc.admin.lock:
            if ev.lid:
                raw = assoc.get_log_page(GetLogPage(ev.lid, LOG_PAGE_SIZES.get(ev.lid, 4096)))
            return ev, raw, assoc.admin.submit(build_async_event_request())

    def _on_event(self, assoc: Association, ev, raw: bytes) -> None:
        if ev.type == AER_TYPE_NOTICE and ev.info == AER_NOTICE_NS_ATTR_CHANGED:
            changed = decode_changed_ns_list(raw) if ev.lid == LogPage.CHANGED_NS else None
            log.info("namespace attributes changed (%s): reading the namespaces again",
                     "more than 1024" if changed is None or changed.overflow
                     else ", ".join(map(str, changed.nsids)) or "none listed")
            self._read_namespaces(assoc, if_current=True)
            self.write_state()
        else:
            log.info("asynchronous event type %d info %d log page %#04x: nothing to do",
                     ev.type, ev.info, ev.lid)

    def _command_timeout(self) -> float:
        """How long a control-socket command may go unanswered: a command
        unanswered past KATO means the controller is lost."""
        kato = self.params.kato_s
        return min(self.params.timeout_s, kato) if kato else self.params.timeout_s

    def admin_command(self, sqe: bytearray, read_len: int, write_data: bytes | None):
        """Run one admin command for the control socket (identify, logpage)."""
        with self.lock:
            if self.state != LIVE:
                raise ConnectionLost(f"{self.name} is not connected ({self.state})")
            assoc = self.assoc
        # It holds the admin queue, so no Keep Alive could tell a loss meanwhile.
        timeout = self._command_timeout()
        with assoc.admin.lock:
            try:
                return assoc.admin.execute(sqe, "admin command", read_len=read_len,
                                           write_data=write_data, check=False, timeout=timeout)
            except NvmeControlError as e:
                self._admin_lost(assoc, str(e))
                raise

    def io_command(self, sqe: bytes, read_len: int, write_data: bytes | None):
        """Run one I/O command for the control socket (resv) on the first I/O queue.

        It travels as a data-path request (``io_passthrough``): held and
        replayed across a reconnect like NBD requests.  Returns (NVMe status,
        NBD errno, read data); status 0 with an errno means the data path
        failed it without an NVMe status (ctrl-loss-tmo, shutdown).
        """
        from nvmecontrol.backends.userspace.io_passthrough import IoPassthrough

        req = IoPassthrough(sqe, read_len, write_data)
        with self.lock:
            if self.state != LIVE or not self.workers:
                raise ConnectionLost(f"{self.name} is not connected ({self.state})")
        self.router.submit(req.conn, [req])
        timeout = self._command_timeout()
        if not req.wait(timeout):
            raise PeerTimeout(f"{self.name}: I/O command {req.opc:#04x} not answered within "
                              f"{timeout:g} s")
        return req.status, req.error, req.read_data

    # -- reconnect, disconnect --
    def request_reconnect(self, params: ConnectParams | None, timeout: float) -> dict:
        result: dict = {}
        done = threading.Event()
        with self.lock:
            self._force.append((params, result, done))
        self.wake.set()
        if not done.wait(timeout):
            return {"ok": False, "error": f"no new association within {timeout:g} s"}
        return result

    def request_stop(self) -> None:
        self.stop_requested = True
        self._keep_alive_wake.set()
        self._events_wake.set()
        self.wake.set()

    def run(self, before_shutdown=None) -> None:
        """The supervisor: wait for a loss, a forced reconnect or a stop."""
        while True:
            self.wake.wait()
            self.wake.clear()
            if self.stop_requested:
                break
            with self.lock:
                needed = self.state == CONNECTING or bool(self._force)
            if needed and not self._reconnect():
                break
        if before_shutdown is not None:
            before_shutdown()
        self._shutdown()

    def _teardown_queues(self) -> None:
        with self.lock:
            self.router.clear()
            workers, self.workers = self.workers, []
            self.state_changed.notify_all()
            assoc = self.assoc
        for w in workers:
            w.fail("association torn down for reconnection")
        assoc.close()

    def _reconnect(self) -> bool:
        with self.lock:
            live = self.state == LIVE
        if live:  # forced while live
            self._replace_live()
            return True
        self._teardown_queues()  # every queue's outstanding commands are parked now
        with self.lock:
            held = len(self.parked)
        log.warning("connection lost (%s); %d commands held", self.last_error, held)
        self.write_state()
        loss_deadline = (time.monotonic() + self.params.ctrl_loss_tmo_s
                         if self.params.ctrl_loss_tmo_s else None)
        attempt = True
        while not self.stop_requested:
            with self.lock:
                forced, self._force = self._force, []
            if attempt or forced:
                ok = self._attempt(self._with_secrets(_requested_params(forced)))
                _answer(forced, ok, "" if ok else self.last_error)
                if ok:
                    return True
            delay = self.params.reconnect_delay_s or None
            if loss_deadline is not None:
                left = loss_deadline - time.monotonic()
                if left <= 0:
                    break
                delay = min(delay, left) if delay else left
            attempt = self.wake.wait(delay) is False and bool(self.params.reconnect_delay_s)
            self.wake.clear()
        # Controller loss timeout (or stop): what is still held fails with EIO.
        with self.lock:
            self._enter(DEAD)
            parked, self.parked = self.parked, []
            forced, self._force = self._force, []
        _answer(forced, False, "the session is ending")
        if self.stop_requested:
            log.info("disconnect requested while reconnecting: failing %d commands with EIO",
                     len(parked))
        else:
            log.error("giving up after ctrl-loss-tmo (%d s): failing %d commands with EIO",
                      self.params.ctrl_loss_tmo_s, len(parked))
        self._fail_parts(parked, N.EIO)
        return False

    def _replace_live(self) -> None:
        """A forced reconnect of a working association: make before break.

        As FreeBSD's reconnect hands the kernel an association only once it is
        connected, the new one is built first; if that fails (a mistyped
        address, a target refusing), the session keeps its association and
        its parameters, and the caller gets the error.
        """
        with self.lock:
            forced, self._force = self._force, []
        p = self._with_secrets(_requested_params(forced))
        log.info("reconnect requested: connecting to %s before replacing the association",
                 p.address_text)
        try:
            assoc, host = self._connect(p)
        except NvmeControlError as e:
            log.warning("reconnect to %s failed: %s; keeping the current association",
                        p.address_text, e)
            _answer(forced, False, str(e))
            return
        with self.lock:
            self.router.clear()
            if self.state == LIVE:  # (lost meanwhile: it is connecting already)
                self._enter(CONNECTING)  # new requests are held until _install
                self.lost_at = time.time()
                self.last_error = "reconnect requested"
        self._teardown_queues()
        self._adopt_new(assoc, p, host)
        _answer(forced, True, "")

    def _with_secrets(self, p: ConnectParams | None) -> ConnectParams:
        """The parameters a reconnect asked for (or ours), keeping our
        DH-HMAC-CHAP secrets where they came back redacted: state files and
        devlist never hold them, so a reconnect rebuilt from them cannot."""
        if p is None:
            return self.params
        keep = {name: getattr(self.params, name) for name in ("dhchap_secret",
                                                               "dhchap_ctrl_secret")
                if getattr(p, name) == REDACTED}
        return replace(p, **keep) if keep else p

    def _connect(self, p: ConnectParams) -> tuple[Association, HostIdentity]:
        # reconnect may name another host NQN/ID: the association must use it,
        # not the identity the session was started with.
        host = self.host
        if (p.hostnqn, p.hostid) != (host.hostnqn, str(host.hostid)):
            host = HostIdentity(p.hostnqn, uuid.UUID(p.hostid), "reconnect", "reconnect")
        address = Address(p.traddr, int(p.trsvcid), p.address_text)
        assoc = connect_association(address, p.subnqn, host, p.association_params())
        try:
            self._read_namespaces(assoc)
        except BaseException:
            assoc.close()
            raise
        return assoc, host

    def _attempt(self, p: ConnectParams) -> bool:
        """One try at a new association with ``p``; the session's parameters
        change only when it succeeds (a failed reconnect to a new address
        leaves the saved ones for the next periodic attempt)."""
        try:
            assoc, host = self._connect(p)
        except NvmeControlError as e:
            self.last_error = str(e)
            log.warning("reconnect to %s failed: %s", p.address_text, e)
            self.write_state()
            return False
        self._adopt_new(assoc, p, host)
        return True

    def _adopt_new(self, assoc: Association, p: ConnectParams, host: HostIdentity) -> None:
        self.params, self.host = p, host
        self._install(assoc)
        log.info("established a new association with %d I/O queues (cntlid %d)",
                 len(assoc.io), assoc.cntlid)
        self.write_state()

    def _shutdown(self) -> None:
        """Orderly end: stop accepting, let requests in flight finish, CC.SHN."""
        for lst in self.listeners:
            lst.close()
        with self.lock:
            live = self.state == LIVE
            if live:
                # New requests take the slow path and fail with ESHUTDOWN:
                # only what is in flight is drained.
                self.router.clear()
                self._enter(DELETING)
        self.write_state()
        if live:
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            while any(w.outstanding() for w in self.workers) and time.monotonic() < deadline:
                time.sleep(0.01)
            for w in self.workers:
                w.close()
            with self.assoc.admin.lock:
                self.assoc.shutdown()

    # -- state for devlist --
    def info(self) -> ControllerInfo:
        with self.lock:
            state, lost_at, assoc = self.state, self.lost_at, self.assoc
        namespaces = []
        tcp = [lst.address[:2] for lst in self.listeners[1:]]
        for nsid, ns in sorted(self.namespaces.items()):
            namespaces.append(NamespaceInfo(f"{self.name}ns{nsid}", nsid, ns.size, ns.lba_size,
                                            path=self.attached.get(nsid),
                                            uri=nbd_uri(str(self.paths.nbd), nsid),
                                            tcp_uris=[nbd_tcp_uri(h, p, nsid) for h, p in tcp],
                                            **self.ns_facts.get(nsid, NO_FACTS)._asdict()))
        cdata = assoc.cdata
        return ControllerInfo(
            name=self.name, backend="nbd", model=cdata.mn if cdata else "",
            subnqn=self.params.subnqn, transport="tcp", traddr=self.params.traddr,
            trsvcid=str(self.params.trsvcid), hostnqn=self.params.hostnqn, cntlid=assoc.cntlid,
            state=state, connected=state == LIVE,
            disconnected_since=lost_at if state != LIVE else None, namespaces=namespaces,
            pid=os.getpid(),
            # What was negotiated, not what was asked (0 asks for CAP.MQES + 1).
            params=replace(self.params, queue_size=assoc.io_queue_size)
            if assoc.io_queue_size else self.params)

    def write_state(self) -> None:
        data = self.info().to_json()
        data["last_error"] = self.last_error
        data["nbd_socket"] = str(self.paths.nbd)
        data["nbd_tcp"] = [list(lst.address)[:2] for lst in self.listeners[1:]]
        data["started"] = self.started
        try:
            write_atomically(self.paths.state, json.dumps(data, indent=1))
        except OSError as e:
            log.warning("cannot write %s: %s", self.paths.state, e.strerror)
