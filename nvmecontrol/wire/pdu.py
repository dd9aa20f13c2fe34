"""NVMe/TCP PDUs: encoding, header validation and stream decoding.

NVMe/TCP Transport Specification 1.0 (rev 1.0c), section 3.6.  Every PDU
starts with an 8-byte common header (CH: type, flags, HLEN, PDO, PLEN),
followed by a PDU-specific header (PSH), an optional header digest, padding
up to PDO, data, and an optional data digest.

Decoding is split in two so both halves stay testable:

* :func:`check_header` is a pure function that validates a common header
  (and the few PSH fields that decide the PDU's size) and names the lowest
  wrong field with its Fatal Error Status / Field Error Information, as a
  TermReq must (3.6.2.9-10);
* :class:`PduDecoder` cuts a byte stream into PDUs.  It owns one receive
  buffer that the caller fills (``get_buffer``/``buffer_updated``, like an
  asyncio BufferedProtocol, or ``feed`` for tests); data payloads are
  memoryview slices of that buffer, valid until the next fill.
  ``decode`` returns records; ``decode_raw`` (the queue pairs' hot path)
  returns plain tuples and validates headers through a cache in front of
  :func:`check_header` that reaches the same verdict for every input.

Encoding likewise has two forms: the record-taking ``encode_*`` functions,
and ``put_*`` functions for the queue pairs' transmit paths that pack a
finished header with one precompiled struct (same bytes, tested).
"""

from __future__ import annotations

import struct
from enum import IntEnum
from collections import namedtuple

from nvmecontrol.errors import PeerProtocolError
from nvmecontrol.recvbuf import ReceiveBuffer
from nvmecontrol.wire.capsule import CQE_SIZE, SQE_SIZE


class PduType(IntEnum):
    ICReq = 0x00
    ICResp = 0x01
    H2CTermReq = 0x02
    C2HTermReq = 0x03
    CapsuleCmd = 0x04
    CapsuleResp = 0x05
    H2CData = 0x06
    C2HData = 0x07
    R2T = 0x09


class FES(IntEnum):
    """Fatal Error Status of a TermReq (NVMe/TCP 1.0, figure 20)."""

    INVALID_HEADER_FIELD = 0x01
    PDU_SEQUENCE_ERROR = 0x02
    HEADER_DIGEST_ERROR = 0x03
    DATA_OUT_OF_RANGE = 0x04
    R2T_LIMIT_EXCEEDED = 0x05
    DATA_LIMIT_EXCEEDED = 0x05  # the same value covers both limits
    UNSUPPORTED_PARAMETER = 0x06


# Common-header flag bits.
F_HDGST = 0x01
F_DDGST = 0x02
F_LAST_PDU = 0x04  # H2CData / C2HData
F_SUCCESS = 0x08  # C2HData only: command completed, no CapsuleResp follows

# ICReq/ICResp DGST bits.
DGST_HDGST = 0x01
DGST_DDGST = 0x02

CH_SIZE = 8
DIGEST_SIZE = 4
IC_HLEN = 128
TERM_HLEN = 24
CMD_HLEN = CH_SIZE + SQE_SIZE  # 72
RESP_HLEN = CH_SIZE + CQE_SIZE  # 24
DATA_HLEN = 24  # H2CData, C2HData, R2T

# A TermReq carries at most the first 128 bytes of the offending PDU header
# (NVMe/TCP 3.6.2.9), so its PLEN is bounded; anything larger is hostile.
TERM_MAX_DATA = 128
# The smallest MAXH2CDATA a controller may advertise (NVMe/TCP 3.6.2.3).
MIN_MAXH2CDATA = 4096
# The largest padding a PDA (at most 31, i.e. 128-byte alignment) can require.
MAX_PAD = 128
# PFV 0 is the only PDU format version defined.
PFV = 0

ROLE_HOST = "host"  # we are the host: we receive controller-to-host PDUs
ROLE_CONTROLLER = "controller"

_RECEIVED_BY = {
    ROLE_HOST: frozenset({PduType.ICResp, PduType.C2HTermReq, PduType.CapsuleResp,
                          PduType.C2HData, PduType.R2T}),
    ROLE_CONTROLLER: frozenset({PduType.ICReq, PduType.H2CTermReq, PduType.CapsuleCmd,
                                PduType.H2CData}),
}

