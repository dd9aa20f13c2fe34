"""What nvmfd advertises, the limits it keeps against hostile peers, and
the completion statuses it answers with.

Every limit that protects the daemon from a host (memory, threads, time)
is a named constant here with its reason; the values the controller
advertises in CAP / Identify are derived from them so the two cannot drift.
"""

from __future__ import annotations

from nvmecontrol.wire import status as S
from nvmecontrol.wire.status import make_status

# --- advertised capabilities ---------------------------------------------------

# CAP.MQES (0's based): 128-entry submission queues, admin and I/O.  Bounds
# the commands a host may have outstanding per queue when SQ flow control
# is on, hence the per-queue state we may hold.
MQES = 127
# CAP.TO in 500 ms units (the kernel target says 15, 7.5 s); we are ready at
# once, the value only bounds how long a host polls CSTS.RDY.
CAP_TO = 15
# Memory page size 4 KiB only (CAP.MPSMIN = MPSMAX = 0).
MPS = 0
# MDTS, in units of the 4 KiB minimum page: 2^8 * 4 KiB = 1 MiB per command.
# Bounds what one command makes us read into memory or expect from the host.
MDTS = 8
MAX_TRANSFER = (1 << MDTS) * 4096
# In-capsule data accepted on every queue (the admin queue's 8 KiB minimum,
# NVMe/TCP 3.3.2, and the same for I/O queues): IOCCSZ = (64 + 8192) / 16.
IN_CAPSULE_DATA = 8192
IOCCSZ = (64 + IN_CAPSULE_DATA) // 16
IORCSZ = 1
# Largest H2CData PDU we accept (ICResp MAXH2CDATA).  The decoder must hold
# one whole PDU, so this bounds the receive buffer of a connection; with
# MAX_TRANSFER the same, a write of any size needs one R2T and one PDU.
MAXH2CDATA = MAX_TRANSFER
# I/O queues granted per controller (Set Features Number of Queues).  Each
# queue is one TCP connection and one thread here.
MAX_IO_QUEUES = 16
# Asynchronous Event Request Limit (0's based): 4 AERs held per controller.
AERL = 3
# Abort Command Limit (0's based).  Abort never aborts anything (we run each
# command to completion at once) and says so in DW0 bit 0.
ACL = 3
# Error Log Page Entries (0's based): the last 64 errors per controller.
ELPE = 63
# Keep Alive Support granularity in 100 ms units (as the kernel target: 1 s).
KAS = 10
# ANA Transition Time (s): how long a group may stay in the "change" state
# before a host gives up on it (Linux resets the controller after twice
# this); the kernel target says 10 too.
ANATT = 10
# ANA group IDs 1..ANAGRPMAX (the kernel target's NVMET_MAX_ANAGRPS); the
# controller advertises the same number as NANAGRPID.  Hosts size their ANA
# log page buffer from it, so it bounds what the page may grow to.
ANAGRPMAX = 128
# Command Retry Delay Times CRDT1..3 (Identify Controller, 100 ms units) for
# the CRD field of a status, which we set (to hosts that enabled ACRE with
# Set Features Host Behavior Support) only on Authentication Required
# answered by a queue whose authentication was withdrawn: the host
# re-authenticates in the background and must not spend its retries (Linux:
# five, nvme_max_retries) before that is done.  The CRD grows with how long
# the queue has been refusing (REAUTH_CRD_AFTER_S): a quick host's command is
# served after 100 ms, while one command of a slow host waits 0.1 + 0.1 + 1 +
# 5 + 5 s before its sixth refusal, time for a host under emulation too.
CRDT = (1, 10, 50)
# Refusing for less than REAUTH_CRD_AFTER_S[0] s: CRD 1; less than [1]: CRD 2;
# longer: CRD 3.
REAUTH_CRD_AFTER_S = (0.2, 1.0)

# --- limits against hostile or broken peers --------------------------------

