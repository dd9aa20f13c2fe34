"""Controllers: Connect, properties, admin commands, features, AER, keep-alive.

NVMe over Fabrics 1.1 (3.3 Connect, Property Get/Set; 3.2 dynamic
controller model; 5 discovery controllers) and NVMe Base 2.0 (5 admin
commands, 3.1.4 controller registers, 3.9 keep alive).  Where the spec
leaves room, the Linux kernel target's answers are mirrored, since that is
what hosts are tested against:

* Connect on a fresh queue only; anything else there is Invalid Opcode.
  Admin Connect needs CNTLID FFFFh (dynamic model: we allocate the lowest
  free ID from 1), a subsystem exported on the port the host came in by
  (else Invalid Parameters, IPO 256 in the data), an allowed host (else
  Connect Invalid Host, SCT 1 SC 84h DNR, IPO 512), SQSIZE 1..MQES (IPO 44
  of the command).  I/O Connect needs the CNTLID of a live controller of
  the same host (IPO 16), a QID within the granted queue count (IPO 42), an
  enabled controller and a QID not yet connected (Command Sequence Error).
  CATTR "disable SQ flow control" is always honoured (TREQ advertises it):
  responses then carry SQHD FFFFh and reads complete with C2HData SUCCESS.
* CC.EN 0->1 checks IOSQES/IOCQES (6/4, I/O controllers), MPS 0, AMS 0 and
  CSS (else CSTS.CFS); CC.SHN flushes the namespaces and reports
  CSTS.SHST complete.  Every non-Fabrics command fails with Command
  Sequence Error (DNR) until CC.EN=1 and CSTS.RDY=1.
* Keep alive is traffic based (CTRATT.TBKAS, as nvmet): any PDU on any
  queue of the association restarts the KATO timer, a Keep Alive command
  included.  The server's housekeeping thread ends an association whose
  timer ran out: all its queues are closed.
* DH-HMAC-CHAP (``auth.py``): a host whose configuration holds a key gets
  AUTHREQ.ATR in each Connect response and must authenticate every queue
  before using it (Authentication Required otherwise, Fabrics commands
  excepted on the admin queue).
* Asynchronous events: up to AERL+1 requests are held; a namespace added
  or removed completes one with Notice / Namespace Attribute Changed (log
  04h), a discovery log change one with Notice / Discovery Log Page Change
  (log 70h).  Each kind is then masked until its log page is read without
  RAE, as the spec and nvmet do.
* ANA (``ana.py``): the ANA log page (0Ch) shows the groups' states on the
  port the host came in by; ANAGRPMAX = NANAGRPID = 128; a state change
  completes an AER with Notice / ANA Change (03h, log 0Ch) when the host
  enabled it (AEC bit 11, on by default as in nvmet), masked until the page
  is read without RAE.  Identify Namespace reports NUSE 0 while the
  namespace's group is inaccessible or lost on this port, as nvmet.
* Write protection: NSATTR bit 0 and feature 84h (Namespace Write
  Protection Config, NWPC "no write protect / write protect") report a
  read-only namespace; Set Features 84h write-protects a namespace or lifts
  it (not for namespaces exported read-only: Feature Not Changeable), then
  every controller gets a Namespace Attribute Changed notice, as nvmet.
* Command Retry Delay: Identify Controller gives CRDT1..3 (``constants.CRDT``)
  and feature 16h (Host Behavior Support, 512 bytes of data both ways)
  takes ACRE; with ACRE set, Authentication Required on a queue whose
  authentication was withdrawn carries a CRD (``auth.py``), so the Linux
  host waits for its re-authentication instead of failing the command.  The
  other bytes of the structure (telemetry, LBA format extension) describe
  what this controller does not support and are ignored.
* Reservations (``reservations.py``): ONCS bit 5 and RESCAP advertised; each
  controller keeps its host's reservation notifications for log page 80h
  (one entry per read, I/O Command Specific AEN "Reservation Log Page
  Available"), filtered by feature 82h; feature 83h says no persistence.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections import deque

from nvmecontrol import __version__
from nvmecontrol.errors import NvmeControlError
from nvmecontrol.nqn import DISCOVERY_NQN
from nvmecontrol.target import ana
from nvmecontrol.target import constants as K
from nvmecontrol.target.auth import AuthCommandError, IoAuthGate, QueueAuth
from nvmecontrol.target.config import MAX_NSID
from nvmecontrol.target.discovery import build_discovery_log
from nvmecontrol.target.reservations import ReservationLog
from nvmecontrol.wire import admin as A
from nvmecontrol.wire import fabrics as F
from nvmecontrol.wire import identify as I
from nvmecontrol.wire import logpages as L
from nvmecontrol.wire import reservations as RW
from nvmecontrol.wire.capsule import (SGL_DATA_BLOCK_OFFSET, SGL_TRANSPORT_DATA_BLOCK, SQE,
                                      decode_sqe)
from nvmecontrol.wire.nvm import NvmOpc
from nvmecontrol.wire.timers import KatoWatch

log = logging.getLogger("nvmfd")

# SQE byte offsets used as Parameter Error Location / Connect IPO.
PEL_OPC = 0
PEL_FLAGS = 1
PEL_NSID = 4
PEL_SGL = 24
PEL_CDW10 = 40
PEL_CDW11 = 44
PEL_CDW12 = 48
IPO_QID = 42  # Connect: CDW10 bits 31:16
IPO_SQSIZE = 44  # Connect: CDW11 bits 15:0
IPO_DATA_CNTLID = 16
IPO_DATA_SUBNQN = 256
IPO_DATA_HOSTNQN = 512

CONNECT_DATA_SIZE = F.CONNECT_DATA_SIZE
_CONNECT_DATA = struct.Struct("<16sH238x256s256s")

# Event kinds (masks) and the AER DW0 for each.
EVENT_NS = "ns"
EVENT_DISC = "disc"
EVENT_RESV = "resv"
EVENT_ANA = "ana"
_AEN_NS_DW0 = A.aer_dw0(A.AsyncEvent(A.AER_TYPE_NOTICE, A.AER_NOTICE_NS_ATTR_CHANGED,
                                     L.LogPage.CHANGED_NS))
AER_NOTICE_DISC_CHANGED = 0xF0
AER_NOTICE_ANA_CHANGE = 0x03
_AEN_ANA_DW0 = A.aer_dw0(A.AsyncEvent(A.AER_TYPE_NOTICE, AER_NOTICE_ANA_CHANGE, L.LogPage.ANA))
# Asynchronous event type I/O Command Specific Status, information Reservation Log
# Page Available (NVMe Base 2.0, Asynchronous Event Request).
AER_TYPE_IO_CMD_SPECIFIC = 0x6
AER_INFO_RESV_LOG_AVAILABLE = 0x00
_AEN_RESV_DW0 = A.aer_dw0(A.AsyncEvent(AER_TYPE_IO_CMD_SPECIFIC, AER_INFO_RESV_LOG_AVAILABLE,
                                       RW.LOG_RESERVATION_NOTIFICATION))
_AEN_DISC_DW0 = A.aer_dw0(A.AsyncEvent(A.AER_TYPE_NOTICE, AER_NOTICE_DISC_CHANGED,
                                       L.LogPage.DISCOVERY))
# OAES / Async Event Configuration bits.
AEC_NS_ATTR = A.AEC_NS_ATTR  # bit 8
AEC_DISC_CHANGE = 1 << 31
AEC_ANA_CHANGE = 1 << 11
# What an I/O controller supports (OAES) and enables from the start (nvmet's
# NVMET_AEN_CFG_OPTIONAL: hosts that never set AEC still get both notices).
AEC_IO = AEC_NS_ATTR | AEC_ANA_CHANGE
# Namespace Write Protection Config (NVMe Base 2.0, 5.27.1.25): states
# "no write protect" and "write protect" (NWPC bit 0), not until power cycle
# or permanent.
FEATURE_WRITE_PROTECT = 0x84
WP_NONE, WP_ON = 0, 1
NWPC = 0x01
FEATURE_HOST_ID = 0x81
EXHID = 1  # Get Features Host Identifier CDW11 bit 0: 128-bit host ID

# Identify Controller bits (NVMe Base 2.0, figure 275).
CMIC = I.CMIC_MULTI_PORT | I.CMIC_MULTI_CTRL | I.CMIC_ANA
CTRATT = I.CTRATT_HOSTID_128 | I.CTRATT_TBKAS
ONCS_DSM = 1 << 2
ONCS_WRITE_ZEROES = 1 << 3
ONCS_RESERVATIONS = RW.ONCS_RESERVATIONS
# Every reservation type, IEKEY as since NVMe 1.3; no persistence (PTPL 0).
RESCAP = RW.RESCAP_ALL_TYPES | RW.RESCAP_IEKEY_1_3
VWC_PRESENT_FLUSH_ALL = 0x07  # present, Flush with NSID FFFFFFFFh supported
SGLS = 0x1 | I.SGLS_TRANSPORT  # SGLs without alignment, offset in data block
FRMW = 0x03  # slot 1 read-only, one slot
LPA_IO = I.LPA_CMD_EFFECTS | I.LPA_EXTENDED
LPA_DISC = I.LPA_EXTENDED
ANACAP = 0x1F  # reports optimized, non-optimized, inaccessible, persistent loss, change
IOCS_NVM = 1 << 0

# Admin opcodes each controller kind accepts.
_IO_ADMIN = frozenset({A.AdminOpc.GET_LOG_PAGE, A.AdminOpc.IDENTIFY, A.AdminOpc.ABORT,
                       A.AdminOpc.SET_FEATURES, A.AdminOpc.GET_FEATURES,
                       A.AdminOpc.ASYNC_EVENT_REQUEST, A.AdminOpc.KEEP_ALIVE})
_DISC_ADMIN = frozenset({A.AdminOpc.GET_LOG_PAGE, A.AdminOpc.IDENTIFY,
                         A.AdminOpc.SET_FEATURES, A.AdminOpc.GET_FEATURES,
                         A.AdminOpc.ASYNC_EVENT_REQUEST, A.AdminOpc.KEEP_ALIVE})


class NoLongerServed(Exception):
    """A reload took away what an admin Connect was checked against
    (``str(e)``: "subsystem" or "host")."""


class Fail(Exception):
    """Complete the command with ``status`` (raised by command handlers)."""

    def __init__(self, status: int, why: str, pel: int = K.PEL_NONE, dw0: int = 0):
        super().__init__(why)
        self.status, self.why, self.pel, self.dw0 = status, why, pel, dw0


def check_flags(sqe: SQE) -> None:
    """FUSE must be 0 and PSDT SGL (01b): the kernel target rejects PRPs."""
    if sqe.flags & 0x03:
        raise Fail(K.INVALID_FIELD, "fused commands are not supported", PEL_FLAGS)
    if sqe.flags & 0xC0 != 0x40:
        raise Fail(K.INVALID_FIELD, "PSDT is not SGL (PRP data pointers are not accepted)",
                   PEL_FLAGS)


def check_data_in(sqe: SQE, length: int) -> None:
    """The command's SGL must describe ``length`` bytes for us to send (C2HData)."""
    t = sqe.sgl.type
    if t == SGL_DATA_BLOCK_OFFSET:
        raise Fail(K.INVALID_FIELD, "in-capsule SGL on a command that returns data", PEL_SGL)
    if t != SGL_TRANSPORT_DATA_BLOCK:
        raise Fail(K.SGL_TYPE_INVALID, f"SGL descriptor type {t:#04x}", PEL_SGL)
    if sqe.sgl.length != length:
        raise Fail(K.SGL_DATA_LENGTH_INVALID,
                   f"SGL length {sqe.sgl.length}, the command transfers {length}", PEL_SGL)