_HLEN = {
    PduType.ICReq: IC_HLEN, PduType.ICResp: IC_HLEN,
    PduType.H2CTermReq: TERM_HLEN, PduType.C2HTermReq: TERM_HLEN,
    PduType.CapsuleCmd: CMD_HLEN, PduType.CapsuleResp: RESP_HLEN,
    PduType.H2CData: DATA_HLEN, PduType.C2HData: DATA_HLEN, PduType.R2T: DATA_HLEN,
}

# Flags each type may carry (besides the digest flags, checked separately).
_EXTRA_FLAGS = {
    PduType.H2CData: F_LAST_PDU,
    PduType.C2HData: F_LAST_PDU | F_SUCCESS,
}
# Types after the IC exchange that carry a header digest when negotiated.
_DIGESTED = frozenset({PduType.CapsuleCmd, PduType.CapsuleResp, PduType.H2CData,
                       PduType.C2HData, PduType.R2T})
# Types that may carry data (and then a data digest when negotiated).
_DATA = frozenset({PduType.CapsuleCmd, PduType.H2CData, PduType.C2HData})

# Field offsets in the common header, used as FEI.
FEI_TYPE, FEI_FLAGS, FEI_HLEN, FEI_PDO, FEI_PLEN = 0, 1, 2, 3, 4

_CH = struct.Struct("<BBBBI")
_IC = struct.Struct("<BBBBIHBBI112x")
_TERM = struct.Struct("<BBBBIHI10x")
_DATA_HDR = struct.Struct("<BBBBIHHII4x")
_U16 = struct.Struct("<H")


# --- PDU records -----------------------------------------------------------
# collections.namedtuple, not typing.NamedTuple (the same classes): every
# command that reaches a controller imports this module, and typing costs
# its start-up about 3 ms (issue 13).

ICReq = namedtuple("ICReq", "hpda dgst maxr2t pfv", defaults=(0, 0, 0, PFV))  # maxr2t 0's based
ICResp = namedtuple("ICResp", "cpda dgst maxh2cdata pfv", defaults=(0, 0, 0x20000, PFV))
TermReq = namedtuple("TermReq", "fes fei data h2c", defaults=(0, b"", True))
TermReq.__doc__ = "H2CTermReq or C2HTermReq (``h2c`` tells which)."
# sqe: 64 bytes; data: in-capsule data (memoryview, bytes or None)
CapsuleCmd = namedtuple("CapsuleCmd", "sqe data digest_error", defaults=(None, False))
CapsuleResp = namedtuple("CapsuleResp", "cqe")  # 16 bytes
H2CData = namedtuple("H2CData", "cccid ttag datao data last digest_error", defaults=(True, False))
C2HData = namedtuple("C2HData", "cccid datao data last success digest_error",
                     defaults=(True, False, False))
R2T = namedtuple("R2T", "cccid ttag r2to r2tl")


# --- encoding --------------------------------------------------------------

def _pad_to(pda: int, hdr_end: int) -> int:
    """PDO for data after a header ending at ``hdr_end`` with PDU data alignment ``pda``.

    PDA is 0's based in dwords: 0 means no alignment, n means (n+1)*4 bytes.
    """
    if not pda:
        return hdr_end
    align = (pda + 1) * 4
    return (hdr_end + align - 1) // align * align


def encode_icreq(p: ICReq) -> bytes:
    return _IC.pack(PduType.ICReq, 0, IC_HLEN, 0, IC_HLEN, p.pfv, p.hpda, p.dgst, p.maxr2t)


def encode_icresp(p: ICResp) -> bytes:
    return _IC.pack(PduType.ICResp, 0, IC_HLEN, 0, IC_HLEN, p.pfv, p.cpda, p.dgst, p.maxh2cdata)


def encode_termreq(p: TermReq) -> bytes:
    data = bytes(p.data[:TERM_MAX_DATA])
    ptype = PduType.H2CTermReq if p.h2c else PduType.C2HTermReq
    return _TERM.pack(ptype, 0, TERM_HLEN, 0, TERM_HLEN + len(data), p.fes, p.fei) + data


