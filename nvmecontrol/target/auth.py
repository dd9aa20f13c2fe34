"""DH-HMAC-CHAP on nvmfd's queues: Authentication Send/Receive and the gate before them.

NVMe Base 2.1, 8.3.4 and 6.3/6.4.  A host whose configuration entry holds a
``dhchap_key`` gets AUTHREQ.ATR in every Connect response and must run one
transaction per queue (``wire/auth.ControllerAuth``) before the queue
serves anything else.  As on Linux's nvmet: Fabrics commands (Property
Get/Set, the authentication commands) pass on an unauthenticated admin
queue, every other command fails with Authentication Required (SCT 1h,
SC 91h, DNR); a failed transaction leaves the queue unauthenticated (the
host ends the association, or the keep-alive timer does).

The commands' fields are checked as nvmet checks them: SECP E9h, SPSP0 and
SPSP1 01h, a non-zero length no larger than ``MAX_AUTH_TRANSFER`` that the
SGL describes exactly (Invalid Field with the byte offset, DNR).

Re-authentication (8.3.4.2).  The host may start a new transaction on an
authenticated queue at any time (Linux does when its key is written to
``/sys/class/nvme/nvmeX/dhchap_secret``): the admin queue's Authentication
commands always reach ``QueueAuth``, and an authenticated I/O queue, whose
batches take the fast path, has its Authentication commands taken out of
each batch by ``IoAuthGate.intercept`` (``connection.py``).  The queue keeps
serving while the transaction runs.  When the daemon learns new keys for a
host, ``rekey_host`` withdraws the authentication of every queue of that
host: they answer Authentication Required *without* DNR until they
authenticate again with the new keys (``AUTH_REQUIRED_RETRY``; with DNR the
Linux host would fail the command instead of re-authenticating).

Command Retry Delay.  The Linux host answers that status by starting its
re-authentication in the background and retrying the command at once, five
times at most: without a delay the command fails before the transaction is
done.  A host that enabled ACRE (Set Features Host Behavior Support, which
Linux does when Identify Controller gives a CRDT1) therefore gets a CRD in
those answers, chosen by ``reauth_crd`` from how long the queue has been
refusing: short at first, longer while the host takes its time
(``constants.CRDT``).  To other hosts the CRD stays 0, as the spec requires.
"""

from __future__ import annotations

import logging

from nvmecontrol.target import constants as K
from nvmecontrol.target.config import HostAuthConfig
from nvmecontrol.wire import auth as A
from nvmecontrol.wire import fabrics as F
from nvmecontrol.wire.capsule import SGL_DATA_BLOCK_OFFSET, SGL_TRANSPORT_DATA_BLOCK, decode_sqe
from nvmecontrol.wire.qpair import Command
from nvmecontrol.wire.status import (CRD_SHIFT, SCT_COMMAND_SPECIFIC, SC_AUTH_REQUIRED,
                                     make_status)

log = logging.getLogger("nvmfd")

AUTH_REQUIRED = make_status(SCT_COMMAND_SPECIFIC, SC_AUTH_REQUIRED, dnr=True)
# The same status for a queue whose authentication was withdrawn: retry after
# re-authenticating.
AUTH_REQUIRED_RETRY = make_status(SCT_COMMAND_SPECIFIC, SC_AUTH_REQUIRED)
_OPC_FABRICS = F.OPC_FABRICS
_AUTH_FCTYPES = (F.FCType.AUTH_SEND, F.FCType.AUTH_RECEIVE)
_PEL_SGL = 24
# Authentication Send data arrive in the capsule or by R2T, collected into a
# buffer: bounded by the largest message (a Reply with SHA-512 and
# ffdhe8192 is 1168 bytes) and by what a connection collects at all.
MAX_SEND_LEN = min(A.MAX_AUTH_TRANSFER, K.MAX_COLLECTED_DATA)


def reauth_crd(refusing_s: float) -> int:
    """The CRD (1..3) for a withdrawn queue that has been refusing for ``refusing_s`` seconds."""
    short, longer = K.REAUTH_CRD_AFTER_S
    return 1 if refusing_s < short else 2 if refusing_s < longer else 3


class AuthCommandError(Exception):
    """An Authentication Send/Receive refused with ``status`` (``pel``: the SQE byte)."""

    def __init__(self, status: int, why: str, pel: int = K.PEL_NONE):
        super().__init__(why)
        self.status = status
        self.why = why
        self.pel = pel


