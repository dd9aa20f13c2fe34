"""The NVMe completion status field: layout, names and helpers.

Owns the 15-bit Status Field of a completion queue entry (NVMe Base
Specification 2.0, section 4.2.3 "Status Field Definition", figures
"Status Code Type Values" and the generic / command specific / media /
path related status code tables, plus the Fabrics command status values of
the NVMe over Fabrics specification, section 3.3 / figure "Fabrics Command
Status Values").

Layout of the value this module calls ``status`` (CQE Dword 3 bits 31:17,
i.e. ``(dw3 >> 17) & 0x7fff``; the phase tag, bit 16 of DW3, is *not* part
of it)::

    bits  7:0   SC    status code
    bits 10:8   SCT   status code type
    bits 12:11  CRD   command retry delay (index into CRDT1..3)
    bit  13     M     more (more status in the Error Information log page)
    bit  14     DNR   do not retry

The error information log page stores the same 15 bits shifted left by one,
with the phase tag in bit 0 (see :func:`status_from_error_log_field`).

Trap: status codes 80h-BFh of SCT 1 are "command set specific" and mean
different things for a Fabrics command (Connect: Incompatible Format,
Controller Busy, ...) and for an NVM command set I/O command (Conflicting
Attributes, Invalid Protection Information, ...).  :func:`status_name`
therefore takes a ``context``: ``"fabrics"`` (the default: this is an
NVMe over Fabrics tool and most 80h+ command specific codes a user sees
come from Connect or Authentication) or ``"nvm"`` for I/O and NVM command
set admin commands.

No I/O here: bytes and integers in, names out.
"""

from __future__ import annotations

from collections import namedtuple
from enum import IntEnum

TYPE_CHECKING = False  # typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from typing import Literal

# --- field layout -----------------------------------------------------------

STATUS_MASK = 0x7FFF
SC_MASK = 0xFF
SCT_SHIFT = 8
SCT_MASK = 0x7
CRD_SHIFT = 11
CRD_MASK = 0x3
MORE_BIT = 1 << 13
DNR_BIT = 1 << 14


class StatusCodeType(IntEnum):
    """SCT values (NVMe Base 2.0, figure "Status Code - Status Code Type Values")."""

    GENERIC = 0x0
    COMMAND_SPECIFIC = 0x1
    MEDIA = 0x2
    PATH = 0x3
    VENDOR = 0x7


SCT_GENERIC = StatusCodeType.GENERIC
SCT_COMMAND_SPECIFIC = StatusCodeType.COMMAND_SPECIFIC
SCT_MEDIA = StatusCodeType.MEDIA
SCT_PATH = StatusCodeType.PATH
SCT_VENDOR = StatusCodeType.VENDOR

# --- named status codes (raw 8-bit SC values; the SCT is in the group name) --

# SCT 0, generic command status.
SC_SUCCESS = 0x00
SC_INVALID_OPCODE = 0x01
SC_INVALID_FIELD = 0x02
SC_CMD_ID_CONFLICT = 0x03
SC_DATA_XFER_ERROR = 0x04
SC_POWER_LOSS = 0x05
SC_INTERNAL = 0x06
SC_ABORT_REQ = 0x07
SC_ABORT_SQ_DELETION = 0x08
SC_FUSED_FAIL = 0x09
SC_FUSED_MISSING = 0x0A
SC_INVALID_NS = 0x0B  # Invalid Namespace or Format
SC_CMD_SEQ_ERROR = 0x0C
SC_SGL_INVALID_LAST = 0x0D  # Invalid SGL Segment Descriptor
SC_SGL_INVALID_COUNT = 0x0E  # Invalid Number of SGL Descriptors
SC_SGL_INVALID_DATA = 0x0F  # Data SGL Length Invalid
SC_SGL_INVALID_METADATA = 0x10  # Metadata SGL Length Invalid
SC_SGL_INVALID_TYPE = 0x11  # SGL Descriptor Type Invalid
SC_CMB_INVALID_USE = 0x12
SC_PRP_INVALID_OFFSET = 0x13
SC_ATOMIC_WRITE_UNIT_EXCEEDED = 0x14
SC_OPERATION_DENIED = 0x15
SC_SGL_INVALID_OFFSET = 0x16
SC_HOST_ID_INCONSISTENT_FORMAT = 0x18
SC_KEEP_ALIVE_EXPIRED = 0x19
SC_KEEP_ALIVE_INVALID = 0x1A
SC_ABORTED_PREEMPT = 0x1B
SC_SANITIZE_FAILED = 0x1C
SC_SANITIZE_IN_PROGRESS = 0x1D
SC_SGL_INVALID_GRANULARITY = 0x1E
SC_CMD_NOT_SUPPORTED_IN_CMB = 0x1F
SC_NS_WRITE_PROTECTED = 0x20
SC_CMD_INTERRUPTED = 0x21
SC_TRANSIENT_TRANSPORT_ERROR = 0x22
SC_LBA_RANGE = 0x80
SC_CAPACITY_EXCEEDED = 0x81
SC_NS_NOT_READY = 0x82
SC_RESERVATION_CONFLICT = 0x83
SC_FORMAT_IN_PROGRESS = 0x84

