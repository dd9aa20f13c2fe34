"""Building and tearing down an association from the host side.

NVMe over Fabrics 1.1, 3.3 and 6 (controller initialization):

1. admin queue: TCP connect, ICReq/ICResp, Fabrics Connect (QID 0) carrying
   HOSTID, CNTLID, SUBNQN and HOSTNQN; the response gives the CNTLID, the
   authentication requirement and (SQHD 0xFFFF) whether SQ flow control is
   off; then DH-HMAC-CHAP (NVMe Base 2.1, 8.3.4) when the controller asks
   for it (AUTHREQ.ATR) or a controller secret asks us to check the
   controller, on this and every I/O queue;
2. CAP, then CC with EN=1 and the entry sizes, then CSTS.RDY polled for at
   most CAP.TO x 500 ms;
3. Identify Controller;
4. Set Features Number of Queues and one TCP connection + Connect per I/O
   queue (same CNTLID, KATO 0);
5. shutdown: CC.SHN = normal, wait for CSTS.SHST = complete, close.

Re-authentication (NVMe Base 2.1, 8.3.4.2): ``Association.reauthenticate``
runs a new transaction on every queue, as the Linux host does when its key
is written to sysfs (new secrets may be passed in); ``Association.execute``
answers a controller that completes a command with Authentication Required
(it withdrew a queue's authentication) by authenticating that queue again
and retrying the command once; ``Association.authenticate_with`` runs the
transaction through a queue that something else drives (the public API's
I/O queues, which retry their refused commands the same way).

Everything here speaks to queues through :class:`HostQueue`, so the same
logic serves discovery, the CLI's one-shot associations and the sessions of
the NBD bridge.
"""

from __future__ import annotations

import time

from nvmecontrol.errors import (CommandFailed, ConnectionLost, HostRefused, NvmeControlError,
                                PeerProtocolError, PeerTimeout,
                                Unsupported, UsageError)
from nvmecontrol.hostid import HostIdentity, hostid_bytes
from nvmecontrol.nqn import DISCOVERY_NQN
from nvmecontrol.options import default
from nvmecontrol.host.queue import CommandError, HostQueue
from nvmecontrol.transport.address import Address, format_address, resolve
from nvmecontrol.transport.driver import Dialer
from nvmecontrol.transport.tcp import TcpQueuePair
from nvmecontrol.wire import admin, fabrics as F
from nvmecontrol.wire.fabrics import CAP, CC, CSTS, Prop
from nvmecontrol.wire.qpair import ADMIN_ICD
from nvmecontrol.wire.records import Record
from nvmecontrol.wire.status import decode_status

TYPE_CHECKING = False  # typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from nvmecontrol.wire import auth
    from nvmecontrol.wire.auth_crypto import DhchapKey

# Admin SQ entries for I/O and discovery associations (Linux uses 32; the
# spec minimum NVME_AQ_MIN is 2 and nvmet allows up to 32).
ADMIN_QUEUE_SIZE = 32
# Poll interval for CSTS.RDY / SHST (FreeBSD polls every 500 ms; the kernel
# target is ready at once, so start fast and back off).
_POLL_START_S = 0.001
_POLL_MAX_S = 0.1
# CC.SHN completion bound when CAP.TO is 0 or absurd.
SHUTDOWN_TIMEOUT_S = 5.0
IOSQES, IOCQES = 6, 4  # 64-byte SQEs, 16-byte CQEs
CSS_NVM = 0x01


