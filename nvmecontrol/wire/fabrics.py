"""Fabrics commands and controller properties.

NVMe over Fabrics 1.1, 3.3 (Connect, Property Get/Set, Disconnect), NVMe
Base 2.1, 6.3 and 6.4 (Authentication Send/Receive; the messages they carry
are in ``auth.py``) and NVMe Base 2.0, 3.1.4 (CAP, VS, CC, CSTS).  Fabrics commands share opcode 0x7F and
carry their type in FCTYPE (byte 4 of the SQE).
"""

from __future__ import annotations

import struct
import uuid
from collections import namedtuple
from enum import IntEnum

from nvmecontrol.errors import PeerProtocolError
from nvmecontrol.wire.capsule import CQE, SQE

OPC_FABRICS = 0x7F
CONNECT_DATA_SIZE = 1024
NQN_FIELD = 256  # SUBNQN/HOSTNQN fields in the Connect data, NUL padded
CNTLID_DYNAMIC = 0xFFFF
CNTLID_STATIC = 0xFFFE
# SQHD 0xFFFF in a Connect response: the controller disabled SQ flow control.
SQHD_FC_DISABLED = 0xFFFF

# Connect CATTR bits.
CATTR_DISABLE_SQFLOW = 0x04
# Connect response AUTHREQ bits (DW0 31:16; bit 0 is reserved): ATR is DW0
# bit 17 and ASCR bit 18, as Linux's NVME_CONNECT_AUTHREQ_* have them.
AUTHREQ_ATR = 0x02  # authentication transaction required
AUTHREQ_ASCR = 0x04  # secure channel required


class FCType(IntEnum):
    PROPERTY_SET = 0x00
    CONNECT = 0x01
    PROPERTY_GET = 0x04
    AUTH_SEND = 0x05
    AUTH_RECEIVE = 0x06
    DISCONNECT = 0x08


class Prop(IntEnum):
    """Property offsets (NVMe Base 2.0, figure 35)."""

    CAP = 0x00
    VS = 0x08
    CC = 0x14
    CSTS = 0x1C
    NSSR = 0x20


PROP_SIZE = {Prop.CAP: 8, Prop.VS: 4, Prop.CC: 4, Prop.CSTS: 4, Prop.NSSR: 4}

_CONNECT_DATA = struct.Struct("<16sH238x256s256s256x")


class ConnectCmd(namedtuple("ConnectCmd", "qid sqsize kato_ms cattr recfmt",
                            defaults=(0, 0, 0))):
    """A Connect command's fields (ints; N.B. SQSIZE is 0's based)."""

    __slots__ = ()

class ConnectData(namedtuple("ConnectData", "hostid cntlid subnqn hostnqn")):
    """The Connect data: ``hostid`` the 16 bytes as sent on the wire, ``cntlid`` an int,
    the NQNs text."""

    __slots__ = ()

def _fabrics_sqe(fctype: int, cid: int, **cdw) -> SQE:
    # FCTYPE is byte 4, where an NVMe SQE has the low byte of NSID.
    return SQE(OPC_FABRICS, cid=cid, nsid=fctype, **cdw)


def fctype_of(sqe: SQE) -> int:
    return sqe.nsid & 0xFF


def build_connect(c: ConnectCmd, cid: int = 0) -> SQE:
    return _fabrics_sqe(FCType.CONNECT, cid,
                        cdw10=c.recfmt | (c.qid << 16),
                        cdw11=c.sqsize | (c.cattr << 16),
                        cdw12=c.kato_ms)


def parse_connect(sqe: SQE) -> ConnectCmd:
    return ConnectCmd(qid=sqe.cdw10 >> 16, sqsize=sqe.cdw11 & 0xFFFF, kato_ms=sqe.cdw12,
                      cattr=(sqe.cdw11 >> 16) & 0xFF, recfmt=sqe.cdw10 & 0xFFFF)


def _nqn_field(nqn: str) -> bytes:
    raw = nqn.encode()
    if len(raw) >= NQN_FIELD:
        raise ValueError(f"NQN is {len(raw)} bytes; the Connect field holds {NQN_FIELD - 1}")
    return raw


def encode_connect_data(d: ConnectData) -> bytes:
    if len(d.hostid) != 16:
        raise ValueError("HOSTID must be 16 bytes")
    return _CONNECT_DATA.pack(d.hostid, d.cntlid, _nqn_field(d.subnqn), _nqn_field(d.hostnqn))