# SCT 1, command specific status (admin commands).
SC_CQ_INVALID = 0x00
SC_INVALID_QID = 0x01
SC_INVALID_QUEUE_SIZE = 0x02
SC_ABORT_LIMIT = 0x03
SC_ASYNC_LIMIT = 0x05
SC_INVALID_FW_SLOT = 0x06
SC_INVALID_FW_IMAGE = 0x07
SC_INVALID_INTERRUPT_VECTOR = 0x08
SC_INVALID_LOG_PAGE = 0x09
SC_INVALID_FORMAT = 0x0A
SC_FW_NEEDS_CONV_RESET = 0x0B
SC_INVALID_QUEUE_DELETION = 0x0C
SC_FEATURE_NOT_SAVEABLE = 0x0D
SC_FEATURE_NOT_CHANGEABLE = 0x0E
SC_FEATURE_NOT_PER_NS = 0x0F
SC_NS_ALREADY_ATTACHED = 0x18
SC_NS_IS_PRIVATE = 0x19
SC_NS_NOT_ATTACHED = 0x1A
SC_ANA_GROUP_ID_INVALID = 0x24

# SCT 1, Fabrics command specific status (NVMe over Fabrics, Connect and
# Authentication; also used by Property Get/Set for 0x82).
SC_CONNECT_INCOMPATIBLE_FORMAT = 0x80
SC_CONNECT_CTRL_BUSY = 0x81
SC_CONNECT_INVALID_PARAM = 0x82
SC_CONNECT_RESTART_DISC = 0x83
SC_CONNECT_INVALID_HOST = 0x84
SC_INVALID_QUEUE_TYPE = 0x85
SC_DISCOVER_RESTART = 0x90
SC_AUTH_REQUIRED = 0x91

# SCT 1, NVM command set specific status (I/O commands).
SC_CONFLICTING_ATTRIBUTES = 0x80
SC_INVALID_PI = 0x81
SC_WRITE_TO_RO_RANGE = 0x82

# SCT 2, media and data integrity errors.
SC_WRITE_FAULT = 0x80
SC_UNRECOVERED_READ_ERROR = 0x81
SC_GUARD_CHECK = 0x82
SC_APPTAG_CHECK = 0x83
SC_REFTAG_CHECK = 0x84
SC_COMPARE_FAILED = 0x85
SC_ACCESS_DENIED = 0x86
SC_DEALLOCATED_OR_UNWRITTEN = 0x87

# SCT 3, path related status.
SC_INTERNAL_PATH_ERROR = 0x00
SC_ANA_PERSISTENT_LOSS = 0x01
SC_ANA_INACCESSIBLE = 0x02
SC_ANA_TRANSITION = 0x03
SC_CTRL_PATH_ERROR = 0x60
SC_HOST_PATH_ERROR = 0x70
SC_ABORTED_BY_HOST = 0x71

# --- name tables ------------------------------------------------------------