class AssociationParams(Record):
    """What the user chose for an association (FreeBSD connect options).

    Defaults are the option table's (nvmecontrol/options.py), but for
    ``num_io_queues``: none unless asked (discovery and one-shot commands).
    Built from a connect's options by ``ConnectParams.association_params``.
    A slots record rather than a dataclass: ``import dataclasses`` costs
    every discover about a bare interpreter start (``copy()`` is
    ``dataclasses.replace(params)``).
    """

    __slots__ = ("hdgst", "ddgst", "kato_s", "num_io_queues", "io_queue_size", "admin_queue_size",
                 "sq_flow_control", "cntlid", "timeout_s", "deadline", "dial", "dhchap_secret",
                 "dhchap_ctrl_secret")

    def __init__(self, hdgst: bool = default("hdgst"), ddgst: bool = default("ddgst"),
                 kato_s: int = default("kato_s"), num_io_queues: int = 0,
                 io_queue_size: int = default("queue_size"),
                 admin_queue_size: int = ADMIN_QUEUE_SIZE,
                 sq_flow_control: bool = default("sq_flow_control"),
                 cntlid: int = F.CNTLID_DYNAMIC, timeout_s: float = default("timeout_s"),
                 deadline: float | None = None, dial: Dialer = TcpQueuePair.connect_host,
                 dhchap_secret: DhchapKey | None = None,
                 dhchap_ctrl_secret: DhchapKey | None = None):
        self.hdgst = hdgst
        self.ddgst = ddgst
        self.kato_s = kato_s
        self.num_io_queues = num_io_queues
        self.io_queue_size = io_queue_size  # 0: CAP.MQES + 1, capped at DEFAULT_IO_QUEUE_SIZE
        self.admin_queue_size = admin_queue_size
        self.sq_flow_control = sq_flow_control  # FreeBSD -F: keep SQ flow control
        self.cntlid = cntlid
        self.timeout_s = timeout_s
        # Monotonic time by which a one-shot operation (discover, identify,
        # logpage) must be done, every command included; None: each command alone
        # is bounded by timeout_s (sessions, connect).
        self.deadline = deadline
        # How a queue pair is opened (the queue-driver seam): TCP by default.
        self.dial = dial
        # DH-HMAC-CHAP: the host's secret, and the controller's for bidirectional
        # authentication (the controller must prove it holds it).
        self.dhchap_secret = dhchap_secret
        self.dhchap_ctrl_secret = dhchap_ctrl_secret

    def copy(self) -> "AssociationParams":
        return self._replace()


DEFAULT_IO_QUEUE_SIZE = 128