class QueueAuth:
    """The DH-HMAC-CHAP state of one queue of an association that must authenticate."""

    def __init__(self, cfg: HostAuthConfig, *, qid: int, hostnqn: str, subnqn: str, clock,
                 assoc_id: int = 0):
        self.machine = A.ControllerAuth(qid=qid, hostnqn=hostnqn, subnqn=subnqn,
                                        host_key=cfg.host_key, ctrl_key=cfg.ctrl_key,
                                        hash_id=cfg.hash_id, dhgroup=cfg.dhgroup)
        self.clock = clock
        self.qid = qid
        self.assoc_id = assoc_id
        self._reported = 0  # the transaction whose failure was logged
        # Clock reading of the first refusal since the authentication was
        # withdrawn (the CRD grows from there).
        self._refusing_since: float | None = None

    @property
    def authenticated(self) -> bool:
        return self.machine.authenticated

    def refusal(self, acre: bool) -> int:
        """The status of a command on this queue while it is not authenticated.

        ``acre``: the host enabled Advanced Command Retry; only then may the
        status carry a CRD (after a withdrawal; see module notes).
        """
        if not self.machine.reauth_required:
            return AUTH_REQUIRED
        if not acre:
            return AUTH_REQUIRED_RETRY
        now = self.clock()
        if self._refusing_since is None:
            self._refusing_since = now
        return AUTH_REQUIRED_RETRY | reauth_crd(now - self._refusing_since) << CRD_SHIFT

    def rekey(self, cfg: HostAuthConfig) -> None:
        """New keys for this queue's host: its authentication is withdrawn (see module notes)."""
        self.machine.require_reauthentication(host_key=cfg.host_key, ctrl_key=cfg.ctrl_key,
                                              hash_id=cfg.hash_id, dhgroup=cfg.dhgroup,
                                              keep_ctrl_key=False)
        self._refusing_since = None
        log.info("association %d queue %d: keys changed, re-authentication required",
                 self.assoc_id, self.qid)

    def command(self, conn, sqe, data, on_done=None) -> None:
        """Run an Authentication Send/Receive; ``data``: the in-capsule bytes, if any.

        ``on_done()`` runs once the queue is authenticated.  Raises
        ``AuthCommandError`` for a malformed command.
        """
        fctype = F.fctype_of(sqe)
        cmd = F.parse_auth_command(sqe)
        if cmd.secp != A.SECP_DHCHAP:
            raise AuthCommandError(K.INVALID_FIELD, f"SECP {cmd.secp:#04x} (DH-HMAC-CHAP is E9h)",
                                   F.AUTH_SECP_OFFSET)
        if cmd.spsp0 != A.SPSP0_DHCHAP:
            raise AuthCommandError(K.INVALID_FIELD, f"SPSP0 {cmd.spsp0:#04x}", F.AUTH_SPSP0_OFFSET)
        if cmd.spsp1 != A.SPSP1_DHCHAP:
            raise AuthCommandError(K.INVALID_FIELD, f"SPSP1 {cmd.spsp1:#04x}", F.AUTH_SPSP1_OFFSET)
        limit = MAX_SEND_LEN if fctype == F.FCType.AUTH_SEND else A.MAX_AUTH_TRANSFER
        if not 0 < cmd.length <= limit:
            raise AuthCommandError(K.INVALID_FIELD, f"transfer length {cmd.length} not in "
                                   f"1..{limit}", F.AUTH_LENGTH_OFFSET)
        if sqe.sgl.length != cmd.length:
            raise AuthCommandError(K.SGL_DATA_LENGTH_INVALID, f"SGL length {sqe.sgl.length}, "
                                   f"the command transfers {cmd.length}", _PEL_SGL)
        self.machine.on_timer(self.clock())
        if fctype == F.FCType.AUTH_SEND:
            self._send(conn, sqe, data, cmd.length, on_done)
        else:
            self._receive(conn, sqe, cmd.length, on_done)

    def _send(self, conn, sqe, data, length: int, on_done) -> None:
        t = sqe.sgl.type
        if t == SGL_DATA_BLOCK_OFFSET:
            if data is None or sqe.sgl.addr != 0 or len(data) != length:
                raise AuthCommandError(K.SGL_OFFSET_INVALID,
                                       "Authentication Send data not where its SGL says", _PEL_SGL)
            self._sent(conn, sqe.cid, bytes(data), on_done)
        elif t == SGL_TRANSPORT_DATA_BLOCK:
            def got(cid, collected, bad):
                if bad:
                    conn.fail(cid, K.TRANSIENT_TRANSPORT, "data digest error in Authentication "
                              "Send data", opc=sqe.opc)
                else:
                    self._sent(conn, cid, bytes(collected), on_done)
            conn.collect(sqe.cid, length, got)
        else:
            raise AuthCommandError(K.SGL_TYPE_INVALID, f"SGL descriptor type {t:#04x}", _PEL_SGL)

    def _sent(self, conn, cid: int, data: bytes, on_done) -> None:
        self.machine.on_send(data, self.clock())
        conn.respond(cid)
        self._after(on_done)

    def _receive(self, conn, sqe, al: int, on_done) -> None:
        if sqe.sgl.type != SGL_TRANSPORT_DATA_BLOCK:
            raise AuthCommandError(K.INVALID_FIELD, "Authentication Receive needs a transport "
                                   "SGL", _PEL_SGL)
        msg = self.machine.on_receive(al, self.clock())
        if len(msg) > al:
            raise AuthCommandError(K.INVALID_FIELD, f"AL {al} is shorter than the "
                                   f"{len(msg)}-byte message", F.AUTH_LENGTH_OFFSET)
        conn.send_read(sqe.cid, msg.ljust(al, b"\0"))
        self._after(on_done)

    def _after(self, on_done) -> None:
        m = self.machine
        if m.authenticated and m.finished:
            log.debug("association %d queue %d: host authenticated (%s, %s)", self.assoc_id,
                      self.qid, A.C.HASH_NAMES.get(m.hash_id, m.hash_id),
                      A.C.DHGROUP_NAMES.get(m.dhgroup, m.dhgroup))
            if on_done is not None:
                on_done()
        elif m.failed and self._reported != m.transactions:
            self._reported = m.transactions
            log.warning("association %d queue %d: DH-HMAC-CHAP failed: %s (%s)", self.assoc_id,
                        self.qid, m.detail, A.reason_text(m.reason))