_GENERIC: dict[int, str] = {
    0x00: "Successful Completion",
    0x01: "Invalid Command Opcode",
    0x02: "Invalid Field in Command",
    0x03: "Command ID Conflict",
    0x04: "Data Transfer Error",
    0x05: "Commands Aborted due to Power Loss Notification",
    0x06: "Internal Error",
    0x07: "Command Abort Requested",
    0x08: "Command Aborted due to SQ Deletion",
    0x09: "Command Aborted due to Failed Fused Command",
    0x0A: "Command Aborted due to Missing Fused Command",
    0x0B: "Invalid Namespace or Format",
    0x0C: "Command Sequence Error",
    0x0D: "Invalid SGL Segment Descriptor",
    0x0E: "Invalid Number of SGL Descriptors",
    0x0F: "Data SGL Length Invalid",
    0x10: "Metadata SGL Length Invalid",
    0x11: "SGL Descriptor Type Invalid",
    0x12: "Invalid Use of Controller Memory Buffer",
    0x13: "PRP Offset Invalid",
    0x14: "Atomic Write Unit Exceeded",
    0x15: "Operation Denied",
    0x16: "SGL Offset Invalid",
    0x18: "Host Identifier Inconsistent Format",
    0x19: "Keep Alive Timer Expired",
    0x1A: "Keep Alive Timeout Invalid",
    0x1B: "Command Aborted due to Preempt and Abort",
    0x1C: "Sanitize Failed",
    0x1D: "Sanitize In Progress",
    0x1E: "SGL Data Block Granularity Invalid",
    0x1F: "Command Not Supported for Queue in CMB",
    0x20: "Namespace is Write Protected",
    0x21: "Command Interrupted",
    0x22: "Transient Transport Error",
    0x23: "Command Prohibited by Command and Feature Lockdown",
    0x24: "Admin Command Media Not Ready",
    0x25: "Invalid Key Tag",
    0x26: "Host Dispersed Namespace Support Not Enabled",
    0x27: "Host Identifier Not Initialized",
    0x28: "Incorrect Key",
    0x29: "FDP Disabled",
    0x2A: "Invalid Placement Handle List",
    # 80h-BFh: NVM command set (I/O) specific generic status.
    0x80: "LBA Out of Range",
    0x81: "Capacity Exceeded",
    0x82: "Namespace Not Ready",
    0x83: "Reservation Conflict",
    0x84: "Format In Progress",
    0x85: "Invalid Value Size",
    0x86: "Invalid Key Size",
    0x87: "KV Key Does Not Exist",
    0x88: "Unrecovered Error",
    0x89: "Key Exists",
}

_COMMAND_SPECIFIC: dict[int, str] = {
    0x00: "Completion Queue Invalid",
    0x01: "Invalid Queue Identifier",
    0x02: "Invalid Queue Size",
    0x03: "Abort Command Limit Exceeded",
    0x05: "Asynchronous Event Request Limit Exceeded",
    0x06: "Invalid Firmware Slot",
    0x07: "Invalid Firmware Image",
    0x08: "Invalid Interrupt Vector",
    0x09: "Invalid Log Page",
    0x0A: "Invalid Format",
    0x0B: "Firmware Activation Requires Conventional Reset",
    0x0C: "Invalid Queue Deletion",
    0x0D: "Feature Identifier Not Saveable",
    0x0E: "Feature Not Changeable",
    0x0F: "Feature Not Namespace Specific",
    0x10: "Firmware Activation Requires NVM Subsystem Reset",
    0x11: "Firmware Activation Requires Controller Level Reset",
    0x12: "Firmware Activation Requires Maximum Time Violation",
    0x13: "Firmware Activation Prohibited",
    0x14: "Overlapping Range",
    0x15: "Namespace Insufficient Capacity",
    0x16: "Namespace Identifier Unavailable",
    0x18: "Namespace Already Attached",
    0x19: "Namespace Is Private",
    0x1A: "Namespace Not Attached",
    0x1B: "Thin Provisioning Not Supported",
    0x1C: "Controller List Invalid",
    0x1D: "Device Self-test In Progress",
    0x1E: "Boot Partition Write Prohibited",
    0x1F: "Invalid Controller Identifier",
    0x20: "Invalid Secondary Controller State",
    0x21: "Invalid Number of Controller Resources",
    0x22: "Invalid Resource Identifier",
    0x23: "Sanitize Prohibited While Persistent Memory Region is Enabled",
    0x24: "ANA Group Identifier Invalid",
    0x25: "ANA Attach Failed",
    0x26: "Insufficient Capacity",
    0x27: "Namespace Attachment Limit Exceeded",
    0x28: "Prohibition of Command Execution Not Supported",
    0x29: "I/O Command Set Not Supported",
    0x2A: "I/O Command Set Not Enabled",
    0x2B: "I/O Command Set Combination Rejected",
    0x2C: "Invalid I/O Command Set",
    0x2D: "Identifier Unavailable",
    0x2F: "Invalid Discovery Information",
    0x30: "Zoning Data Structure Locked",
    0x31: "Zoning Data Structure Not Found",
    0x32: "Insufficient Discovery Resources",
    0x33: "Requested Function Disabled",
    0x34: "ZoneGroup Originator Invalid",
}