class Association(Record):
    """A live association: admin queue, I/O queues and what we learned."""

    __slots__ = ("address", "subnqn", "host", "params", "admin", "cntlid", "cap", "vs", "cdata",
                 "cdata_raw", "io", "io_queue_size", "sq_flow_control", "addrinfo")

    def __init__(self, address: Address, subnqn: str, host: HostIdentity,
                 params: AssociationParams, admin: HostQueue, cntlid: int = 0,
                 cap: CAP | None = None, vs: F.VS | None = None, cdata: object = None,
                 cdata_raw: bytes = b"", io: list[HostQueue] | None = None,
                 io_queue_size: int = 0, sq_flow_control: bool = True,
                 addrinfo: list | None = None):
        self.address = address
        self.subnqn = subnqn
        self.host = host
        self.params = params
        self.admin = admin
        self.cntlid = cntlid
        self.cap = cap
        self.vs = vs
        self.cdata = cdata  # decoded Identify Controller
        self.cdata_raw = cdata_raw
        self.io = [] if io is None else io
        self.io_queue_size = io_queue_size
        self.sq_flow_control = sq_flow_control
        self.addrinfo = [] if addrinfo is None else addrinfo

    @property
    def peer(self) -> str:
        return format_address(self.address.host, self.address.port)

    @property
    def peer_host(self) -> str | None:
        """The numeric address the admin queue reached (None when unknown)."""
        peer = getattr(self.admin.driver, "peer", None)
        return peer[0] if isinstance(peer, tuple) and peer else None

    # -- commands --
    def execute(self, q: HostQueue, sqe, what: str, **kw):
        """``q.execute``, re-authenticating the queue once if the controller asks.

        A controller that withdrew the queue's authentication (its keys for
        this host changed) completes commands with Authentication Required;
        with a host secret, the queue runs a new transaction and the command
        is sent again, once.  Without a secret, or when it fails again, the
        error stands.
        """
        try:
            return q.execute(sqe, what, **kw)
        except CommandError as exc:
            if self.params.dhchap_secret is None:
                raise
            from nvmecontrol.wire import auth

            if not auth.asks_authentication(exc.cqe.status):
                raise
        self.authenticate(q)
        return q.execute(sqe, what, **kw)

    def authenticate(self, q: HostQueue) -> auth.Authenticated:
        """One new DH-HMAC-CHAP transaction on ``q`` with the current secrets."""
        return authenticate_queue(q, qid=q.qid, host=self.host, subnqn=self.subnqn,
                                  params=self.params)

    def authenticate_with(self, execute, qid: int) -> auth.Authenticated:
        """A new transaction on queue ``qid`` of this association, whose commands ``execute`` runs.

        For a queue driven by something else than its ``HostQueue`` (the
        public API's I/O queues have a receiver thread of their own); see
        ``run_authentication`` for ``execute``.
        """
        return run_authentication(execute, qid=qid, host=self.host, subnqn=self.subnqn,
                                  params=self.params)

    def reauthenticate(self, *, dhchap_secret: DhchapKey | None = None,
                       dhchap_ctrl_secret: DhchapKey | None = None) -> list[auth.Authenticated]:
        """Authenticate every queue again, admin first (host-initiated re-authentication).

        New secrets replace the association's first (they are then used by
        every later transaction, on reconnect too).  The caller keeps other
        commands off the queues meanwhile: each queue runs one command at a
        time.
        """
        if dhchap_secret is not None:
            self.params.dhchap_secret = dhchap_secret
        if dhchap_ctrl_secret is not None:
            self.params.dhchap_ctrl_secret = dhchap_ctrl_secret
        return [self.authenticate(q) for q in [self.admin, *self.io]]

    # -- properties --
    def get_property(self, prop: int) -> int:
        cqe, _ = self.execute(self.admin, F.build_property_get(prop),
                              f"Property Get {Prop(prop).name}")
        return cqe.result64 if F.PROP_SIZE.get(prop, 4) == 8 else cqe.dw0

    def set_property(self, prop: int, value: int) -> None:
        self.execute(self.admin, F.build_property_set(prop, value),
                     f"Property Set {Prop(prop).name}")

    def identify(self, cns: int, nsid: int = 0, cntid: int = 0) -> bytes:
        from nvmecontrol.wire.identify import IDENTIFY_DATA_SIZE  # see connect_association

        _, data = self.execute(self.admin, admin.build_identify(cns, nsid, cntid),
                               f"Identify CNS {cns:#04x}", read_len=IDENTIFY_DATA_SIZE)
        return data

    def get_log_page(self, g: admin.GetLogPage) -> bytes:
        _, data = self.execute(self.admin, admin.build_get_log_page(g),
                               f"Get Log Page {g.lid:#04x}", read_len=g.length)
        return data

    def keep_alive(self, timeout: float | None = None) -> None:
        self.execute(self.admin, admin.build_keep_alive(), "Keep Alive", timeout=timeout)

    def close(self) -> None:
        for q in self.io:
            q.close()
        self.admin.close()

    def shutdown(self) -> None:
        """Orderly shutdown (CC.SHN normal) and close; errors only shorten it."""
        try:
            cc = CC.decode(self.get_property(Prop.CC))
            self.set_property(Prop.CC, cc._replace(shn=F.SHN_NORMAL).encode())
            deadline = time.monotonic() + SHUTDOWN_TIMEOUT_S
            delay = _POLL_START_S
            while CSTS.decode(self.get_property(Prop.CSTS)).shst != F.SHST_COMPLETE:
                if time.monotonic() > deadline:
                    break
                time.sleep(delay)
                delay = min(delay * 2, _POLL_MAX_S)
        except NvmeControlError:
            pass
        finally:
            self.close()


def _hostid16(host: HostIdentity) -> bytes:
    return hostid_bytes(host.hostid)