def _cstr(raw: bytes, what: str) -> str:
    text = raw.split(b"\0", 1)[0]
    try:
        return text.decode()
    except UnicodeDecodeError:
        raise PeerProtocolError(f"Connect data {what} is not valid UTF-8") from None


def decode_connect_data(buf) -> ConnectData:
    if len(buf) < CONNECT_DATA_SIZE:
        raise PeerProtocolError(f"Connect data is {len(buf)} bytes, expected {CONNECT_DATA_SIZE}")
    hostid, cntlid, subnqn, hostnqn = _CONNECT_DATA.unpack_from(buf)
    return ConnectData(hostid, cntlid, _cstr(subnqn, "SUBNQN"), _cstr(hostnqn, "HOSTNQN"))


class ConnectResult(namedtuple("ConnectResult", "cntlid authreq")):
    """A Connect response's DW0, split (ints)."""

    __slots__ = ()

def parse_connect_response(cqe: CQE) -> ConnectResult:
    return ConnectResult(cntlid=cqe.dw0 & 0xFFFF, authreq=cqe.dw0 >> 16)


def connect_success_dw0(cntlid: int, authreq: int = 0) -> int:
    return cntlid | (authreq << 16)


def connect_invalid_dw0(ipo: int, in_data: bool) -> int:
    """DW0 of a Connect Invalid Parameters completion (Fabrics 1.1, 3.3.1).

    IPO is bytes 01:00 and IATTR byte 02 (bit 0 set: the offset is in the
    Connect data, clear: in the SQE), as Linux nvmet (IPO_IATTR_CONNECT_DATA),
    SPDK and FreeBSD lay it out.
    """
    return (ipo & 0xFFFF) | ((1 if in_data else 0) << 16)


def parse_connect_invalid(dw0: int) -> tuple[int, bool]:
    """(IPO, offset is in the Connect data) from a Connect Invalid Parameters DW0."""
    return dw0 & 0xFFFF, bool((dw0 >> 16) & 1)


def hostid_to_uuid(hostid: bytes) -> uuid.UUID:
    return uuid.UUID(bytes=bytes(hostid))


def build_property_get(prop: int, cid: int = 0) -> SQE:
    size8 = PROP_SIZE.get(prop, 4) == 8
    return _fabrics_sqe(FCType.PROPERTY_GET, cid, cdw10=1 if size8 else 0, cdw11=prop)


def build_property_set(prop: int, value: int, cid: int = 0) -> SQE:
    size8 = PROP_SIZE.get(prop, 4) == 8
    return _fabrics_sqe(FCType.PROPERTY_SET, cid, cdw10=1 if size8 else 0, cdw11=prop,
                        cdw12=value & 0xFFFFFFFF, cdw13=value >> 32)


class PropertyAccess(namedtuple("PropertyAccess", "offset size value")):
    """A Property Get or Set: ``size`` 4 or 8, ``value`` for Property Set (ints)."""

    __slots__ = ()

def parse_property(sqe: SQE) -> PropertyAccess:
    size = 8 if sqe.cdw10 & 0x7 == 1 else 4
    return PropertyAccess(sqe.cdw11, size, sqe.cdw12 | (sqe.cdw13 << 32))


class AuthCommand(namedtuple("AuthCommand", "secp spsp0 spsp1 length")):
    """Authentication Send (TL) or Receive (AL): CDW10 SECP/SPSP1/SPSP0, CDW11 the length
    (TL for Send, AL for Receive; ints)."""

    __slots__ = ()

def _auth_sqe(fctype: int, secp: int, length: int, cid: int, spsp0: int, spsp1: int) -> SQE:
    # CDW10: byte 0 reserved (NSSF is not used over Fabrics), SPSP0, SPSP1, SECP.
    return _fabrics_sqe(fctype, cid, cdw10=(spsp0 << 8) | (spsp1 << 16) | (secp << 24),
                        cdw11=length)


def build_auth_send(secp: int, tl: int, cid: int = 0, *, spsp0: int = 0x01,
                    spsp1: int = 0x01) -> SQE:
    return _auth_sqe(FCType.AUTH_SEND, secp, tl, cid, spsp0, spsp1)


def build_auth_receive(secp: int, al: int, cid: int = 0, *, spsp0: int = 0x01,
                       spsp1: int = 0x01) -> SQE:
    return _auth_sqe(FCType.AUTH_RECEIVE, secp, al, cid, spsp0, spsp1)