def _framed(header: bytearray, data, hdgst: bool, ddgst: bool, pda: int) -> list:
    """Finish a PDU whose CH+PSH is ``header``: set flags/PDO/PLEN, add digests.

    Returns a list of buffers for ``sendmsg``; ``data`` is not copied.
    """
    hlen = len(header)
    flags = header[1]
    hdr_end = hlen + (DIGEST_SIZE if hdgst else 0)
    if hdgst:
        flags |= F_HDGST
    dlen = len(data) if data is not None else 0
    if dlen:
        pdo = _pad_to(pda, hdr_end)
        plen = pdo + dlen + (DIGEST_SIZE if ddgst else 0)
        if ddgst:
            flags |= F_DDGST
    else:
        pdo = 0
        plen = hdr_end
    header[1] = flags
    header[3] = pdo
    struct.pack_into("<I", header, 4, plen)
    out = [header]
    if hdgst:
        out.append(_digest(header))
    if dlen:
        if pdo > hdr_end:
            out.append(bytes(pdo - hdr_end))
        out.append(data)
        if ddgst:
            out.append(_digest(data))
    return out


def encode_capsule_cmd(sqe, data=None, *, hdgst=False, ddgst=False, pda=0) -> list:
    header = bytearray(CMD_HLEN)
    header[0] = PduType.CapsuleCmd
    header[2] = CMD_HLEN
    header[CH_SIZE:] = sqe
    return _framed(header, data, hdgst, ddgst, pda)


def encode_capsule_resp(cqe, *, hdgst=False) -> list:
    header = bytearray(RESP_HLEN)
    header[0] = PduType.CapsuleResp
    header[2] = RESP_HLEN
    header[CH_SIZE:] = cqe
    return _framed(header, None, hdgst, False, 0)


def _data_header(ptype: int, flags: int, cccid: int, ttag: int, offset: int, length: int) -> bytearray:
    header = bytearray(DATA_HLEN)
    _DATA_HDR.pack_into(header, 0, ptype, flags, DATA_HLEN, 0, 0, cccid, ttag, offset, length)
    return header


def encode_h2c_data(p: H2CData, *, hdgst=False, ddgst=False, pda=0) -> list:
    header = _data_header(PduType.H2CData, F_LAST_PDU if p.last else 0,
                          p.cccid, p.ttag, p.datao, len(p.data))
    return _framed(header, p.data, hdgst, ddgst, pda)


def encode_c2h_data(p: C2HData, *, hdgst=False, ddgst=False, pda=0) -> list:
    flags = (F_LAST_PDU if p.last else 0) | (F_SUCCESS if p.success else 0)
    header = _data_header(PduType.C2HData, flags, p.cccid, 0, p.datao, len(p.data))
    return _framed(header, p.data, hdgst, ddgst, pda)


def encode_r2t(p: R2T, *, hdgst=False) -> list:
    header = _data_header(PduType.R2T, 0, p.cccid, p.ttag, p.r2to, p.r2tl)
    return _framed(header, None, hdgst, False, 0)


def join(buffers) -> bytes:
    """One bytes object from a list of encoded buffers (tests, small PDUs)."""
    return b"".join(bytes(b) for b in buffers)


# --- header validation -----------------------------------------------------

# data_len: bytes of PDU data (0 if none)
HeaderInfo = namedtuple("HeaderInfo", "ptype flags hlen pdo plen data_len")
HeaderInfo.__doc__ = "What :func:`check_header` learned: enough to frame the PDU."


def _bad(fei: int, why: str) -> PeerProtocolError:
    return PeerProtocolError(f"invalid PDU header: {why}", FES.INVALID_HEADER_FIELD, fei)