def connect_queue(addrinfo: list, *, qid: int, sqsize: int, host: HostIdentity, subnqn: str,
                  cntlid: int, kato_ms: int, params: AssociationParams,
                  max_icd: int = ADMIN_ICD) -> tuple[HostQueue, int, bool]:
    """Open one queue pair and send Fabrics Connect on it.

    Returns the queue, the CNTLID granted and whether SQ flow control stays on.
    """
    driver = params.dial(addrinfo, timeout=params.timeout_s, queue_size=sqsize,
                         hdgst=params.hdgst, ddgst=params.ddgst, max_icd=max_icd)
    q = HostQueue(driver, qid=qid, timeout=params.timeout_s, deadline=params.deadline)
    try:
        check_digests(driver.established, params, qid)
        cattr = 0 if params.sq_flow_control else F.CATTR_DISABLE_SQFLOW
        data = F.encode_connect_data(F.ConnectData(_hostid16(host), cntlid, subnqn, host.hostnqn))
        # N.B. SQSIZE is 0's based.
        sqe = F.build_connect(F.ConnectCmd(qid=qid, sqsize=sqsize - 1, kato_ms=kato_ms, cattr=cattr))
        cqe, _ = q.execute(sqe, "Connect", write_data=data, check=False)
        if cqe.status:
            raise connect_failure(cqe, qid)
        result = F.parse_connect_response(cqe)
        if result.authreq & F.AUTHREQ_ASCR:
            raise Unsupported(f"controller requires a secure channel (TLS) for {subnqn}, "
                              f"which nvmecontrol does not support")
        required = bool(result.authreq & F.AUTHREQ_ATR)
        # A controller secret means the user wants the controller checked:
        # authenticate even unasked, or an impostor could skip it by not asking.
        if required or params.dhchap_ctrl_secret is not None:
            authenticate_queue(q, qid=qid, host=host, subnqn=subnqn, params=params,
                               required=required)
        fc_on = cqe.sqhd != F.SQHD_FC_DISABLED
        if params.sq_flow_control and not fc_on:
            raise PeerProtocolError("controller disabled SQ flow control")
        q.qp.sq_flow_control = fc_on
        if fc_on:
            q.qp.sqhd = cqe.sqhd
        return q, result.cntlid, fc_on
    except BaseException:
        q.close()
        raise


def authenticate_queue(q: HostQueue, *, qid: int, host: HostIdentity, subnqn: str,
                       params: AssociationParams, required: bool = True) -> auth.Authenticated:
    """One DH-HMAC-CHAP transaction on a connected queue (NVMe Base 2.1, 8.3.4.5).

    Raises an ``auth.AuthError`` subclass naming the side that failed and the
    reason code: ``AuthKeyMissing`` when the controller asks and no secret was
    given, ``HostKeyRejected`` when it refuses our response,
    ``ControllerAuthFailed`` when its own response is wrong, ``AuthUnsupported``
    when no hash or group fits.
    """
    def execute(sqe, what: str, **kw) -> bytes:
        return q.execute(sqe, what, **kw)[1]
    return run_authentication(execute, qid=qid, host=host, subnqn=subnqn, params=params,
                              required=required)