class IoAuthGate:
    """An I/O queue's command handler while it is not authenticated.

    Authentication Send/Receive go to the queue's ``QueueAuth``, everything
    else fails with Authentication Required; on success the queue gets its
    real handler (``on_authenticated``: the I/O hot path never sees this
    gate) and the gate stays on the connection (``conn.auth_gate``) to take
    the Authentication commands of a re-authentication out of its batches.
    """

    def __init__(self, conn, auth: QueueAuth, on_authenticated):
        self.conn = conn
        self.auth = auth
        self.on_authenticated = on_authenticated
        conn.auth_gate = self

    def command(self, ev) -> None:
        conn = self.conn
        sqe = decode_sqe(ev.sqe)
        try:
            if ev.digest_error:
                raise AuthCommandError(K.TRANSIENT_TRANSPORT, "data digest error in the command "
                                       "capsule")
            if sqe.opc == _OPC_FABRICS and F.fctype_of(sqe) in _AUTH_FCTYPES:
                self.auth.command(conn, sqe, ev.data, self.on_authenticated)
                self._follow()
            else:
                why = ("its authentication was withdrawn (the host's keys changed)"
                       if self.auth.machine.reauth_required else "it is not authenticated")
                ctrl = conn.ctrl
                raise AuthCommandError(self.auth.refusal(ctrl is not None and ctrl.acre),
                                       f"queue {self.auth.qid}: {why}")
        except AuthCommandError as e:
            conn.fail(sqe.cid, e.status, e.why, opc=sqe.opc, nsid=sqe.nsid, pel=e.pel)

    def _follow(self) -> None:
        """Gate the queue when a transaction left it unauthenticated (caller holds the lock)."""
        conn = self.conn
        if not self.auth.authenticated and conn.io is not None:
            conn.io = None
            conn.on_command = self.command

    def intercept(self, events: list) -> list:
        """An authenticated queue's batch, Authentication commands answered here.

        Returns what the I/O queue handles; once a command here leaves the
        queue unauthenticated (a failed re-authentication), the rest of the
        batch is answered by the gate too.
        """
        for t in events:  # the common case: no Fabrics command in the batch
            if type(t) is tuple and t[1][0] == _OPC_FABRICS:
                break
        else:
            return events
        rest = []
        conn = self.conn
        for i, t in enumerate(events):
            if conn.io is None:  # gated by what came before in this batch
                for u in events[i:]:
                    if type(u) is tuple:
                        self.command(Command(u[1][2] | u[1][3] << 8, u[1], u[2], u[3]))
                    else:
                        conn.write_data(u)
                break
            if type(t) is tuple and t[1][0] == _OPC_FABRICS and t[1][4] in _AUTH_FCTYPES:
                self.command(Command(t[1][2] | t[1][3] << 8, t[1], t[2], t[3]))
            else:
                rest.append(t)
        return rest

    def require_reauthentication(self) -> None:
        """Back to the gate: the queue answers Authentication Required until it re-authenticates."""
        self.conn.io = None
        self.conn.on_command = self.command


def rekey_host(server, hostnqn: str, cfg: HostAuthConfig | None) -> int:
    """The daemon has new DH-HMAC-CHAP settings for ``hostnqn``: apply them to its live queues.

    For the nvmfd control layer, after its configuration changed (reload or
    a host's keys set at run time).  With ``cfg``, every queue of the host's
    associations that authenticates is unauthenticated until the host runs a
    transaction with the new keys (Authentication Required without DNR
    meanwhile); new I/O queues of those associations take the new keys.  With
    ``None`` (the host no longer has keys) live queues keep what they proved.
    Associations made while the host had no keys never authenticated and
    are left alone (terminate them to force authentication).  Returns the
    number of queues whose authentication was withdrawn.
    """
    if cfg is None:
        return 0
    with server.lock:
        ctrls = [c for c in server.controllers.values()
                 if c.hostnqn == hostnqn and c.admin_auth is not None and not c.dead]
    count = 0
    for ctrl in ctrls:
        ctrl.auth_cfg = cfg
        admin = ctrl.admin
        with admin.lock:
            ctrl.admin_auth.rekey(cfg)
        count += 1
        for conn in list(ctrl.io_queues.values()):
            with conn.lock:
                gate = conn.auth_gate
                if gate is not None:
                    gate.auth.rekey(cfg)
                    gate.require_reauthentication()
                    count += 1
    return count