def check_header(ch, *, role: str, connected: bool, hdgst: bool, ddgst: bool,
                 pda: int, max_data: int) -> HeaderInfo:
    """Validate an 8-byte common header received by ``role``.

    ``connected`` is False until the IC exchange finished; until then digests
    are off and only the IC PDU (or a TermReq) may arrive.  ``pda`` is the
    data alignment the *receiver* asked for (HPDA for a controller receiving,
    CPDA for a host receiving); ``max_data`` bounds the data of one PDU.

    The lowest wrong field is reported first (NVMe/TCP 3.6.2.10: FEI is the
    byte offset of the field in error).
    """
    ptype, flags, hlen, pdo, plen = _CH.unpack_from(ch)
    try:
        ptype = PduType(ptype)
    except ValueError:
        raise _bad(FEI_TYPE, f"unknown PDU type 0x{ptype:02x}") from None
    if ptype not in _RECEIVED_BY[role]:
        raise _bad(FEI_TYPE, f"{ptype.name} cannot be sent to a {role}")
    is_ic = ptype in (PduType.ICReq, PduType.ICResp)
    is_term = ptype in (PduType.H2CTermReq, PduType.C2HTermReq)
    if connected == is_ic and not is_term:
        state = "after" if connected else "before"
        raise PeerProtocolError(f"{ptype.name} received {state} connection initialization",
                                FES.PDU_SEQUENCE_ERROR, FEI_TYPE)

    digested = connected and ptype in _DIGESTED
    want_h = F_HDGST if (digested and hdgst) else 0
    # Flag bits that mean nothing for this type are ignored, as the Linux
    # kernel's host and target ignore them; the ones that say how the PDU
    # is laid out or completes are checked.
    meaningful = _EXTRA_FLAGS.get(ptype, 0)
    if ptype in _DIGESTED:
        meaningful |= F_HDGST | (F_DDGST if ptype in _DATA else 0)
    flags &= meaningful
    if flags & F_HDGST and not want_h:
        # nvmet and the Linux host ignore the flag when no header digest was
        # negotiated; so do we.  A digest really sent after the header then
        # shows in PLEN (or PDO), which is checked against the header alone.
        flags &= ~F_HDGST
    if (flags & F_HDGST) != want_h:
        raise _bad(FEI_FLAGS, f"{ptype.name} header digest flag does not match the negotiated digests")
    if flags & F_SUCCESS and not flags & F_LAST_PDU:
        raise _bad(FEI_FLAGS, "C2HData has SUCCESS without LAST_PDU")

    if hlen != _HLEN[ptype]:
        if ptype is not PduType.ICResp:
            raise _bad(FEI_HLEN, f"{ptype.name} HLEN {hlen}, expected {_HLEN[ptype]}")
        # The Linux host reads an ICResp by its fixed size and checks PLEN,
        # never HLEN: the size is known, so HLEN cannot mislead us either.
        hlen = IC_HLEN

    hdr_end = hlen + (DIGEST_SIZE if want_h else 0)
    if ptype not in _DATA:
        # No data: PDO points at nothing.  Neither nvmet (ICReq) nor the
        # Linux host (ICResp, CapsuleResp, R2T, C2HTermReq) reads it.
        pdo = 0
        if is_term:
            if not hlen <= plen <= hlen + TERM_MAX_DATA:
                raise _bad(FEI_PLEN, f"{ptype.name} PLEN {plen} out of range")
            return HeaderInfo(ptype, flags, hlen, pdo, plen, plen - hlen)
        if plen != hdr_end:
            raise _bad(FEI_PLEN, f"{ptype.name} PLEN {plen}, expected {hdr_end}")
        return HeaderInfo(ptype, flags, hlen, pdo, plen, 0)

    want_d = DIGEST_SIZE if flags & F_DDGST else 0
    if ptype is PduType.CapsuleCmd and (pdo == 0 or plen == hdr_end):
        # No in-capsule data.  PDO then points at nothing and the data digest
        # flag covers nothing: both are ignored (nvmet reads in-capsule data
        # by the SGL's length, not by PDO).  PLEN must still end the header,
        # or the next PDU would be read from the wrong place.
        if plen != hdr_end:
            raise _bad(FEI_PLEN, f"{ptype.name} PLEN {plen}, expected {hdr_end} for no data")
        return HeaderInfo(ptype, flags & ~F_DDGST, hlen, 0, plen, 0)
    # Data PDUs carry DATAL, which the decoder checks against PLEN: the
    # Linux host reads a C2HData by DATAL, nvmet an H2CData by PLEN less the
    # header and the negotiated digests (both: data right after the header,
    # PDO and an unnegotiated DDGST flag ignored), so we take what they take
    # wherever DATAL still proves the framing right.  A CapsuleCmd has no
    # DATAL (nvmet reads in-capsule data by the SGL, which is not here).
    c2h = ptype is PduType.C2HData
    datal = c2h or ptype is PduType.H2CData
    if pdo == 0:
        if not datal:
            raise _bad(FEI_PDO, f"{ptype.name} PDO 0 but data PDUs carry data")
        pdo = _pad_to(pda, hdr_end)
    # The flags (byte 1) come before PDO (byte 3): report a wrong data
    # digest flag first when both are wrong.
    if ddgst and connected and not want_d:
        raise _bad(FEI_FLAGS, f"{ptype.name} lacks the negotiated data digest")
    if want_d and not (ddgst and connected):
        if not datal:
            # The last 4 bytes would be taken for a digest nobody negotiated.
            raise _bad(FEI_FLAGS, f"{ptype.name} carries a data digest that was not negotiated")
        # Ignored: 4 digest bytes really sent would make PLEN disagree with DATAL.
        flags &= ~F_DDGST
        want_d = 0
    if pdo < hdr_end or pdo > hdr_end + MAX_PAD or pdo != _pad_to(pda, pdo):
        raise _bad(FEI_PDO, f"{ptype.name} PDO {pdo} is not a valid data offset")
    data_len = plen - pdo - want_d
    # A C2HData may carry no data (DATAL 0), as the Linux host accepts
    # (nvmet refuses an empty H2CData).
    if data_len < 0 or (data_len == 0 and not c2h):
        raise _bad(FEI_PLEN, f"{ptype.name} PLEN {plen} leaves no data after PDO {pdo}")
    if data_len > max_data:
        raise _bad(FEI_PLEN, f"{ptype.name} carries {data_len} bytes, more than {max_data}")
    return HeaderInfo(ptype, flags, hlen, pdo, plen, data_len)