# A new TCP connection must finish ICReq and Connect within this time, or
# it is dropped: an idle socket that never connects would otherwise hold a
# thread forever.
HANDSHAKE_TIMEOUT_S = 10.0
# A send that makes no progress for this long (the host stopped reading)
# ends the connection instead of blocking its thread and lock forever.
SEND_STALL_TIMEOUT_S = 60.0
# Discovery associations may connect with KATO 0 (hosts do, for one-shot
# discovery); like the Linux target (NVMET_DISC_KATO_MS) we still reap them
# after this much silence, so abandoned discovery controllers do not pile up.
DISCOVERY_IDLE_KATO_MS = 120_000
# Connections the daemon serves at once (one thread each); more are closed
# at accept time.
MAX_CONNECTIONS = 1024
# Associations (controllers) at once, across all subsystems; more get
# Connect "Controller Busy".
MAX_CONTROLLERS = 512
# Command failures logged per connection; a host hammering bad commands
# cannot flood the log (the rest are counted and summarised at close).
MAX_LOGGED_ERRORS_PER_CONNECTION = 20
# Bytes of read data staged per connection before the batch must be sent:
# one read arena reused after every sendmsg (MAX_TRANSFER fits at least 4x).
READ_ARENA_BYTES = 4 * MAX_TRANSFER
# Admin-queue payloads we collect through R2T (Connect data, DSM ranges):
# bounded by the largest such structure (256 DSM ranges = 4 KiB, Connect 1 KiB).
MAX_COLLECTED_DATA = 4096
# Control socket: one request line at most this long, and this many clients.
MAX_CONTROL_LINE = 64 * 1024
MAX_CONTROL_CLIENTS = 16

# --- statuses ---------------------------------------------------------------


def _g(sc: int, dnr: bool = True) -> int:
    return make_status(S.SCT_GENERIC, sc, dnr=dnr)


def _c(sc: int, dnr: bool = True) -> int:
    return make_status(S.SCT_COMMAND_SPECIFIC, sc, dnr=dnr)


SUCCESS = 0
INVALID_OPCODE = _g(S.SC_INVALID_OPCODE)
INVALID_FIELD = _g(S.SC_INVALID_FIELD)
CMD_ID_CONFLICT = _g(S.SC_CMD_ID_CONFLICT)
INTERNAL_ERROR = _g(S.SC_INTERNAL, dnr=False)
INVALID_NS = _g(S.SC_INVALID_NS)
CMD_SEQ_ERROR = _g(S.SC_CMD_SEQ_ERROR)
SGL_DATA_LENGTH_INVALID = _g(S.SC_SGL_INVALID_DATA)
SGL_TYPE_INVALID = _g(S.SC_SGL_INVALID_TYPE)
SGL_OFFSET_INVALID = _g(S.SC_SGL_INVALID_OFFSET)
KEEP_ALIVE_INVALID = _g(S.SC_KEEP_ALIVE_INVALID, dnr=False)
NS_WRITE_PROTECTED = _g(S.SC_NS_WRITE_PROTECTED)
# Data digest error: the host may retry (no DNR).
TRANSIENT_TRANSPORT = _g(S.SC_TRANSIENT_TRANSPORT_ERROR, dnr=False)
LBA_OUT_OF_RANGE = _g(S.SC_LBA_RANGE)
INVALID_QUEUE_ID = _c(S.SC_INVALID_QID)
ASYNC_LIMIT = _c(S.SC_ASYNC_LIMIT)
INVALID_LOG_PAGE = _c(S.SC_INVALID_LOG_PAGE)
FEATURE_NOT_SAVEABLE = _c(S.SC_FEATURE_NOT_SAVEABLE)
CONNECT_INCOMPATIBLE_FORMAT = _c(S.SC_CONNECT_INCOMPATIBLE_FORMAT)
CONNECT_CTRL_BUSY = _c(S.SC_CONNECT_CTRL_BUSY)
CONNECT_INVALID_PARAM = _c(S.SC_CONNECT_INVALID_PARAM)
CONNECT_INVALID_HOST = _c(S.SC_CONNECT_INVALID_HOST)
FEATURE_NOT_CHANGEABLE = _c(S.SC_FEATURE_NOT_CHANGEABLE)
# Path related (SCT 3h) ANA statuses: no DNR, the host retries on another
# path (or later on this one), as the kernel target answers.
ANA_PERSISTENT_LOSS = make_status(S.SCT_PATH, S.SC_ANA_PERSISTENT_LOSS, dnr=False)
ANA_INACCESSIBLE = make_status(S.SCT_PATH, S.SC_ANA_INACCESSIBLE, dnr=False)
ANA_TRANSITION = make_status(S.SCT_PATH, S.SC_ANA_TRANSITION, dnr=False)
# Write fault (media error): a backing-store write failed.
WRITE_FAULT = make_status(S.SCT_MEDIA, S.SC_WRITE_FAULT)
UNRECOVERED_READ = make_status(S.SCT_MEDIA, S.SC_UNRECOVERED_READ_ERROR)

# Parameter Error Location when the error is not tied to a field.
PEL_NONE = 0xFFFF