# SCT 1, 80h-BFh when the command was a Fabrics command (NVMe-oF 1.1+).
_FABRICS_SPECIFIC: dict[int, str] = {
    0x80: "Incompatible Format",
    0x81: "Controller Busy",
    0x82: "Connect Invalid Parameters",
    0x83: "Connect Restart Discovery",
    0x84: "Connect Invalid Host",
    0x85: "Invalid Queue Type",
    0x90: "Discover Restart",
    0x91: "Authentication Required",
}

# SCT 1, 80h-BFh when the command was an NVM command set command.
_NVM_SPECIFIC: dict[int, str] = {
    0x80: "Conflicting Attributes",
    0x81: "Invalid Protection Information",
    0x82: "Attempted Write to Read Only Range",
    0x83: "Command Size Limit Exceeded",
    0x85: "Incompatible Namespace or Format",
    0x86: "Fast Copy Not Possible",
    0x87: "Overlapping I/O Range",
    0x89: "Insufficient Resources",
    0xB6: "Zoned: Invalid Zone Operation Request",
    0xB7: "Zoned: ZRWA Resources Unavailable",
    0xB8: "Zoned: Zone Boundary Error",
    0xB9: "Zoned: Zone Is Full",
    0xBA: "Zoned: Zone Is Read Only",
    0xBB: "Zoned: Zone Is Offline",
    0xBC: "Zoned: Zone Invalid Write",
    0xBD: "Zoned: Too Many Active Zones",
    0xBE: "Zoned: Too Many Open Zones",
    0xBF: "Zoned: Invalid Zone State Transition",
}

_MEDIA: dict[int, str] = {
    0x80: "Write Fault",
    0x81: "Unrecovered Read Error",
    0x82: "End-to-end Guard Check Error",
    0x83: "End-to-end Application Tag Check Error",
    0x84: "End-to-end Reference Tag Check Error",
    0x85: "Compare Failure",
    0x86: "Access Denied",
    0x87: "Deallocated or Unwritten Logical Block",
    0x88: "End-to-end Storage Tag Check Error",
}

_PATH: dict[int, str] = {
    0x00: "Internal Path Error",
    0x01: "Asymmetric Access Persistent Loss",
    0x02: "Asymmetric Access Inaccessible",
    0x03: "Asymmetric Access Transition",
    0x60: "Controller Pathing Error",
    0x70: "Host Pathing Error",
    0x71: "Command Aborted By Host",
}

if TYPE_CHECKING:
    StatusContext = Literal["fabrics", "nvm"]


class Status(namedtuple("Status", "sc sct crd more dnr")):
    """The decoded 15-bit status field (sc, sct, crd: ints; more, dnr: bools)."""

    __slots__ = ()


def decode_status(status: int) -> Status:
    """Split a 15-bit status value into its fields (higher bits are ignored)."""
    sct = (status >> SCT_SHIFT) & SCT_MASK
    try:
        sct = StatusCodeType(sct)
    except ValueError:
        pass
    return Status(
        sc=status & SC_MASK,
        sct=sct,
        crd=(status >> CRD_SHIFT) & CRD_MASK,
        more=bool(status & MORE_BIT),
        dnr=bool(status & DNR_BIT),
    )


def make_status(sct: int, sc: int, dnr: bool = False, more: bool = False, crd: int = 0) -> int:
    """Build a 15-bit status value.  ``make_status(1, 0x84, dnr=True) == 0x4184``."""
    if not 0 <= sc <= SC_MASK:
        raise ValueError(f"status code {sc:#x} does not fit in 8 bits")
    if not 0 <= sct <= SCT_MASK:
        raise ValueError(f"status code type {sct:#x} does not fit in 3 bits")
    if not 0 <= crd <= CRD_MASK:
        raise ValueError(f"command retry delay {crd} does not fit in 2 bits")
    return (
        sc
        | (sct << SCT_SHIFT)
        | (crd << CRD_SHIFT)
        | (MORE_BIT if more else 0)
        | (DNR_BIT if dnr else 0)
    )


def encode_status(status: Status) -> int:
    """Inverse of :func:`decode_status`."""
    return make_status(status.sct, status.sc, dnr=status.dnr, more=status.more, crd=status.crd)


def status_from_cqe_dw3(dw3: int) -> int:
    """The status of a CQE given its Dword 3 (bits 31:17; bit 16 is the phase tag)."""
    return (dw3 >> 17) & STATUS_MASK