# --- stream decoding -------------------------------------------------------

def _decode_ic(ptype, b) -> ICReq | ICResp:
    _t, _f, _h, _p, _l, pfv, pda, dgst, last = _IC.unpack_from(b)
    if pfv != PFV:
        raise PeerProtocolError(f"unsupported PDU format version {pfv}",
                                FES.UNSUPPORTED_PARAMETER, 8)
    if pda > 31:
        raise _bad(10, f"PDA {pda} exceeds 31")
    dgst &= DGST_HDGST | DGST_DDGST  # reserved bits ignored, as nvmet and the Linux host do
    if ptype is PduType.ICReq:
        return ICReq(pda, dgst, last, pfv)
    if last < MIN_MAXH2CDATA or last % 4:
        raise _bad(12, f"MAXH2CDATA {last} is below 4096 or not dword aligned")
    return ICResp(pda, dgst, last, pfv)


# Raw PDU tuples: what :meth:`PduDecoder.decode_raw` returns, one plain tuple
# per PDU, kind first (the PDU type), so the queue pairs dispatch on one int
# and build no record they do not need:
#
#   (CapsuleCmd, sqe: bytes, data | None, digest_error)
#   (CapsuleResp, dw0, dw1, sqhd, sqid, cid, status field incl. phase bit 0)
#   (H2CData, cccid, ttag, datao, data, flags, digest_error)
#   (C2HData, cccid, datao, data, flags, digest_error)
#   (R2T, cccid, ttag, r2to, r2tl)
#   (ICReq | ICResp | H2CTermReq | C2HTermReq, record)
RAW_CMD = PduType.CapsuleCmd.value
RAW_RESP = PduType.CapsuleResp.value
RAW_H2C = PduType.H2CData.value
RAW_C2H = PduType.C2HData.value
RAW_R2T = PduType.R2T.value
_IC_TYPES = (PduType.ICReq.value, PduType.ICResp.value)

# Bytes 0-3 of the common header as one little-endian int (the header-cache
# key), then PLEN.
_CH_KEY = struct.Struct("<II")
_U32 = struct.Struct("<I")
_CQE_AT_8 = struct.Struct("<8xIIHHHH")
_DATA_PSH = struct.Struct("<8xHHII")
_TERM_PSH = struct.Struct("<8xHI")
# Valid first-4-byte combinations are few (a type has one HLEN, a handful of
# flag sets and PDOs); the bound only matters against a peer that sends many
# different valid headers, and then costs one re-validation per key.
HEADER_CACHE_MAX = 256