class Controller:
    """One association: an admin queue and its I/O queues (or a discovery controller)."""

    def __init__(self, server, *, assoc_id: int, subsystem, cntlid: int, hostnqn: str,
                 hostid: bytes, kato_ms: int, admin, port):
        self.server = server
        self.id = assoc_id
        self.sub = subsystem  # None for a discovery controller
        self.discovery = subsystem is None
        self.subnqn = DISCOVERY_NQN if subsystem is None else subsystem.nqn
        self.cntlid = cntlid
        self.hostnqn = hostnqn
        self.hostid = hostid
        self.kato_ms = kato_ms
        self.admin = admin
        self.port = port
        self.cc = 0
        self.csts = 0
        self.ready = False
        self.dead = False
        max_q = 0 if self.discovery else subsystem.max_io_queues
        self.nsq = self.ncq = max_q  # granted (1's based); Set Features may lower
        self.aec = AEC_DISC_CHANGE if self.discovery else AEC_IO
        self.wce = True
        # Host Behavior Support ACRE: the host honours CRD (feature 16h).
        self.acre = False
        self.aers: list[int] = []
        self.events: list[int] = []
        self.masked: set[str] = set()
        self.changed_ns: set[int] = set()
        self.changed_overflow = False
        self.error_log: deque = deque(maxlen=K.ELPE + 1)
        self.error_count = 0
        self.io_queues: dict[int, object] = {}
        self.max_queues = 1  # admin + the most I/O queues connected at once (for the log)
        # The Keep Alive Timer (sans-IO, told the time by the server's clock);
        # traffic on any queue restarts it (TBKAS).
        self.kato = KatoWatch(self.effective_kato_ms, server.clock())
        self.created = time.time()
        self.lock = threading.Lock()
        self.opcodes = _DISC_ADMIN if self.discovery else _IO_ADMIN
        # DH-HMAC-CHAP: the host's settings when it must authenticate, and the
        # admin queue's transaction state.
        self.auth_cfg = None
        self.admin_auth = None
        # Reservation notifications for this controller (log page 80h, feature 82h).
        self.resv_log = ReservationLog()

    # -- bookkeeping --
    @property
    def effective_kato_ms(self) -> int:
        if self.kato_ms:
            return self.kato_ms
        return K.DISCOVERY_IDLE_KATO_MS if self.discovery else 0

    def record_error(self, sqid: int, cid: int, status: int, *, opc: int, nsid: int = 0,
                     lba: int = 0, pel: int = K.PEL_NONE) -> None:
        with self.lock:
            self.error_count += 1
            self.error_log.appendleft(L.ErrorLogEntry(
                error_count=self.error_count, sqid=sqid, cid=cid, status=status & 0x7FFF,
                pel=pel & 0xFFFF, lba=lba, nsid=nsid, trtype=3, opc=opc))

    def queue_count(self) -> int:
        return 1 + len(self.io_queues)

    # -- admin queue --
    def admin_command(self, ev) -> None:
        conn = self.admin
        sqe = decode_sqe(ev.sqe)
        try:
            if ev.digest_error:
                raise Fail(K.TRANSIENT_TRANSPORT, "data digest error in the command capsule")
            check_flags(sqe)
            opc = sqe.opc
            if opc == F.OPC_FABRICS:
                self._fabrics(conn, sqe, ev.data)
                return
            if self.admin_auth is not None and not self.admin_auth.authenticated:
                # Without DNR once authentication was withdrawn (new keys):
                # the host re-authenticates and retries.
                raise Fail(self.admin_auth.refusal(self.acre),
                           "the admin queue is not authenticated yet")
            if not self.ready:
                raise Fail(K.CMD_SEQ_ERROR, "controller not enabled (CC.EN=1, CSTS.RDY=1 first)")
            # self.opcodes is what this controller kind accepts; _ADMIN_HANDLERS
            # has a handler for each of them (checked at import).
            if opc not in self.opcodes:
                raise Fail(K.INVALID_OPCODE, f"admin opcode {opc:#04x} not supported", PEL_OPC)
            if opc == A.AdminOpc.SET_FEATURES and not self.discovery \
                    and A.feature_id(sqe) == A.Feature.HOST_BEHAVIOR_SUPPORT:
                self._set_host_behavior(conn, sqe, ev.data)  # the one with data to receive
                return
            _ADMIN_HANDLERS[opc](self, conn, sqe)
        except Fail as f:
            conn.fail(sqe.cid, f.status, f.why, opc=sqe.opc, nsid=sqe.nsid, pel=f.pel, dw0=f.dw0)

    def _admin_identify(self, conn, sqe: SQE) -> None:
        data = self._identify(sqe)
        check_data_in(sqe, I.IDENTIFY_DATA_SIZE)
        conn.send_read(sqe.cid, data)

    def _admin_keep_alive(self, conn, sqe: SQE) -> None:
        if not self.effective_kato_ms:
            raise Fail(K.KEEP_ALIVE_INVALID, "Keep Alive while KATO is 0")
        conn.respond(sqe.cid)

    def _admin_aer(self, conn, sqe: SQE) -> None:
        if len(self.aers) > K.AERL:
            raise Fail(K.ASYNC_LIMIT, f"more than {K.AERL + 1} AERs outstanding")
        self.aers.append(sqe.cid)
        self._deliver_events()

    def _admin_set_features(self, conn, sqe: SQE) -> None:
        conn.respond(sqe.cid, 0, self._set_features(sqe))

    def _admin_abort(self, conn, sqe: SQE) -> None:
        conn.respond(sqe.cid, 0, 1)  # DW0 bit 0: command not aborted

    # -- Fabrics commands after Connect: Property Get/Set, Authentication --
    def _fabrics(self, conn, sqe: SQE, data=None) -> None:
        fctype = F.fctype_of(sqe)
        if fctype in (F.FCType.AUTH_SEND, F.FCType.AUTH_RECEIVE):
            if self.admin_auth is None:
                raise Fail(K.INVALID_OPCODE, "authentication is not configured for host "
                           f'"{self.hostnqn}"', PEL_NSID)
            try:
                self.admin_auth.command(conn, sqe, data)
            except AuthCommandError as e:
                raise Fail(e.status, e.why, e.pel) from None
        elif fctype == F.FCType.PROPERTY_GET:
            value = self._property_get(sqe)
            conn.respond(sqe.cid, 0, value & 0xFFFFFFFF, value >> 32)
        elif fctype == F.FCType.PROPERTY_SET:
            self._property_set(sqe)
            conn.respond(sqe.cid)
        else:
            raise Fail(K.INVALID_OPCODE, f"Fabrics command type {fctype:#04x} not supported "
                       "on a connected admin queue", PEL_NSID)

    def cap(self) -> int:
        # MQES per port (param max_queue_size, port_params.py).
        return F.CAP(mqes=self.port.params.mqes, cqr=1, to=K.CAP_TO, css=0x01, mpsmin=K.MPS,
                     mpsmax=K.MPS).encode()

    def vs(self) -> int:
        return self.sub.vs if self.sub is not None else (1 << 16 | 3 << 8)

    def _property_get(self, sqe: SQE) -> int:
        attrib = sqe.cdw10 & 0x7
        offset = sqe.cdw11
        if attrib == 1:
            if offset == F.Prop.CAP:
                return self.cap()
            raise Fail(K.INVALID_FIELD, f"no 8-byte property at {offset:#x}", PEL_CDW11)
        if attrib != 0:
            raise Fail(K.INVALID_FIELD, f"property size attribute {attrib}", PEL_CDW10)
        if offset == F.Prop.VS:
            return self.vs()
        if offset == F.Prop.CC:
            return self.cc
        if offset == F.Prop.CSTS:
            return self.csts
        raise Fail(K.INVALID_FIELD, f"no 4-byte property at {offset:#x}", PEL_CDW11)

    def _property_set(self, sqe: SQE) -> None:
        if sqe.cdw10 & 0x7:
            raise Fail(K.INVALID_FIELD, "8-byte Property Set", PEL_CDW10)
        if sqe.cdw11 != F.Prop.CC:
            raise Fail(K.INVALID_FIELD, f"property {sqe.cdw11:#x} is not writable", PEL_CDW11)
        self._update_cc(sqe.cdw12)

    def _update_cc(self, new: int) -> None:
        old, self.cc = self.cc, new
        was_en, en = old & 1, new & 1
        old_shn, shn = (old >> 14) & 3, (new >> 14) & 3
        if en and not was_en:
            self._start()
        if was_en and not en:
            self._clear()
        if shn and not old_shn:
            self._clear()
            self._flush_namespaces()
            self.csts |= F.SHST_COMPLETE << 2
            log.debug("association %d: shutdown (CC.SHN=%d)", self.id, shn)
        if old_shn and not shn:
            self.csts &= ~(3 << 2)

    def _start(self) -> None:
        cc = F.CC.decode(self.cc)
        bad = None
        if not self.discovery and (cc.iosqes != 6 or cc.iocqes != 4):
            bad = f"IOSQES/IOCQES {cc.iosqes}/{cc.iocqes}, expected 6/4"
        elif cc.mps != K.MPS:
            bad = f"MPS {cc.mps}, only 0 (4 KiB) is supported"
        elif cc.ams != 0:
            bad = f"AMS {cc.ams}"
        elif cc.css not in (0, 6):
            bad = f"CSS {cc.css}"
        if bad:
            log.info("association %d: controller fatal status on enable: %s", self.id, bad)
            self.csts = 0x2  # CFS
            self.ready = False
            return
        self.csts = 0x1  # RDY
        self.ready = True

    def _clear(self) -> None:
        self.csts &= ~0x1
        self.cc = self.cc & ~1 if self.cc & 1 else self.cc
        self.ready = False

    def _flush_namespaces(self) -> None:
        if self.sub is None:
            return
        try:
            self.sub.flush_all()
        except OSError as e:
            log.warning("association %d: flushing namespaces on shutdown failed: %s",
                        self.id, e.strerror)

    # -- Identify --
    def _identify(self, sqe: SQE) -> bytes:
        args = A.parse_identify(sqe)
        cns = args.cns
        if cns == I.CNS_CONTROLLER:
            return self.identify_controller()
        if self.discovery:
            raise Fail(K.INVALID_FIELD, f"Identify CNS {cns:#04x} on a discovery controller",
                       PEL_CDW10)
        nsid = sqe.nsid
        namespaces = self.sub.namespaces
        if cns == I.CNS_NAMESPACE:
            if nsid == I.NSID_BROADCAST or nsid == 0 or nsid > MAX_NSID:
                raise Fail(K.INVALID_NS, f"Identify Namespace for NSID {nsid:#x}", PEL_NSID)
            ns = namespaces.get(nsid)
            # An inactive NSID in range reads as zeros (NVMe 2.0, 5.17.2.1).
            if ns is None:
                return bytes(I.IDENTIFY_DATA_SIZE)
            state = ana.state_on(self.port.cfg.ana_groups, ns.anagrpid)
            return identify_namespace(ns, in_use=state not in (ana.INACCESSIBLE,
                                                               ana.PERSISTENT_LOSS))
        if cns == I.CNS_ACTIVE_NSID_LIST:
            if nsid >= 0xFFFFFFFE:
                raise Fail(K.INVALID_NS, f"active namespace list after NSID {nsid:#x}", PEL_NSID)
            return I.encode_active_nsid_list(
                [n for n in namespaces if n > nsid][:I.ACTIVE_NSID_LIST_MAX])
        if cns == I.CNS_NS_ID_DESCRIPTORS:
            ns = namespaces.get(nsid)
            if ns is None:
                raise Fail(K.INVALID_NS, f"no active namespace {nsid:#x}", PEL_NSID)
            return I.encode_ns_id_descriptors([
                I.NsIdDescriptor(I.Nidt.EUI64, ns.eui64),
                I.NsIdDescriptor(I.Nidt.NGUID, ns.nguid),
                I.NsIdDescriptor(I.Nidt.UUID, ns.uuid),
                I.NsIdDescriptor(I.Nidt.CSI, b"\x00"),
            ])
        if cns in (I.CNS_CSI_NAMESPACE, I.CNS_CSI_CONTROLLER, I.CNS_CSI_INDEPENDENT_NAMESPACE):
            if cns != I.CNS_CSI_INDEPENDENT_NAMESPACE and args.csi != 0:
                raise Fail(K.INVALID_FIELD, f"command set {args.csi} not supported", PEL_CDW11)
            if cns == I.CNS_CSI_CONTROLLER:
                return bytes(I.IDENTIFY_DATA_SIZE)  # NVM: no limits beyond MDTS
            ns = namespaces.get(nsid)
            if ns is None:
                raise Fail(K.INVALID_NS, f"no active namespace {nsid:#x}", PEL_NSID)
            if cns == I.CNS_CSI_NAMESPACE:
                return bytes(I.IDENTIFY_DATA_SIZE)
            return identify_independent_namespace(ns)
        if cns == I.CNS_IO_COMMAND_SET:
            return struct.pack("<Q", IOCS_NVM).ljust(I.IDENTIFY_DATA_SIZE, b"\0")
        raise Fail(K.INVALID_FIELD, f"Identify CNS {cns:#04x} not supported", PEL_CDW10)

    def identify_controller(self) -> bytes:
        sub = self.sub
        if sub is None:
            c = I.IdentifyController(
                sn=self.server.serial, mn="nvmfd", fr=__version__[:8], mdts=K.MDTS,
                cntlid=self.cntlid, ver=self.vs(), oaes=AEC_DISC_CHANGE, ctratt=CTRATT,
                cntrltype=I.CNTRLTYPE_DISCOVERY, aerl=K.AERL, lpa=LPA_DISC, elpe=K.ELPE,
                kas=K.KAS, maxcmd=K.MQES + 1, sgls=SGLS, subnqn=DISCOVERY_NQN,
                msdbd=1)
            return I.encode_identify_controller(c)
        c = I.IdentifyController(
            sn=sub.serial, mn=sub.model, fr=sub.firmware, rab=6, cmic=CMIC, mdts=K.MDTS,
            cntlid=self.cntlid, ver=sub.vs, oaes=AEC_IO, ctratt=CTRATT,
            cntrltype=I.CNTRLTYPE_IO, acl=K.ACL, aerl=K.AERL, frmw=FRMW, lpa=LPA_IO,
            elpe=K.ELPE, kas=K.KAS, anatt=K.ANATT, anacap=ANACAP, anagrpmax=K.ANAGRPMAX,
            nanagrpid=K.ANAGRPMAX, nwpc=NWPC, crdt1=K.CRDT[0], crdt2=K.CRDT[1], crdt3=K.CRDT[2],
            sqes=0x66, cqes=0x44, maxcmd=K.MQES + 1, nn=MAX_NSID,
            oncs=ONCS_DSM | ONCS_WRITE_ZEROES | ONCS_RESERVATIONS, vwc=VWC_PRESENT_FLUSH_ALL,
            sgls=SGLS,
            mnan=MAX_NSID, subnqn=sub.nqn, ioccsz=self.port.params.ioccsz, iorcsz=K.IORCSZ,
            icdoff=0, fcatt=0,
            msdbd=1, ofcs=0)
        return I.encode_identify_controller(c)

    # -- Get Log Page --
    def _get_log_page(self, conn, sqe: SQE) -> None:
        g = A.parse_get_log_page(sqe)
        if g.length > K.MAX_TRANSFER:
            raise Fail(K.INVALID_FIELD, f"log page transfer of {g.length} bytes exceeds MDTS",
                       PEL_CDW10)
        if g.offset & 3:
            raise Fail(K.INVALID_FIELD, f"log page offset {g.offset} not dword aligned",
                       PEL_CDW12)
        builder = _LOG_PAGES_DISC.get(g.lid) if self.discovery else _LOG_PAGES.get(g.lid)
        if builder is None:
            raise Fail(K.INVALID_LOG_PAGE, f"log page {g.lid:#04x} not supported", PEL_CDW10)
        page = builder(self, g)
        if g.offset > len(page):
            raise Fail(K.INVALID_FIELD, f"log page offset {g.offset} beyond its {len(page)} "
                       "bytes", PEL_CDW12)
        check_data_in(sqe, g.length)
        data = page[g.offset:g.offset + g.length]
        if len(data) < g.length:
            data = data + bytes(g.length - len(data))
        conn.send_read(sqe.cid, data)
        # Reading a log without Retain Asynchronous Event re-arms its notice.
        if not g.rae:
            if g.lid == L.LogPage.CHANGED_NS:
                with self.lock:
                    self.changed_ns.clear()
                    self.changed_overflow = False
                self.masked.discard(EVENT_NS)
            elif g.lid == L.LogPage.DISCOVERY:
                self.masked.discard(EVENT_DISC)
            elif g.lid == L.LogPage.ANA:
                self.masked.discard(EVENT_ANA)
        if g.lid == RW.LOG_RESERVATION_NOTIFICATION:
            # Each read takes the entry it returned (Reservation Notification log page).
            waiting = self.resv_log.consume()
            if not g.rae:
                self.masked.discard(EVENT_RESV)
                if waiting:  # we run under the admin lock: queue, the batch sends it
                    self._queue_event(EVENT_RESV)

    def _log_error(self, g) -> bytes:
        with self.lock:
            entries = list(self.error_log)
        return L.encode_error_log(entries, K.ELPE + 1)

    def _log_smart(self, g) -> bytes:
        if g.nsid not in (0, I.NSID_BROADCAST):
            raise Fail(K.INVALID_FIELD, "SMART log per namespace is not supported", PEL_NSID)
        rbytes, wbytes, rcmds, wcmds = self.sub.totals()
        hours = int((time.time() - self.server.started) // 3600)
        return L.encode_smart_log(L.SmartLog(
            avail_spare=100, spare_thresh=10,
            data_units_read=_data_units(rbytes), data_units_written=_data_units(wbytes),
            host_read_commands=rcmds, host_write_commands=wcmds, power_cycles=1,
            power_on_hours=hours, num_err_log_entries=self.error_count))

    def _log_fw_slot(self, g) -> bytes:
        return L.encode_fw_slot_log(L.FirmwareSlotLog(afi=1, frs=(self.sub.firmware,) + ("",) * 6))

    def _log_changed_ns(self, g) -> bytes:
        with self.lock:
            nsids = sorted(self.changed_ns)
            overflow = self.changed_overflow
        return L.encode_changed_ns_list(L.ChangedNsList(nsids, overflow))

    def _log_effects(self, g) -> bytes:
        return _EFFECTS_LOG

    def _log_ana(self, g) -> bytes:
        page = ana.build_log(self.port.cfg.ana_groups, self.server.config.ports,
                             self.sub.namespaces, rgo=bool(g.lsp & L.ANA_LSP_RGO))
        # Hosts size the read from NANAGRPID and NN (nvme-cli reads it in 4 KiB
        # pieces), so the page is as long as its largest possible form.
        return page.ljust(L.ana_log_size(K.ANAGRPMAX, MAX_NSID), b"\0")

    def _log_reservation(self, g) -> bytes:
        return self.resv_log.peek()

    def _log_discovery(self, g) -> bytes:
        server = self.server
        with server.lock:
            return build_discovery_log(server.genctr, self.port, self.admin.local_host,
                                       self.hostnqn, server.subsystems)

    # -- Features --
    def _set_features(self, sqe: SQE) -> int:
        fid = A.feature_id(sqe)
        if sqe.cdw10 >> 31:
            raise Fail(K.FEATURE_NOT_SAVEABLE, f"feature {fid:#04x} cannot be saved", PEL_CDW10)
        v = sqe.cdw11
        if fid == A.Feature.KEEP_ALIVE_TIMER:
            self.kato_ms = v
            self.kato.kato_ms = self.effective_kato_ms
            return 0
        if fid == A.Feature.ASYNC_EVENT_CONFIG:
            supported = AEC_DISC_CHANGE if self.discovery else AEC_IO
            if v & ~supported:
                raise Fail(K.INVALID_FIELD, f"asynchronous events {v:#x} not supported", PEL_CDW11)
            self.aec = v
            return 0
        if self.discovery:
            raise Fail(K.INVALID_FIELD, f"feature {fid:#04x} on a discovery controller", PEL_CDW10)
        if fid == A.Feature.NUMBER_OF_QUEUES:
            nsqr, ncqr = v & 0xFFFF, v >> 16
            if nsqr == 0xFFFF or ncqr == 0xFFFF:
                raise Fail(K.INVALID_FIELD, "65536 queues requested", PEL_CDW11)
            if self.io_queues:
                raise Fail(K.CMD_SEQ_ERROR, "Number of Queues after I/O queues were created")
            limit = self.sub.max_io_queues
            self.nsq, self.ncq = min(nsqr + 1, limit), min(ncqr + 1, limit)
            return A.num_queues_value(self.nsq, self.ncq)
        if fid == A.Feature.VOLATILE_WRITE_CACHE:
            self.wce = bool(v & 1)
            return 0
        if fid == RW.FEATURE_RESV_NOTIFICATION_MASK:
            if v & ~RW.MASK_ALL:
                raise Fail(K.INVALID_FIELD, f"reservation notification mask {v:#x}", PEL_CDW11)
            self.resv_log.set_mask(None if sqe.nsid == I.NSID_BROADCAST
                                   else self._reservation_nsid(sqe), v & RW.MASK_ALL)
            return 0
        if fid == FEATURE_WRITE_PROTECT:
            self._set_write_protect(sqe, v)
            return 0
        if fid == RW.FEATURE_RESV_PERSISTENCE:
            self._reservation_nsid(sqe)
            if v & RW.PTPL:
                raise Fail(K.INVALID_FIELD, "reservations do not persist through power loss",
                           PEL_CDW11)
            return 0
        raise Fail(K.INVALID_FIELD, f"feature {fid:#04x} not supported", PEL_CDW10)

    def _set_host_behavior(self, conn, sqe: SQE, data) -> None:
        """Set Features 16h: its 512-byte structure in the capsule or by R2T."""
        if sqe.cdw10 >> 31:
            raise Fail(K.FEATURE_NOT_SAVEABLE, "feature 0x16 cannot be saved", PEL_CDW10)
        size = A.HOST_BEHAVIOR_SIZE
        if sqe.sgl.length != size:
            raise Fail(K.SGL_DATA_LENGTH_INVALID, f"Host Behavior Support data of "
                       f"{sqe.sgl.length} bytes, expected {size}", PEL_SGL)
        t = sqe.sgl.type
        if t == SGL_DATA_BLOCK_OFFSET:
            if data is None or sqe.sgl.addr != 0 or len(data) != size:
                raise Fail(K.SGL_OFFSET_INVALID, "Host Behavior Support data not where its "
                           "SGL says", PEL_SGL)
            self._apply_host_behavior(conn, sqe.cid, data)
        elif t == SGL_TRANSPORT_DATA_BLOCK:
            def got(cid, collected, bad):
                try:
                    if bad:
                        raise Fail(K.TRANSIENT_TRANSPORT, "data digest error in Host Behavior "
                                   "Support data")
                    self._apply_host_behavior(conn, cid, collected)
                except Fail as f:
                    conn.fail(cid, f.status, f.why, opc=sqe.opc, pel=f.pel)
            conn.collect(sqe.cid, size, got)
        else:
            raise Fail(K.SGL_TYPE_INVALID, f"SGL descriptor type {t:#04x}", PEL_SGL)

    def _apply_host_behavior(self, conn, cid: int, data) -> None:
        acre = A.host_behavior_acre(data)
        if acre > A.ACRE_ENABLED:
            raise Fail(K.INVALID_FIELD, f"Host Behavior Support ACRE {acre:#04x} is reserved")
        self.acre = bool(acre)
        conn.respond(cid)

    def _get_features(self, conn, sqe: SQE) -> None:
        fid = A.feature_id(sqe)
        sel = (sqe.cdw10 >> 8) & 7
        if sel > 3:
            raise Fail(K.INVALID_FIELD, f"Get Features SEL {sel}", PEL_CDW10)
        if fid == A.Feature.HOST_BEHAVIOR_SUPPORT and not self.discovery:
            if sel == 3:  # changeable, not saveable, not per namespace
                conn.respond(sqe.cid, 0, 0x4)
                return
            check_data_in(sqe, A.HOST_BEHAVIOR_SIZE)
            conn.send_read(sqe.cid, A.encode_host_behavior(acre=self.acre and sel != 1))
            return
        changeable = {A.Feature.KEEP_ALIVE_TIMER, A.Feature.ASYNC_EVENT_CONFIG}
        if not self.discovery:
            changeable |= {A.Feature.NUMBER_OF_QUEUES, A.Feature.VOLATILE_WRITE_CACHE}
        if fid == FEATURE_HOST_ID and not self.discovery:
            if not sqe.cdw11 & EXHID:
                raise Fail(K.INVALID_FIELD, "only the 128-bit host identifier exists", PEL_CDW11)
            if sel == 3:
                conn.respond(sqe.cid, 0, 0)
                return
            check_data_in(sqe, 16)
            conn.send_read(sqe.cid, bytes(self.hostid))
            return
        if fid in (RW.FEATURE_RESV_NOTIFICATION_MASK, RW.FEATURE_RESV_PERSISTENCE) \
                and not self.discovery:
            nsid = self._reservation_nsid(sqe)
            if sel == 3:  # namespace specific; only the mask is changeable
                changeable_bit = 0x4 if fid == RW.FEATURE_RESV_NOTIFICATION_MASK else 0
                conn.respond(sqe.cid, 0, 0x2 | changeable_bit)
            elif fid == RW.FEATURE_RESV_PERSISTENCE or sel == 1:
                conn.respond(sqe.cid, 0, 0)
            else:
                conn.respond(sqe.cid, 0, self.resv_log.mask(nsid))
            return
        if fid == FEATURE_WRITE_PROTECT and not self.discovery:
            ns = self._active_ns(sqe)
            if sel == 3:  # namespace specific, changeable
                conn.respond(sqe.cid, 0, 0x6)
            elif sel == 1:
                conn.respond(sqe.cid, 0, WP_ON if ns.fixed_read_only else WP_NONE)
            else:
                conn.respond(sqe.cid, 0, WP_ON if ns.read_only else WP_NONE)
            return
        if fid not in changeable:
            raise Fail(K.INVALID_FIELD, f"feature {fid:#04x} not supported", PEL_CDW10)
        if sel == 3:  # supported capabilities: changeable, not saveable, not per namespace
            conn.respond(sqe.cid, 0, 0x4)
            return
        default = sel == 1
        if fid == A.Feature.KEEP_ALIVE_TIMER:
            value = 0 if default else self.kato_ms
        elif fid == A.Feature.ASYNC_EVENT_CONFIG:
            value = (AEC_DISC_CHANGE if self.discovery else AEC_IO) if default else self.aec
        elif fid == A.Feature.NUMBER_OF_QUEUES:
            limit = self.sub.max_io_queues
            value = A.num_queues_value(limit, limit) if default else \
                A.num_queues_value(self.nsq, self.ncq)
        else:  # VOLATILE_WRITE_CACHE
            value = 1 if default else int(self.wce)
        conn.respond(sqe.cid, 0, value)

    def _active_ns(self, sqe: SQE):
        ns = self.sub.namespaces.get(sqe.nsid)
        if ns is None:
            raise Fail(K.INVALID_NS, f"no active namespace {sqe.nsid:#x}", PEL_NSID)
        return ns

    def _set_write_protect(self, sqe: SQE, v: int) -> None:
        """Set Features 84h: write-protect a namespace or lift it (for every host)."""
        ns = self._active_ns(sqe)
        wps = v & 0x7
        if v & ~0x7 or wps not in (WP_NONE, WP_ON):
            raise Fail(K.INVALID_FIELD, f"write protection state {v:#x} not supported "
                       "(only no write protect / write protect)", PEL_CDW11)
        if wps == WP_ON and not ns.read_only:
            # Read-only first, then the flush (as nvmet): a write acknowledged
            # before the flush is durable with it, none is accepted after.
            ns.read_only = True
            try:
                ns.backend.flush()
            except OSError as e:
                ns.read_only = False
                raise Fail(K.INTERNAL_ERROR, f"flush for write protect: {e.strerror}") from None
        elif wps == WP_NONE and ns.read_only:
            if ns.fixed_read_only:
                raise Fail(K.FEATURE_NOT_CHANGEABLE, f"namespace {ns.nsid} is exported "
                           "read-only", PEL_CDW11)
            ns.read_only = False
        else:
            return
        log.info("association %d: namespace %d write protection %s by host %s", self.id,
                 ns.nsid, "set" if ns.read_only else "lifted", self.hostnqn)
        # Every controller re-reads the namespace (nvmet_ns_changed); from a
        # thread of its own: we hold our admin queue's lock here.
        ctrls = list(self.sub.controllers.values())
        threading.Thread(target=lambda: [c.namespace_changed(ns.nsid) for c in ctrls],
                         name="nvmfd-aen", daemon=True).start()

    def _reservation_nsid(self, sqe: SQE) -> int:
        """The active namespace a reservation feature names (they are per namespace)."""
        if sqe.nsid not in self.sub.namespaces:
            raise Fail(K.INVALID_NS, f"no active namespace {sqe.nsid:#x}", PEL_NSID)
        return sqe.nsid

    # -- asynchronous events --
    def _deliver_events(self) -> None:
        """Complete held AERs with queued events (caller holds the admin lock)."""
        while self.aers and self.events:
            self.admin.respond(self.aers.pop(0), 0, self.events.pop(0))

    def _queue_event(self, kind: str) -> None:
        """Queue an event and mask its kind (caller holds the admin lock)."""
        if kind in self.masked:
            return
        self.masked.add(kind)
        self.events.append(_AEN_DW0[kind])
        self._deliver_events()

    def post_event(self, kind: str) -> None:
        """Raise an asynchronous event from another thread (ns change, discovery change)."""
        if kind == EVENT_NS and not self.aec & AEC_NS_ATTR:
            return
        if kind == EVENT_DISC and not self.aec & AEC_DISC_CHANGE:
            return
        if kind == EVENT_ANA and not self.aec & AEC_ANA_CHANGE:
            return
        # Reservation notices have no AEC bit: the mask feature filters them.
        conn = self.admin
        with conn.lock:
            if conn.closing or kind in self.masked:
                return
            self._queue_event(kind)
            try:
                conn.flush()
            except (OSError, NvmeControlError):  # the driver's ConnectionLost/PeerTimeout
                conn.abort()

    def reservation_notice(self, nsid: int, kind: int) -> None:
        """A reservation notification for this controller's host (any thread)."""
        if self.resv_log.add(nsid, kind):
            self.post_event(EVENT_RESV)

    def ana_changed(self) -> None:
        """An ANA group changed state on this controller's port (any thread)."""
        self.post_event(EVENT_ANA)

    def namespace_changed(self, nsid: int) -> None:
        with self.lock:
            if len(self.changed_ns) >= L.CHANGED_NS_MAX:
                self.changed_overflow = True
            else:
                self.changed_ns.add(nsid)
        self.post_event(EVENT_NS)

    # -- teardown --
    def abort(self) -> None:
        """End the association (keep-alive expiry, administrative request)."""
        self.admin.abort()


_AEN_DW0 = {EVENT_NS: _AEN_NS_DW0, EVENT_DISC: _AEN_DISC_DW0, EVENT_RESV: _AEN_RESV_DW0,
            EVENT_ANA: _AEN_ANA_DW0}

# Admin opcode -> handler(controller, connection, sqe).
_ADMIN_HANDLERS = {
    A.AdminOpc.IDENTIFY: Controller._admin_identify,
    A.AdminOpc.GET_LOG_PAGE: Controller._get_log_page,
    A.AdminOpc.KEEP_ALIVE: Controller._admin_keep_alive,
    A.AdminOpc.ASYNC_EVENT_REQUEST: Controller._admin_aer,
    A.AdminOpc.SET_FEATURES: Controller._admin_set_features,
    A.AdminOpc.GET_FEATURES: Controller._get_features,
    A.AdminOpc.ABORT: Controller._admin_abort,
}
# Every opcode a controller kind accepts must have a handler.
if not (_IO_ADMIN | _DISC_ADMIN) <= _ADMIN_HANDLERS.keys():
    raise ImportError("admin opcodes without a handler: "
                      f"{sorted((_IO_ADMIN | _DISC_ADMIN) - _ADMIN_HANDLERS.keys())}")


def _data_units(nbytes: int) -> int:
    """SMART data units: thousands of 512-byte units, rounded up (NVMe 2.0, 5.16.1.3)."""
    return (nbytes // 512 + 999) // 1000


def identify_namespace(ns, *, in_use: bool = True) -> bytes:
    """CNS 00h; ``in_use`` False (NUSE 0) while its ANA group is inaccessible or lost."""
    return I.encode_identify_namespace(I.IdentifyNamespace(
        nsze=ns.nblocks, ncap=ns.nblocks, nuse=ns.nblocks if in_use else 0, nlbaf=0, flbas=0,
        rescap=RESCAP, dlfeat=0x09, nmic=1, anagrpid=ns.anagrpid,
        nsattr=I.NSATTR_WRITE_PROTECTED if ns.read_only else 0,
        nvmcap=ns.size_bytes, nguid=ns.nguid, eui64=ns.eui64,
        lbaf=[I.LbaFormat(0, ns.shift, 0)]))


def identify_independent_namespace(ns) -> bytes:
    """CNS 08h (NVMe 2.0, figure 319): NSFEAT, NMIC, RESCAP, FPI, ANAGRPID, NSATTR, ..., NSTAT."""
    buf = bytearray(I.IDENTIFY_DATA_SIZE)
    struct.pack_into("<BBBBIB", buf, 0, 0, 1, RESCAP, 0, ns.anagrpid,
                     I.NSATTR_WRITE_PROTECTED if ns.read_only else 0)
    buf[14] = 1  # NSTAT: namespace ready
    return bytes(buf)


def _effects_log() -> bytes:
    acs = [0] * 256
    for opc in _IO_ADMIN:
        acs[opc] = L.CE_CSUPP
    iocs = [0] * 256
    iocs[NvmOpc.READ] = iocs[NvmOpc.FLUSH] = L.CE_CSUPP
    iocs[NvmOpc.WRITE] = iocs[NvmOpc.WRITE_ZEROES] = L.CE_CSUPP | L.CE_LBCC
    iocs[NvmOpc.DATASET_MANAGEMENT] = L.CE_CSUPP | L.CE_LBCC
    for opc in RW.ResvOpc:
        iocs[opc] = L.CE_CSUPP
    return L.encode_cmd_effects_log(L.CommandEffectsLog(tuple(acs), tuple(iocs)))


_EFFECTS_LOG = _effects_log()

_LOG_PAGES = {
    L.LogPage.ERROR: Controller._log_error,
    L.LogPage.SMART: Controller._log_smart,
    L.LogPage.FW_SLOT: Controller._log_fw_slot,
    L.LogPage.CHANGED_NS: Controller._log_changed_ns,
    L.LogPage.CMD_EFFECTS: Controller._log_effects,
    L.LogPage.ANA: Controller._log_ana,
    RW.LOG_RESERVATION_NOTIFICATION: Controller._log_reservation,
    L.LogPage.DISCOVERY: Controller._log_discovery,
}
_LOG_PAGES_DISC = {
    L.LogPage.ERROR: Controller._log_error,
    L.LogPage.DISCOVERY: Controller._log_discovery,
}


# --- Connect ------------------------------------------------------------------

def handle_connect(server, conn, ev) -> None:
    """A command on a queue that is not connected yet: only Connect is valid."""
    sqe = decode_sqe(ev.sqe)
    try:
        if ev.digest_error:
            raise Fail(K.TRANSIENT_TRANSPORT, "data digest error in the Connect capsule")
        if sqe.opc != F.OPC_FABRICS or F.fctype_of(sqe) != F.FCType.CONNECT:
            raise Fail(K.INVALID_OPCODE, f"opcode {sqe.opc:#04x} on a queue before Connect",
                       PEL_OPC)
        check_flags(sqe)
        if conn.connecting:
            raise Fail(K.CMD_SEQ_ERROR, "a Connect is already in progress on this queue")
        t = sqe.sgl.type
        if sqe.sgl.length != CONNECT_DATA_SIZE:
            raise Fail(K.SGL_DATA_LENGTH_INVALID,
                       f"Connect data length {sqe.sgl.length}, expected {CONNECT_DATA_SIZE}",
                       PEL_SGL)
        if t == SGL_DATA_BLOCK_OFFSET:
            if ev.data is None or sqe.sgl.addr != 0 or len(ev.data) != CONNECT_DATA_SIZE:
                raise Fail(K.SGL_OFFSET_INVALID, "Connect data not where its SGL says", PEL_SGL)
            _connect(server, conn, sqe, bytes(ev.data))
        elif t == SGL_TRANSPORT_DATA_BLOCK:
            conn.connecting = True

            def got(cid, data, bad):
                conn.connecting = False
                if bad:
                    conn.fail(cid, K.TRANSIENT_TRANSPORT, "data digest error in Connect data",
                              opc=sqe.opc)
                else:
                    try:
                        _connect(server, conn, sqe, data)
                    except Fail as f:
                        conn.fail(sqe.cid, f.status, f.why, opc=sqe.opc, pel=f.pel, dw0=f.dw0)
            conn.collect(sqe.cid, CONNECT_DATA_SIZE, got)
        else:
            raise Fail(K.SGL_TYPE_INVALID, f"SGL descriptor type {t:#04x}", PEL_SGL)
    except Fail as f:
        conn.fail(sqe.cid, f.status, f.why, opc=sqe.opc, pel=f.pel, dw0=f.dw0)


def _invalid_param(ipo: int, in_data: bool, why: str) -> Fail:
    return Fail(K.CONNECT_INVALID_PARAM, why, ipo, F.connect_invalid_dw0(ipo, in_data))


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _connect(server, conn, sqe: SQE, data: bytes) -> None:
    c = F.parse_connect(sqe)
    if c.recfmt != 0:
        raise Fail(K.CONNECT_INCOMPATIBLE_FORMAT, f"Connect RECFMT {c.recfmt}", PEL_CDW10)
    hostid, cntlid, subraw, hostraw = _CONNECT_DATA.unpack_from(data)
    subnqn, hostnqn = _text(subraw), _text(hostraw)
    discovery = subnqn == DISCOVERY_NQN
    sub = None
    if not discovery:
        sub = server.find_subsystem(subnqn, conn.port)
        if sub is None:
            raise _invalid_param(IPO_DATA_SUBNQN, True,
                                 f'subsystem "{subnqn}" is not served on port {conn.port.portid}')
    if c.qid == 0:
        _connect_admin(server, conn, sqe, c, sub, hostid, cntlid, hostnqn)
    else:
        _connect_io(server, conn, sqe, c, sub, cntlid, hostnqn, subnqn)


def _check_sqsize(c, port) -> None:
    mqes = port.params.mqes  # the port's max_queue_size (port_params.py)
    if c.sqsize == 0 or c.sqsize > mqes:
        raise _invalid_param(IPO_SQSIZE, False,
                             f"SQSIZE {c.sqsize} (0's based) not in 1..{mqes}")


def _apply_queue_params(conn, c) -> None:
    qp = conn.qp
    qp.sqsize = c.sqsize + 1  # N.B. SQSIZE is 0's based
    if c.cattr & F.CATTR_DISABLE_SQFLOW:
        qp.sq_flow_control = False
    if c.qid:
        # The port's inline_data_size (IOCCSZ); the admin queue keeps 8 KiB.
        qp.max_icd = conn.port.params.inline_data_size


def _connect_admin(server, conn, sqe, c, sub, hostid, cntlid, hostnqn) -> None:
    if cntlid != F.CNTLID_DYNAMIC:
        raise _invalid_param(IPO_DATA_CNTLID, True,
                             f"CNTLID {cntlid:#x} on an admin Connect (only dynamic FFFFh)")
    if sub is not None and not sub.host_allowed(hostnqn):
        raise Fail(K.CONNECT_INVALID_HOST, f'host "{hostnqn}" is not allowed on {sub.nqn}',
                   IPO_DATA_HOSTNQN, F.connect_invalid_dw0(IPO_DATA_HOSTNQN, True))
    _check_sqsize(c, conn.port)
    try:
        ctrl = server.new_controller(conn, sub, hostnqn, hostid, c.kato_ms)
    except NoLongerServed as e:
        if str(e) == "host":
            raise Fail(K.CONNECT_INVALID_HOST, f'host "{hostnqn}" is not allowed on {sub.nqn}',
                       IPO_DATA_HOSTNQN, F.connect_invalid_dw0(IPO_DATA_HOSTNQN, True)) from None
        raise _invalid_param(IPO_DATA_SUBNQN, True, f'subsystem "{sub.nqn}" is not served on '
                             f'port {conn.port.portid}') from None
    if ctrl is None:
        raise Fail(K.CONNECT_CTRL_BUSY, "no free controller ID")
    _apply_queue_params(conn, c)
    authreq = 0
    auth_cfg = server.config.host_auth.get(hostnqn) if sub is not None else None
    if auth_cfg is not None:
        ctrl.auth_cfg = auth_cfg
        ctrl.admin_auth = QueueAuth(auth_cfg, qid=0, hostnqn=hostnqn, subnqn=sub.nqn,
                                    clock=server.clock, assoc_id=ctrl.id)
        authreq = F.AUTHREQ_ATR
    conn.connected(ctrl, 0, ctrl.admin_command)
    conn.respond(sqe.cid, 0, F.connect_success_dw0(ctrl.cntlid, authreq))
    server.log_association(ctrl, conn)


def _connect_io(server, conn, sqe, c, sub, cntlid, hostnqn, subnqn) -> None:
    from nvmecontrol.target.io import IoQueue  # io imports controller

    if sub is None:
        raise _invalid_param(IPO_QID, False, "I/O queue Connect to the discovery subsystem")
    with server.lock:
        ctrl = sub.controllers.get(cntlid)
        if ctrl is None or ctrl.dead or ctrl.hostnqn != hostnqn:
            raise _invalid_param(IPO_DATA_CNTLID, True,
                                 f"no controller {cntlid:#x} of {subnqn} for host {hostnqn}")
        if not ctrl.ready:
            raise Fail(K.CMD_SEQ_ERROR, f"I/O queue {c.qid} Connect before the controller "
                       "is enabled")
        if c.qid > min(ctrl.nsq, ctrl.ncq):
            raise _invalid_param(IPO_QID, False,
                                 f"QID {c.qid} beyond the {min(ctrl.nsq, ctrl.ncq)} granted queues")
        _check_sqsize(c, conn.port)
        if c.qid in ctrl.io_queues:
            raise Fail(K.CMD_SEQ_ERROR, f"queue {c.qid} is already connected", IPO_QID)
        ctrl.io_queues[c.qid] = conn
        ctrl.max_queues = max(ctrl.max_queues, ctrl.queue_count())
    _apply_queue_params(conn, c)
    io = IoQueue(conn, ctrl, c.qid)
    if ctrl.auth_cfg is None:
        conn.io = io
        conn.connected(ctrl, c.qid, io.command)
        conn.respond(sqe.cid, 0, F.connect_success_dw0(ctrl.cntlid))
    else:
        def authenticated():
            # From the next batch on, the queue's commands take the I/O hot path.
            conn.io = io
            conn.on_command = io.command
        auth = QueueAuth(ctrl.auth_cfg, qid=c.qid, hostnqn=hostnqn, subnqn=subnqn,
                         clock=server.clock, assoc_id=ctrl.id)
        conn.connected(ctrl, c.qid, IoAuthGate(conn, auth, authenticated).command)
        conn.respond(sqe.cid, 0, F.connect_success_dw0(ctrl.cntlid, F.AUTHREQ_ATR))
    log.debug("association %d: I/O queue %d connected from %s", ctrl.id, c.qid, conn.peer)