def status_to_cqe_dw3(status: int, cid: int, phase: int = 0) -> int:
    """Dword 3 of a CQE: CID in bits 15:0, phase in bit 16, status in 31:17."""
    return (cid & 0xFFFF) | ((phase & 1) << 16) | ((status & STATUS_MASK) << 17)


def status_from_error_log_field(field: int) -> tuple[int, int]:
    """Split the Error Information log "Status Field" (bit 0 phase tag) into
    ``(status, phase)``."""
    return (field >> 1) & STATUS_MASK, field & 1


def status_is_error(status: int) -> bool:
    """True unless SCT and SC are both zero (CRD/More/DNR do not matter)."""
    return (status & ((SCT_MASK << SCT_SHIFT) | SC_MASK)) != 0


def status_name(sct: int, sc: int, *, context: StatusContext = "fabrics") -> str:
    """The spec's name of a status code, ``"Reserved"`` / ``"Unknown"`` otherwise.

    ``context`` disambiguates SCT 1 codes 80h-BFh (see the module docstring).
    """
    if sct == SCT_GENERIC:
        table = _GENERIC
    elif sct == SCT_COMMAND_SPECIFIC:
        if 0x80 <= sc <= 0xBF:
            table = _FABRICS_SPECIFIC if context == "fabrics" else _NVM_SPECIFIC
        else:
            table = _COMMAND_SPECIFIC
    elif sct == SCT_MEDIA:
        table = _MEDIA
    elif sct == SCT_PATH:
        table = _PATH
    elif sct == SCT_VENDOR:
        return "Vendor Specific"
    else:
        return "Reserved Status Code Type"
    name = table.get(sc)
    if name is not None:
        return name
    if sc >= 0xC0:
        return "Vendor Specific"
    return "Unknown"


def describe_status(status: int, *, context: StatusContext = "fabrics") -> str:
    """One line for a user, e.g. ``"Connect Invalid Host (sct 0x1, sc 0x84, dnr)"``."""
    st = decode_status(status)
    parts = [f"sct {int(st.sct):#x}", f"sc 0x{st.sc:02x}"]
    if st.crd:
        parts.append(f"crd {st.crd}")
    if st.more:
        parts.append("more")
    if st.dnr:
        parts.append("dnr")
    return f"{status_name(st.sct, st.sc, context=context)} ({', '.join(parts)})"


def status_to_json(status: int, *, context: StatusContext = "fabrics") -> dict:
    """``{"sct", "sc", "dnr", "more", "crd", "name"}`` with integer codes."""
    st = decode_status(status)
    return {
        "sct": int(st.sct),
        "sc": st.sc,
        "dnr": st.dnr,
        "more": st.more,
        "crd": st.crd,
        "name": status_name(st.sct, st.sc, context=context),
    }


# --- Connect Invalid Parameters: which field -----------------------------------
#
# A Connect refused with Connect Invalid Parameters (SCT 1, SC 82h) carries in
# DW0 the Invalid Parameter Offset (IPO, bits 15:0) and Invalid Attributes
# (IATTR, bit 16 set: the offset is in the Connect data, clear: in the SQE)
# (NVMe over Fabrics 1.1, 3.3.1, "Connect Response").  The offsets below are
# where each field starts; targets point at the start (Linux nvmet uses
# offsetof()), but any byte inside a field names it.

# (first byte, last byte, mnemonic) in the 1024-byte Connect data (3.3.1.1).
CONNECT_DATA_FIELDS = (
    (0, 15, "HOSTID"),
    (16, 17, "CNTLID"),
    (256, 511, "SUBNQN"),
    (512, 767, "HOSTNQN"),
)
# (first byte, last byte, mnemonic) in the 64-byte Connect SQE (3.3.1).
CONNECT_SQE_FIELDS = (
    (40, 41, "RECFMT"),  # CDW10 15:00
    (42, 43, "QID"),  # CDW10 31:16
    (44, 45, "SQSIZE"),  # CDW11 15:00
    (46, 46, "CATTR"),  # CDW11 23:16
    (48, 51, "KATO"),  # CDW12
)


def connect_invalid_field(ipo: int, in_data: bool) -> str | None:
    """The mnemonic of the Connect field at byte ``ipo`` (None: no field there)."""
    for first, last, name in CONNECT_DATA_FIELDS if in_data else CONNECT_SQE_FIELDS:
        if first <= ipo <= last:
            return name
    return None