# CRC32C comes from wire.crc (fastcrc) on the first digest: fastcrc's package
# loads every CRC width, start-up time that a command without digests (all
# of discover, identify, logpage) would pay for nothing.  Each function
# rebinds itself to the real one, which every later call finds as the module
# global (the hot paths read it once per batch).
def _crc32c(data) -> int:
    global _crc32c
    from nvmecontrol.wire.crc import crc32c
    _crc32c = crc32c
    return crc32c(data)


def _digest(data) -> bytes:
    global _digest
    from nvmecontrol.wire.crc import digest
    _digest = digest
    return digest(data)


def _raw_to_record(t):
    """The record :meth:`PduDecoder.decode` returns for a raw tuple."""
    k = t[0]
    if k == RAW_CMD:
        return CapsuleCmd(t[1], t[2], t[3])
    if k == RAW_RESP:
        return CapsuleResp(_CQE_AT_8.pack(*t[1:])[8:])
    if k == RAW_C2H:
        return C2HData(t[1], t[2], t[3], bool(t[4] & F_LAST_PDU), bool(t[4] & F_SUCCESS), t[5])
    if k == RAW_H2C:
        return H2CData(t[1], t[2], t[3], t[4], bool(t[5] & F_LAST_PDU), t[6])
    if k == RAW_R2T:
        return R2T(t[1], t[2], t[3], t[4])
    return t[1]