def run_authentication(execute, *, qid: int, host: HostIdentity, subnqn: str,
                       params: AssociationParams, required: bool = True) -> auth.Authenticated:
    """``authenticate_queue`` over any way of running commands on the queue.

    ``execute(sqe, what, write_data=..., read_len=...)`` runs one command and
    returns the data it read, raising ``CommandError`` on an error status.
    """
    # The DH-HMAC-CHAP machinery (hashlib, hmac, secrets) loads only when a
    # controller asks for authentication or secrets were given (start-up).
    from nvmecontrol.wire import auth

    if params.dhchap_secret is None:
        why = ("requires DH-HMAC-CHAP authentication" if required else
               "must be authenticated (--dhchap-ctrl-secret) but no host secret was given")
        raise auth.auth_error(auth.AuthKeyMissing,
                               f"controller {subnqn} {why} on queue {qid}: give the host secret "
                               f"with --dhchap-secret", "host", 0)
    import secrets  # here: a connect without a secret never needs it (start-up)

    machine = auth.HostAuth(qid=qid, t_id=secrets.randbits(16), hostnqn=host.hostnqn,
                            subnqn=subnqn, host_key=params.dhchap_secret,
                            ctrl_key=params.dhchap_ctrl_secret, now=time.monotonic(),
                            timeout_s=params.timeout_s)
    while True:
        try:
            action = machine.next_action(time.monotonic())
        except auth.HostKeyRejected as exc:
            if not required:
                exc.args = (f"{exc.args[0]} (the controller did not ask for authentication; "
                            f"it may hold no key for this host)",)
            raise
        if type(action) is auth.Authenticated:
            return action
        try:
            if type(action) is auth.Send:
                sqe = F.build_auth_send(auth.SECP_DHCHAP, len(action.data))
                execute(sqe, "Authentication Send", write_data=action.data)
            else:
                sqe = F.build_auth_receive(auth.SECP_DHCHAP, action.al)
                data = execute(sqe, "Authentication Receive", read_len=action.al)
                machine.received(data, time.monotonic())
        except CommandError as exc:
            if required:
                raise
            raise auth.auth_error(
                auth.AuthUnsupported, f"controller {subnqn} cannot authenticate itself "
                f"(--dhchap-ctrl-secret) on queue {qid}: {exc}", "controller", 0) from None
        except ConnectionLost as exc:
            if machine.awaiting_verdict:
                # The Linux target sometimes tears the controller down after a
                # response that failed verification before its Failure1 is
                # read: the closed connection is that verdict.
                raise auth.auth_error(
                    auth.HostKeyRejected, f"controller {subnqn} closed the connection on queue "
                    f"{qid} after the host's DH-HMAC-CHAP response instead of answering it: "
                    f"the host key was most likely rejected ({exc})", "host", 0) from None
            if not machine.failing:
                raise
        except NvmeControlError:
            # The Failure2 owed to a controller that already hung up: the
            # authentication error is the news, not the lost connection.
            if not machine.failing:
                raise


def check_digests(est, params: AssociationParams, qid: int) -> None:
    """A digest the user asked for and the controller declined is an error.

    The controller may grant less than the ICReq asked (NVMe/TCP 3.6.2.2);
    going on without it would silently give weaker integrity than asked for,
    which the Linux host refuses too.
    """
    declined = [name for name, asked, got in (("header", params.hdgst, est.hdgst),
                                              ("data", params.ddgst, est.ddgst))
                if asked and not got]
    if declined:
        raise Unsupported(f"controller declined {' and '.join(declined)} digests on queue {qid} "
                          f"(asked with {'-g' if 'header' in declined else ''}"
                          f"{' ' if len(declined) == 2 else ''}{'-G' if 'data' in declined else ''})")


def connect_failure(cqe, qid: int) -> CommandFailed:
    """A readable error for a failed Connect (Fabrics 3.3.1: IATTR/IPO on invalid parameters)."""
    st = decode_status(cqe.status)
    err = CommandError(f"Connect (queue {qid})", cqe)
    if st.sct == 1 and st.sc == 0x84:
        return HostRefused(f"{err.args[0]}: the controller does not allow this host NQN",
                           cqe.status)
    if st.sct == 1 and st.sc == 0x82:
        ipo, in_data = F.parse_connect_invalid(cqe.dw0)
        where = "Connect data" if in_data else "Connect command"
        err.args = (f"{err.args[0]}; invalid parameter at byte {ipo} of the {where}",)
    return err


def _wait_ready(assoc: Association, want: int, cap: CAP) -> None:
    # CAP.TO is in 500 ms units; 0 would mean "no time", so allow a floor.
    limit = max(cap.to * 0.5, 0.5)
    deadline = time.monotonic() + limit
    delay = _POLL_START_S
    while True:
        csts = CSTS.decode(assoc.get_property(Prop.CSTS))
        if csts.cfs:
            raise PeerProtocolError(f"controller fatal status (CSTS.CFS) while enabling {assoc.subnqn}")
        if csts.rdy == want:
            return
        if time.monotonic() > deadline:
            raise PeerTimeout(f"controller {assoc.subnqn} did not become ready within "
                              f"{limit:g} s (CAP.TO)")
        time.sleep(delay)
        delay = min(delay * 2, _POLL_MAX_S)