def parse_auth_command(sqe: SQE) -> AuthCommand:
    return AuthCommand(secp=sqe.cdw10 >> 24, spsp0=(sqe.cdw10 >> 8) & 0xFF,
                       spsp1=(sqe.cdw10 >> 16) & 0xFF, length=sqe.cdw11)


# Byte offsets in the SQE of the Authentication Send/Receive fields, for the
# error location of an Invalid Field status.
AUTH_SPSP0_OFFSET = 41
AUTH_SPSP1_OFFSET = 42
AUTH_SECP_OFFSET = 43
AUTH_LENGTH_OFFSET = 44


def build_disconnect(cid: int = 0) -> SQE:
    return _fabrics_sqe(FCType.DISCONNECT, cid, cdw10=0)


# --- register field codecs (NVMe Base 2.0, 3.1.4) ---------------------------

class CAP(namedtuple("CAP", "mqes cqr ams to dstrd nssrs css bps mpsmin mpsmax cmbs",
                     defaults=(1, 0, 0, 0, 0, 0x01, 0, 0, 0, 0))):
    """Controller Capabilities (ints): ``mqes`` 0's based, ``to`` the worst-case time
    to ready in 500 ms units, ``css`` bit 0 the NVM command set, ``mpsmin`` 2^(12+mpsmin)."""

    __slots__ = ()

    @classmethod
    def decode(cls, v: int) -> "CAP":
        return cls(v & 0xFFFF, (v >> 16) & 1, (v >> 17) & 3, (v >> 24) & 0xFF, (v >> 32) & 0xF,
                   (v >> 36) & 1, (v >> 37) & 0xFF, (v >> 45) & 1, (v >> 48) & 0xF,
                   (v >> 52) & 0xF, (v >> 57) & 1)

    def encode(self) -> int:
        return (self.mqes | self.cqr << 16 | self.ams << 17 | self.to << 24 | self.dstrd << 32
                | self.nssrs << 36 | self.css << 37 | self.bps << 45 | self.mpsmin << 48
                | self.mpsmax << 52 | self.cmbs << 57)


class CC(namedtuple("CC", "en css mps ams shn iosqes iocqes",
                    defaults=(0, 0, 0, 0, 0, 0, 0))):
    """Controller Configuration (ints): ``shn`` 1 = normal shutdown, 2 = abrupt."""

    __slots__ = ()

    @classmethod
    def decode(cls, v: int) -> "CC":
        return cls(v & 1, (v >> 4) & 7, (v >> 7) & 0xF, (v >> 11) & 7, (v >> 14) & 3,
                   (v >> 16) & 0xF, (v >> 20) & 0xF)

    def encode(self) -> int:
        return (self.en | self.css << 4 | self.mps << 7 | self.ams << 11 | self.shn << 14
                | self.iosqes << 16 | self.iocqes << 20)


CC_FIELDS_MASK = CC(1, 7, 0xF, 7, 3, 0xF, 0xF).encode()

SHN_NONE, SHN_NORMAL, SHN_ABRUPT = 0, 1, 2
SHST_NORMAL, SHST_OCCURRING, SHST_COMPLETE = 0, 1, 2


class CSTS(namedtuple("CSTS", "rdy cfs shst nssro pp", defaults=(0, 0, 0, 0, 0))):
    """Controller Status (ints)."""

    __slots__ = ()

    @classmethod
    def decode(cls, v: int) -> "CSTS":
        return cls(v & 1, (v >> 1) & 1, (v >> 2) & 3, (v >> 4) & 1, (v >> 5) & 1)

    def encode(self) -> int:
        return self.rdy | self.cfs << 1 | self.shst << 2 | self.nssro << 4 | self.pp << 5


class VS(namedtuple("VS", "mjr mnr ter", defaults=(0,))):
    """Version (ints)."""

    __slots__ = ()

    @classmethod
    def decode(cls, v: int) -> "VS":
        return cls(v >> 16, (v >> 8) & 0xFF, v & 0xFF)

    def encode(self) -> int:
        return self.mjr << 16 | self.mnr << 8 | self.ter

    def __str__(self) -> str:
        return f"{self.mjr}.{self.mnr}.{self.ter}" if self.ter else f"{self.mjr}.{self.mnr}"