class PduDecoder(ReceiveBuffer):
    """Cuts a received byte stream into PDUs for one queue pair.

    The caller sets the negotiated parameters (``connected``, digests, PDA,
    ``max_data``) as the IC exchange completes.  :meth:`decode` returns every
    complete PDU in the buffer; their data are memoryviews into the buffer,
    valid until the next :meth:`get_buffer` or :meth:`feed`.

    Header validation: bytes 0-3 of the common header (type, flags, HLEN,
    PDO) decide every rule of :func:`check_header` but the PLEN ones, for
    given settings.  The first header with a new 4-byte key goes through
    :func:`check_header`; when valid, its key is cached with the PLEN range
    it allows, so the steady state costs one dict lookup and a range test.
    Anything else (a new key, a PLEN outside the range) goes through
    :func:`check_header` again, which names the lowest wrong field.  The
    cache is dropped whenever a setting changes.
    """

    def __init__(self, role: str, *, buffer_size: int = 1 << 20, max_data: int = 1 << 20):
        self.role = role
        self.connected = False
        self.hdgst = False
        self.ddgst = False
        self.pda = 0
        self.max_data = max_data
        self._hcache: dict = {}
        self._hsettings = None
        super().__init__(buffer_size, CH_SIZE)

    def decode(self) -> list:
        """Every complete PDU in the buffer, in order.  Raises PeerProtocolError."""
        return [_raw_to_record(t) for t in self.decode_raw()]

    def _header_entry(self, ch, key: int) -> tuple:
        """Validate a header the cache cannot vouch for; cache its key when valid.

        Entry: (ptype, flags, hlen, pdo, lowest PLEN, highest PLEN, what to
        subtract from PLEN to get the data length, header digest present,
        data digest present).
        """
        info = check_header(ch, role=self.role, connected=self.connected, hdgst=self.hdgst,
                            ddgst=self.ddgst, pda=self.pda, max_data=self.max_data)
        ptype, flags, hlen, pdo = int(info.ptype), info.flags, info.hlen, info.pdo
        hdr_end = hlen + (DIGEST_SIZE if flags & F_HDGST else 0)
        if ptype in (PduType.H2CTermReq, PduType.C2HTermReq):
            lo, hi, sub = hlen, hlen + TERM_MAX_DATA, hlen
        elif pdo == 0:  # no data: PLEN is the header (and its digest)
            lo = hi = sub = hdr_end
        else:
            sub = pdo + (DIGEST_SIZE if flags & F_DDGST else 0)
            # Only a C2HData may be empty (check_header).
            lo, hi = sub + (ptype != PduType.C2HData), sub + self.max_data
        entry = (ptype, flags, hlen, pdo, lo, hi, sub, bool(flags & F_HDGST),
                 bool(flags & F_DDGST))
        cache = self._hcache
        if len(cache) >= HEADER_CACHE_MAX:
            cache.clear()
        cache[key] = entry
        return entry

    def decode_raw(self) -> list:
        """Every complete PDU in the buffer as raw tuples (see RAW_*), in order.

        All PDUs of the buffer are validated before any is returned: a bad
        one raises (with ``offending`` set) and the queue pair acts on none
        of the batch, so every command it held stays outstanding for a
        replay.  Decoding stops after an IC PDU: the caller must apply the
        negotiated digests and PDA before the next PDU is validated.
        """
        settings = (self.role, self.connected, self.hdgst, self.ddgst, self.pda, self.max_data)
        if settings != self._hsettings:
            self._hcache = {}
            self._hsettings = settings
        lookup = self._hcache.get
        view = self._view
        # Slicing the buffer itself (an mmap) gives bytes in one step, where
        # bytes(view[a:b]) builds a view first (3x the cost, per SQE).
        buf = self._buf
        s = self._start
        end = self._end
        need = CH_SIZE
        out = []
        append = out.append
        unpack_ch = _CH_KEY.unpack_from
        unpack_data = _DATA_PSH.unpack_from
        unpack_u32 = _U32.unpack_from
        crc32c = _crc32c
        try:
            while end - s >= CH_SIZE:
                key, plen = unpack_ch(view, s)
                e = lookup(key)
                if e is None or not e[4] <= plen <= e[5]:
                    e = self._header_entry(view[s:s + CH_SIZE], key)
                if end - s < plen:
                    need = plen
                    break
                ptype, flags, hlen, pdo, _lo, _hi, sub, hd, dd = e
                if hd and unpack_u32(view, s + hlen)[0] != crc32c(view[s:s + hlen]):
                    raise PeerProtocolError(f"{PduType(ptype).name} header digest mismatch",
                                            FES.HEADER_DIGEST_ERROR, 0)
                nxt = s + plen
                # Literal PDU types (RAW_*), most frequent first: a global
                # lookup per comparison is measurable at this rate.
                if ptype == 7 or ptype == 6:  # C2HData, H2CData
                    cccid, ttag, datao, datal = unpack_data(view, s)
                    data_len = plen - sub
                    if datal != data_len:
                        raise PeerProtocolError(
                            f"{PduType(ptype).name} DATAL {datal} does not match its PLEN "
                            f"({data_len} bytes)", FES.INVALID_HEADER_FIELD, 16)
                    a = s + pdo
                    data = view[a:a + data_len]
                    bad = dd and unpack_u32(view, nxt - DIGEST_SIZE)[0] != crc32c(data)
                    if ptype == 7:
                        append((7, cccid, datao, data, flags, bad))
                    else:
                        append((6, cccid, ttag, datao, data, flags, bad))
                elif ptype == 4:  # CapsuleCmd
                    if pdo:
                        a = s + pdo
                        data = view[a:a + plen - sub]
                        bad = dd and unpack_u32(view, nxt - DIGEST_SIZE)[0] != crc32c(data)
                        append((4, buf[s + CH_SIZE:s + CMD_HLEN], data, bad))
                    else:
                        append((4, buf[s + CH_SIZE:s + CMD_HLEN], None, False))
                elif ptype == 5:  # CapsuleResp
                    append((5,) + _CQE_AT_8.unpack_from(view, s))
                elif ptype == 9:  # R2T
                    append((9,) + unpack_data(view, s))
                elif ptype in _IC_TYPES:
                    append((ptype, _decode_ic(PduType(ptype), view[s:nxt])))
                    s = nxt
                    break
                else:
                    fes, fei = _TERM_PSH.unpack_from(view, s)
                    append((ptype, TermReq(fes, fei, bytes(view[s + hlen:nxt]),
                                           ptype == PduType.H2CTermReq)))
                s = nxt
        except PeerProtocolError as err:
            # A TermReq echoes the offending header (NVMe/TCP 3.6.2.9).
            err.offending = bytes(view[s:min(end, s + TERM_MAX_DATA)])
            self._start = s
            raise
        self._start = s
        self._need = need
        return out