def enable_controller(assoc: Association, *, io: bool) -> None:
    """CAP → CC.EN=1 → CSTS.RDY (NVMe 2.0, 3.5.1)."""
    cap = CAP.decode(assoc.get_property(Prop.CAP))
    assoc.cap = cap
    if io and not cap.css & CSS_NVM:
        raise Unsupported(f"controller {assoc.subnqn} does not support the NVM command set")
    cc = CC.decode(assoc.get_property(Prop.CC))
    if cc.en:
        return  # already enabled (a static controller reused); leave it
    # MPS: host page size 4 KiB (MPS 0) clamped to CAP.MPSMIN..MPSMAX.
    mps = min(max(0, cap.mpsmin), cap.mpsmax) if cap.mpsmax >= cap.mpsmin else cap.mpsmin
    cc = cc._replace(en=1, css=0, mps=mps, ams=0, shn=0,
                     iosqes=IOSQES if io else 0, iocqes=IOCQES if io else 0)
    assoc.set_property(Prop.CC, cc.encode())
    _wait_ready(assoc, 1, cap)


def connect_association(address: Address, subnqn: str, host: HostIdentity,
                        params: AssociationParams | None = None) -> Association:
    """Build a whole association: admin queue, enable, identify, I/O queues."""
    params = params or AssociationParams()
    if address.port is None:
        raise UsageError(f"address {address.text!r} has no port")
    addrinfo = resolve(address)
    discovery = subnqn == DISCOVERY_NQN
    kato_ms = 0 if discovery else params.kato_s * 1000
    q, cntlid, fc_on = connect_queue(addrinfo, qid=0, sqsize=params.admin_queue_size, host=host,
                                     subnqn=subnqn, cntlid=params.cntlid, kato_ms=kato_ms,
                                     params=params)
    assoc = Association(address, subnqn, host, params, q, cntlid=cntlid, sq_flow_control=fc_on,
                        addrinfo=addrinfo)
    try:
        enable_controller(assoc, io=not discovery)
        # The Identify records once a controller answers: a command that
        # cannot reach one ends without them (start-up, issue 13).
        from nvmecontrol.wire.identify import CNS_CONTROLLER, decode_identify_controller

        assoc.cdata_raw = assoc.identify(CNS_CONTROLLER)
        assoc.cdata = decode_identify_controller(assoc.cdata_raw)
        try:
            assoc.vs = F.VS.decode(assoc.get_property(Prop.VS))
        except CommandFailed:
            assoc.vs = None
        if params.num_io_queues and not discovery:
            create_io_queues(assoc)
    except BaseException:
        assoc.shutdown()
        raise
    return assoc


def create_io_queues(assoc: Association) -> None:
    params = assoc.params
    n = params.num_io_queues
    cqe, _ = assoc.execute(assoc.admin, admin.build_set_num_queues(n),
                           "Set Features Number of Queues")
    nsq, ncq = admin.parse_num_queues(cqe.dw0)
    if min(nsq, ncq) < n:
        raise CommandFailed(f"controller enabled fewer I/O queues ({min(nsq, ncq)}) than requested ({n})")
    mqes = assoc.cap.mqes + 1
    size = params.io_queue_size or min(mqes, DEFAULT_IO_QUEUE_SIZE)
    if size > mqes:
        raise UsageError(f"I/O queue size {size} exceeds controller maximum ({mqes})")
    if size < 2:
        raise UsageError(f"invalid I/O queue size {size}")
    icd = max(0, assoc.cdata.ioccsz * 16 - 64) if assoc.cdata.ioccsz else 0
    assoc.io_queue_size = size
    for qid in range(1, n + 1):
        q, _cntlid, _fc = connect_queue(assoc.addrinfo, qid=qid, sqsize=size, host=assoc.host,
                                        subnqn=assoc.subnqn, cntlid=assoc.cntlid, kato_ms=0,
                                        params=params, max_icd=icd)
        assoc.io.append(q)