# --- hot-path encoders -----------------------------------------------------
#
# The queue pairs' transmit paths: one precompiled struct per PDU header with
# flags, PDO and PLEN already final, no record argument.  The record-taking
# encoders above stay for tests and other callers; tests check both give the
# same bytes.

# CH + the whole SQE: OPC, flags, CID, NSID, CDW2, CDW3, MPTR, SGL1 (address,
# length, 3 reserved bytes, type), CDW10-15.
CAPSULE_CMD = struct.Struct("<BBBBIBBHIIIQQI3xB6I")
# CH + CQE (the status field carries the phase bit in bit 0).
_RESP_PDU = struct.Struct("<BBBBIIIHHHH")
# The controller's data path packs these two straight into its send arena
# (``pack_into``): type, flags, HLEN, PDO, PLEN, then the PDU's own fields.
C2H_DATA_HEADER = _DATA_HDR
CAPSULE_RESP_PDU = _RESP_PDU


def cmd_framing(dlen: int, hdgst: bool, ddgst: bool, pda: int) -> tuple:
    """(flags, PDO, PLEN) of a CapsuleCmd with ``dlen`` bytes of in-capsule data."""
    hdr_end = CMD_HLEN + DIGEST_SIZE if hdgst else CMD_HLEN
    flags = F_HDGST if hdgst else 0
    if not dlen:
        return flags, 0, hdr_end
    pdo = _pad_to(pda, hdr_end) if pda else hdr_end
    if ddgst:
        return flags | F_DDGST, pdo, pdo + dlen + DIGEST_SIZE
    return flags, pdo, pdo + dlen


def put_framed(out: list, header, data, hdgst: bool, ddgst: bool, pdo: int) -> None:
    """Append a finished header (flags, PDO, PLEN set), its digests and data to ``out``."""
    out.append(header)
    if hdgst:
        out.append(_digest(header))
    if data is not None and len(data):
        hdr_end = len(header) + (DIGEST_SIZE if hdgst else 0)
        if pdo > hdr_end:
            out.append(bytes(pdo - hdr_end))
        out.append(data)
        if ddgst:
            out.append(_digest(data))


def put_data_pdu(out: list, ptype: int, flags: int, cccid: int, ttag: int, offset: int, data,
                 hdgst: bool, ddgst: bool, pda: int) -> None:
    """Append an H2CData/C2HData PDU (LAST_PDU/SUCCESS in ``flags``) to ``out``."""
    dlen = len(data)
    if not (hdgst or ddgst or pda) and dlen:
        out.append(_DATA_HDR.pack(ptype, flags, DATA_HLEN, DATA_HLEN, DATA_HLEN + dlen,
                                  cccid, ttag, offset, dlen))
        out.append(data)
        return
    hdr_end = DATA_HLEN + DIGEST_SIZE if hdgst else DATA_HLEN
    if hdgst:
        flags |= F_HDGST
    if dlen:
        pdo = _pad_to(pda, hdr_end)
        plen = pdo + dlen
        if ddgst:
            flags |= F_DDGST
            plen += DIGEST_SIZE
    else:
        pdo, plen = 0, hdr_end
    put_framed(out, _DATA_HDR.pack(ptype, flags, DATA_HLEN, pdo, plen, cccid, ttag, offset, dlen),
               data, hdgst, ddgst, pdo)


def put_capsule_resp(out: list, cid: int, status: int, dw0: int, dw1: int, sqhd: int,
                     sqid: int, hdgst: bool) -> None:
    """Append a CapsuleResp (``status`` is the 15-bit status field) to ``out``."""
    if hdgst:
        hdr = _RESP_PDU.pack(RAW_RESP, F_HDGST, RESP_HLEN, 0, RESP_HLEN + DIGEST_SIZE,
                             dw0, dw1, sqhd, sqid, cid, (status & 0x7FFF) << 1)
        out.append(hdr)
        out.append(_digest(hdr))
    else:
        out.append(_RESP_PDU.pack(RAW_RESP, 0, RESP_HLEN, 0, RESP_HLEN,
                                  dw0, dw1, sqhd, sqid, cid, (status & 0x7FFF) << 1))
