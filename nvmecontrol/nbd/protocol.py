"""The server side of the NBD protocol, without I/O.

Implements the fixed-newstyle handshake and the transmission-phase framing
of the NBD protocol (NetworkBlockDevice/nbd ``doc/proto.md``): bytes from
the client go in, bytes for the client come out; the caller owns the socket.

Handshake rules (proto.md "Fixed newstyle negotiation" and "Option types"):

* The server speaks first: NBDMAGIC, IHAVEOPT, handshake flags
  FIXED_NEWSTYLE|NO_ZEROES.  The client answers with 32 bits of flags; an
  unknown bit means the server MUST drop the connection.
* Then options, each ``IHAVEOPT, option, length, data``.  Every option but
  EXPORT_NAME gets one or more replies ``OPT_REPLY_MAGIC, option, type,
  length, data``; unknown options get ERR_UNSUP and negotiation goes on.
* Three ways out: EXPORT_NAME (old-style reply: size, flags, 124 zero bytes
  unless the client set NO_ZEROES; an unknown name can only be refused by
  hanging up), GO (INFO replies then ACK), or ABORT (ACK, then the client
  hangs up).  A client closing between options is a polite end as well.
* TLS is not offered (NOTLS mode): STARTTLS gets ERR_POLICY.
* No metadata context is offered: LIST/SET_META_CONTEXT succeed with zero
  contexts, so a client never sends BLOCK_STATUS.
* Block sizes are always advertised in GO/INFO, never required
  (ERR_BLOCK_SIZE_REQD is not sent): a client that ignores them gets EINVAL
  for misaligned requests from the server, as "Size constraints" allows.

Transmission (proto.md "Transmission"): :class:`RequestDecoder` cuts the
request stream, the ``simple_*``/``structured_*`` functions encode replies.
Read data is never copied into a reply: the caller sends it as a separate
buffer after the header.

Values live in two styles.  Handshake values are enums (``Opt``, ``Rep``,
``Info``, ``HandshakeFlag``, ``ClientFlag``, ``TransmissionFlag``); values
used per request are plain ints (``CMD_*``, ``CMD_FLAG_*``, ``REPLY_*``,
``EPERM``...), so the hot path never builds an enum.
"""

from __future__ import annotations

import errno
import struct
from enum import IntEnum, IntFlag
from typing import NamedTuple

from nvmecontrol.errors import LocalProtocolError, PeerProtocolError
from nvmecontrol.recvbuf import ReceiveBuffer

# --- magic numbers -----------------------------------------------------------

NBDMAGIC = 0x4E42444D41474943  # "NBDMAGIC"
IHAVEOPT = 0x49484156454F5054  # "IHAVEOPT"
OPT_REPLY_MAGIC = 0x0003E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCTURED_REPLY_MAGIC = 0x668E33EF
# Reserved for the experimental EXTENDED_HEADERS extension; only recognised
# to name the mistake when a client uses it without negotiating it.
EXTENDED_REQUEST_MAGIC = 0x21E41C71


# --- handshake values ----------------------------------------------------------

class HandshakeFlag(IntFlag):
    FIXED_NEWSTYLE = 1 << 0
    NO_ZEROES = 1 << 1


class ClientFlag(IntFlag):
    FIXED_NEWSTYLE = 1 << 0
    NO_ZEROES = 1 << 1


class TransmissionFlag(IntFlag):
    HAS_FLAGS = 1 << 0
    READ_ONLY = 1 << 1
    SEND_FLUSH = 1 << 2
    SEND_FUA = 1 << 3
    ROTATIONAL = 1 << 4
    SEND_TRIM = 1 << 5
    SEND_WRITE_ZEROES = 1 << 6
    SEND_DF = 1 << 7
    CAN_MULTI_CONN = 1 << 8
    SEND_RESIZE = 1 << 9
    SEND_CACHE = 1 << 10
    SEND_FAST_ZERO = 1 << 11


class Opt(IntEnum):
    EXPORT_NAME = 1
    ABORT = 2
    LIST = 3
    PEEK_EXPORT = 4  # withdrawn
    STARTTLS = 5
    INFO = 6
    GO = 7
    STRUCTURED_REPLY = 8
    LIST_META_CONTEXT = 9
    SET_META_CONTEXT = 10
    EXTENDED_HEADERS = 11


_ERR = 1 << 31  # error replies have bit 31 set


class Rep(IntEnum):
    ACK = 1
    SERVER = 2
    INFO = 3
    META_CONTEXT = 4
    ERR_UNSUP = _ERR + 1
    ERR_POLICY = _ERR + 2
    ERR_INVALID = _ERR + 3
    ERR_PLATFORM = _ERR + 4
    ERR_TLS_REQD = _ERR + 5
    ERR_UNKNOWN = _ERR + 6
    ERR_SHUTDOWN = _ERR + 7
    ERR_BLOCK_SIZE_REQD = _ERR + 8
    ERR_TOO_BIG = _ERR + 9
    ERR_EXT_HEADER_REQD = _ERR + 10


class Info(IntEnum):
    EXPORT = 0
    NAME = 1
    DESCRIPTION = 2
    BLOCK_SIZE = 3


# --- transmission values (plain ints: used per request) ---------------------------

CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2
CMD_FLUSH = 3
CMD_TRIM = 4
CMD_CACHE = 5
CMD_WRITE_ZEROES = 6
CMD_BLOCK_STATUS = 7
CMD_RESIZE = 8  # experimental RESIZE extension; never advertised here
CMD_NAMES = {CMD_READ: "READ", CMD_WRITE: "WRITE", CMD_DISC: "DISC", CMD_FLUSH: "FLUSH",
             CMD_TRIM: "TRIM", CMD_CACHE: "CACHE", CMD_WRITE_ZEROES: "WRITE_ZEROES",
             CMD_BLOCK_STATUS: "BLOCK_STATUS", CMD_RESIZE: "RESIZE"}

CMD_FLAG_FUA = 1 << 0
CMD_FLAG_NO_HOLE = 1 << 1
CMD_FLAG_DF = 1 << 2
CMD_FLAG_REQ_ONE = 1 << 3
CMD_FLAG_FAST_ZERO = 1 << 4

REPLY_FLAG_DONE = 1 << 0

REPLY_TYPE_NONE = 0
REPLY_TYPE_OFFSET_DATA = 1
REPLY_TYPE_OFFSET_HOLE = 2
REPLY_TYPE_BLOCK_STATUS = 5
REPLY_TYPE_ERROR = (1 << 15) + 1
REPLY_TYPE_ERROR_OFFSET = (1 << 15) + 2

# Error values of the reply "error" field (proto.md "Error values"): fixed
# numbers, not the local errno (FreeBSD's ENOTSUP is 45); see errno_for().
EPERM = 1
EIO = 5
ENOMEM = 12
EINVAL = 22
ENOSPC = 28
EOVERFLOW = 75
ENOTSUP = 95
ESHUTDOWN = 108


# --- limits ---------------------------------------------------------------------

# Strings (export names, descriptions, error messages) MUST NOT exceed 4096
# bytes (proto.md "Conventions").
MAX_STRING = 4096
# The largest legitimate option is GO/INFO with a 4096-byte name, or a meta
# context request with a few maximal queries; anything longer is refused
# before it is buffered (a hostile length would otherwise pin memory).
MAX_OPTION_LENGTH = 64 * 1024
# A client looping over options forever is a denial of service, which the
# spec lets the server end with a hard disconnect.  nbdinfo --list spends a
# few options per export, hence the allowance per export.
MAX_OPTIONS = 32
MAX_OPTIONS_PER_EXPORT = 8
# "Size constraints": the default maximum payload, and the bound on a
# minimum block size.
DEFAULT_MAX_PAYLOAD = 32 * 1024 * 1024
MAX_MIN_BLOCK = 64 * 1024
# The length field of an OFFSET_DATA chunk counts the 8-byte offset too.
MAX_CHUNK_DATA = 0xFFFFFFFF - 8

# A plain int: ~ on an IntFlag complements within the defined bits only,
# which would hide every unknown bit.
_KNOWN_CLIENT_FLAGS = int(ClientFlag.FIXED_NEWSTYLE | ClientFlag.NO_ZEROES)


class NbdProtocolError(PeerProtocolError):
    """The NBD client broke the protocol; the connection must be dropped."""


# --- exports -------------------------------------------------------------------

class Export(NamedTuple):
    """One export as the handshake presents it (sizes in bytes)."""

    name: str
    size: int
    read_only: bool = False
    description: str = ""
    min_block: int = 1
    preferred_block: int = 4096
    max_block: int = DEFAULT_MAX_PAYLOAD
    can_trim: bool = True
    can_write_zeroes: bool = True
    can_flush: bool = True
    can_fua: bool = True
    multi_conn: bool = True

    def transmission_flags(self) -> int:
        """The 16-bit transmission flags sent in INFO_EXPORT / after EXPORT_NAME."""
        f = TransmissionFlag.HAS_FLAGS
        if self.read_only:
            # Writes fail with EPERM anyway; advertising write-only
            # commands would only invite them.
            f |= TransmissionFlag.READ_ONLY
        else:
            if self.can_trim:
                f |= TransmissionFlag.SEND_TRIM
            if self.can_write_zeroes:
                f |= TransmissionFlag.SEND_WRITE_ZEROES
            if self.can_fua:
                f |= TransmissionFlag.SEND_FUA
        if self.can_flush:
            f |= TransmissionFlag.SEND_FLUSH
        if self.multi_conn:
            f |= TransmissionFlag.CAN_MULTI_CONN
        return int(f)

    def validate(self) -> None:
        """Raise LocalProtocolError if advertising this export would break the spec."""
        def bad(why: str):
            return LocalProtocolError(f"NBD export {self.name!r}: {why}")

        for what, text in (("name", self.name), ("description", self.description)):
            if len(text.encode()) > MAX_STRING or "\0" in text:
                raise bad(f"{what} must be at most {MAX_STRING} bytes without NUL")
        if not 0 <= self.size < 1 << 64:
            raise bad(f"size {self.size} does not fit 64 bits")
        # proto.md "Size constraints".
        mn, pref, mx = self.min_block, self.preferred_block, self.max_block
        if not (_pow2(mn) and mn <= MAX_MIN_BLOCK):
            raise bad(f"minimum block size {mn} is not a power of 2 up to {MAX_MIN_BLOCK}")
        if not (_pow2(pref) and pref >= max(mn, 512)):
            raise bad(f"preferred block size {pref} is not a power of 2 >= max(minimum, 512)")
        if not pref <= mx <= 0xFFFFFFFF:
            raise bad(f"maximum payload {mx} is below the preferred block size or above 32 bits")
        # A SHOULD in the spec, but qemu refuses exports that break it.
        if self.size % mn:
            raise bad(f"size {self.size} is not a multiple of the minimum block size {mn}")


def _pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


# --- handshake -----------------------------------------------------------------

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_GREETING = struct.pack(">QQH", NBDMAGIC, IHAVEOPT,
                        HandshakeFlag.FIXED_NEWSTYLE | HandshakeFlag.NO_ZEROES)
_OPTION_HEADER = struct.Struct(">QII")
_OPTION_REPLY = struct.Struct(">QIII")
_EXPORT_NAME_REPLY = struct.Struct(">QH")
_INFO_EXPORT = struct.Struct(">HQH")
_INFO_BLOCK_SIZE = struct.Struct(">HIII")
_ZEROES = bytes(124)

# Handshake states: what the next bytes from the client are.
_CLIENT_FLAGS, _OPTION, _OPTION_DATA, _DONE = "client flags", "option", "option data", "done"


def _decode_string(raw: bytes) -> str | None:
    """A protocol string, or None if it is not one (bad UTF-8, NUL, too long)."""
    if len(raw) > MAX_STRING or b"\0" in raw:
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None


def _reply(opt: int, rep: int, payload: bytes = b"") -> bytes:
    return _OPTION_REPLY.pack(OPT_REPLY_MAGIC, opt, rep, len(payload)) + payload


class Handshake:
    """Fixed-newstyle negotiation for one connection, server side.

    ``exports`` maps names to exports; ``default`` names the export served
    for the empty name.  Send everything in :attr:`outgoing` (starting with
    the greeting), :meth:`feed` what the client sends (``b""`` for end of
    file) and repeat until :attr:`done`.  Then :attr:`export` is the chosen
    export, or None with :attr:`aborted` set when the client left; bytes
    already received past the handshake are in :attr:`leftover`.

    ``offer_structured=False`` refuses STRUCTURED_REPLY (ERR_UNSUP), which
    holds clients to simple replies.
    """

    def __init__(self, exports: dict[str, Export], default: str | None = None, *,
                 offer_structured: bool = True):
        for name, export in exports.items():
            if export.name != name:
                raise LocalProtocolError(f"NBD export {export.name!r} listed under {name!r}")
            export.validate()
        if default is not None and default not in exports:
            raise LocalProtocolError(f"default NBD export {default!r} is not an export")
        self.exports = exports
        self.default = default
        self.offer_structured = offer_structured
        self.outgoing: list[bytes] = [_GREETING]
        self.done = False
        self.aborted = False
        self.export: Export | None = None
        self.structured_replies = False
        self.client_flags = 0
        self.options: list[int] = []  # option codes received, in order (for logs)
        self.leftover = b""
        self._buf = bytearray()
        self._state = _CLIENT_FLAGS
        self._need = 4
        self._opt = 0
        self._budget = MAX_OPTIONS + MAX_OPTIONS_PER_EXPORT * len(exports)

    def take_outgoing(self) -> list[bytes]:
        out, self.outgoing = self.outgoing, []
        return out

    def feed(self, data) -> None:
        """Consume client bytes in any chunking; ``b""`` means the client closed."""
        if self.done:
            self.leftover += bytes(data)
            return
        if not data:
            self._closed()
            return
        self._buf += data
        while not self.done and len(self._buf) >= self._need:
            chunk = bytes(self._buf[:self._need])
            del self._buf[:self._need]
            self._STEPS[self._state](self, chunk)
        if self.done:
            self.leftover = bytes(self._buf)
            self._buf.clear()

    def _closed(self) -> None:
        if self._buf or self._state == _OPTION_DATA:
            raise NbdProtocolError(f"NBD client closed the connection in the middle of the "
                                   f"{self._state}")
        self._finish(None)

    def _finish(self, export: Export | None) -> None:
        self.done = True
        self._state = _DONE
        self.export = export
        self.aborted = export is None

    # -- steps, one per state ---------------------------------------------------

    def _on_client_flags(self, chunk: bytes) -> None:
        (flags,) = _U32.unpack(chunk)
        if flags & ~_KNOWN_CLIENT_FLAGS:
            # "the server MUST drop the TCP connection if the client sets an
            # unknown flag" (proto.md "Client flags").
            raise NbdProtocolError(f"NBD client sent unknown client flags 0x{flags:08x}")
        self.client_flags = flags
        self._state, self._need = _OPTION, _OPTION_HEADER.size

    def _on_option(self, chunk: bytes) -> None:
        magic, opt, length = _OPTION_HEADER.unpack(chunk)
        if magic != IHAVEOPT:
            raise NbdProtocolError(f"NBD client sent bad option magic 0x{magic:016x}")
        if length > MAX_OPTION_LENGTH:
            raise NbdProtocolError(f"NBD client sent option {_opt_name(opt)} with "
                                   f"{length} bytes of data (limit {MAX_OPTION_LENGTH})")
        self._budget -= 1
        if self._budget < 0:
            raise NbdProtocolError(f"NBD client sent more than {len(self.options)} options "
                                   f"without choosing an export")
        self.options.append(opt)
        if length:
            self._opt = opt
            self._state, self._need = _OPTION_DATA, length
        else:
            self._option(opt, b"")

    def _on_option_data(self, chunk: bytes) -> None:
        self._state, self._need = _OPTION, _OPTION_HEADER.size
        self._option(self._opt, chunk)

    _STEPS = {_CLIENT_FLAGS: _on_client_flags, _OPTION: _on_option,
              _OPTION_DATA: _on_option_data}

    # -- options ----------------------------------------------------------------

    def _option(self, opt: int, data: bytes) -> None:
        self._OPTIONS.get(opt, Handshake._opt_unsupported)(self, opt, data)

    def _send(self, opt: int, rep: int, payload: bytes = b"") -> None:
        self.outgoing.append(_reply(opt, rep, payload))

    def _error(self, opt: int, rep: int, message: str) -> None:
        # Error replies may carry a message for a human (proto.md "Option reply types").
        self._send(opt, rep, message.encode()[:MAX_STRING])

    def _lookup(self, name: str) -> Export | None:
        export = self.exports.get(name)
        if export is None and name == "" and self.default is not None:
            export = self.exports[self.default]
        return export

    def _opt_unsupported(self, opt: int, data: bytes) -> None:
        self._error(opt, Rep.ERR_UNSUP, f"option {_opt_name(opt)} is not supported")

    def _opt_export_name(self, opt: int, data: bytes) -> None:
        name = _decode_string(data)
        export = self._lookup(name) if name is not None else None
        if export is None:
            # No error reply exists for EXPORT_NAME: the server MUST
            # terminate the session.
            shown = repr(name) if name is not None else f"{data[:64]!r} (not a string)"
            raise NbdProtocolError(f"NBD client chose unknown export {shown} "
                                   f"with NBD_OPT_EXPORT_NAME")
        reply = _EXPORT_NAME_REPLY.pack(export.size, export.transmission_flags())
        if not self.client_flags & ClientFlag.NO_ZEROES:
            reply += _ZEROES
        self.outgoing.append(reply)
        self._finish(export)

    def _opt_abort(self, opt: int, data: bytes) -> None:
        # Data is ignored rather than refused, as the spec asks.
        self._send(opt, Rep.ACK)
        self._finish(None)

    def _opt_list(self, opt: int, data: bytes) -> None:
        if data:
            self._error(opt, Rep.ERR_INVALID, "NBD_OPT_LIST carries no data")
            return
        for export in self.exports.values():
            name = export.name.encode()
            self._send(opt, Rep.SERVER, _U32.pack(len(name)) + name + export.description.encode())
        self._send(opt, Rep.ACK)

    def _opt_starttls(self, opt: int, data: bytes) -> None:
        # NOTLS mode: ERR_POLICY, never ERR_TLS_REQD (proto.md "NOTLS mode").
        self._error(opt, Rep.ERR_POLICY, "TLS is not offered by this server")

    def _opt_info_go(self, opt: int, data: bytes) -> None:
        # name length (32), name, request count (16), requests (16 each)
        size = len(data)
        nlen = _U32.unpack_from(data)[0] if size >= 6 else size
        if nlen > size - 6:
            self._error(opt, Rep.ERR_INVALID, f"{_opt_name(opt)} data is truncated")
            return
        (count,) = _U16.unpack_from(data, 4 + nlen)
        if size != 6 + nlen + 2 * count:
            self._error(opt, Rep.ERR_INVALID,
                        f"{_opt_name(opt)} lists {count} requests in {size} bytes")
            return
        name = _decode_string(data[4:4 + nlen])
        if name is None:
            self._error(opt, Rep.ERR_INVALID, "export name is not a valid string")
            return
        export = self._lookup(name)
        if export is None:
            self._error(opt, Rep.ERR_UNKNOWN, f"no export named {name!r}")
            return
        wanted = set(struct.unpack_from(f">{count}H", data, 6 + nlen))
        self._send(opt, Rep.INFO, _INFO_EXPORT.pack(Info.EXPORT, export.size,
                                                    export.transmission_flags()))
        if Info.NAME in wanted:
            self._send(opt, Rep.INFO, _U16.pack(Info.NAME) + export.name.encode())
        if Info.DESCRIPTION in wanted and export.description:
            self._send(opt, Rep.INFO, _U16.pack(Info.DESCRIPTION) + export.description.encode())
        # Sent unasked too: the spec allows unrequested information, and a
        # client that did not ask is still told what the server enforces.
        self._send(opt, Rep.INFO, _INFO_BLOCK_SIZE.pack(
            Info.BLOCK_SIZE, export.min_block, export.preferred_block, export.max_block))
        self._send(opt, Rep.ACK)
        if opt == Opt.GO:
            self._finish(export)

    def _opt_structured_reply(self, opt: int, data: bytes) -> None:
        if not self.offer_structured:
            self._opt_unsupported(opt, data)
        elif data:
            self._error(opt, Rep.ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY carries no data")
        else:
            self.structured_replies = True
            self._send(opt, Rep.ACK)

    def _opt_meta_context(self, opt: int, data: bytes) -> None:
        # name length (32), name, query count (32), queries (length (32), string)
        size = len(data)
        nlen = _U32.unpack_from(data)[0] if size >= 8 else size
        if nlen > size - 8:
            self._error(opt, Rep.ERR_INVALID, f"{_opt_name(opt)} data is truncated")
            return
        (count,) = _U32.unpack_from(data, 4 + nlen)
        pos = 8 + nlen
        for _ in range(count):
            qlen = _U32.unpack_from(data, pos)[0] if pos + 4 <= size else size
            pos += 4 + qlen
            if pos > size:
                break
        if pos != size:
            self._error(opt, Rep.ERR_INVALID, f"{_opt_name(opt)} queries do not fill its data")
            return
        if opt == Opt.SET_META_CONTEXT and not self.structured_replies:
            # "MUST NOT be requested unless structured replies have been
            # negotiated first ... server SHOULD send NBD_REP_ERR_INVALID".
            self._error(opt, Rep.ERR_INVALID, "structured replies were not negotiated")
            return
        name = _decode_string(data[4:4 + nlen])
        if name is None or self._lookup(name) is None:
            self._error(opt, Rep.ERR_UNKNOWN, f"no export named {data[4:4 + min(nlen, 64)]!r}")
            return
        # No context is offered: ACK alone means "none matched".
        self._send(opt, Rep.ACK)

    _OPTIONS = {
        Opt.EXPORT_NAME: _opt_export_name,
        Opt.ABORT: _opt_abort,
        Opt.LIST: _opt_list,
        Opt.STARTTLS: _opt_starttls,
        Opt.INFO: _opt_info_go,
        Opt.GO: _opt_info_go,
        Opt.STRUCTURED_REPLY: _opt_structured_reply,
        Opt.LIST_META_CONTEXT: _opt_meta_context,
        Opt.SET_META_CONTEXT: _opt_meta_context,
    }


def _opt_name(opt: int) -> str:
    try:
        return f"NBD_OPT_{Opt(opt).name}"
    except ValueError:
        return f"option {opt}"


# --- transmission: requests --------------------------------------------------------

class Request(NamedTuple):
    flags: int
    type: int
    cookie: int  # the client's 64-bit handle, echoed in the reply
    offset: int
    length: int
    data: memoryview | None = None  # WRITE payload, a view into the decoder's buffer


_REQUEST = struct.Struct(">IHHQQI")
REQUEST_SIZE = _REQUEST.size  # 28


class RequestDecoder(ReceiveBuffer):
    """Cuts the transmission-phase byte stream into requests.

    Fill the buffer with ``recv_into(get_buffer())`` then
    ``buffer_updated(n)`` (or :meth:`feed` a copy), then :meth:`decode`.
    WRITE payloads are memoryviews into the buffer, valid until the next
    :meth:`get_buffer` or :meth:`feed`.  Only what would desynchronise the
    stream is refused here (bad magic, unknown type, a WRITE longer than
    ``max_payload``); ranges, alignment and flags are the server's to check
    and answer with an error reply.  Decoding stops after DISC.
    """

    def __init__(self, *, max_payload: int = DEFAULT_MAX_PAYLOAD, buffer_size: int = 1 << 20):
        self.max_payload = max_payload
        super().__init__(buffer_size, REQUEST_SIZE)
        self.disconnected = False  # DISC received

    def decode(self) -> list[Request]:
        """Every complete request in the buffer, in order.  Raises NbdProtocolError."""
        out: list[Request] = []
        if self.disconnected:
            return out
        buf, view = self._buf, self._view
        start, end = self._start, self._end
        unpack, new, append = _REQUEST.unpack_from, tuple.__new__, out.append
        self._need = REQUEST_SIZE
        while end - start >= REQUEST_SIZE:
            magic, flags, typ, cookie, offset, length = unpack(buf, start)
            if magic != REQUEST_MAGIC:
                self._start = start
                raise _bad_request(magic, typ)
            if typ == CMD_WRITE:
                if length > self.max_payload:
                    self._start = start
                    raise NbdProtocolError(f"NBD WRITE of {length} bytes exceeds the "
                                           f"{self.max_payload}-byte payload limit")
                total = REQUEST_SIZE + length
                if end - start < total:
                    self._need = total
                    break
                append(new(Request, (flags, typ, cookie, offset, length,
                                     view[start + REQUEST_SIZE:start + total])))
                start += total
                continue
            if typ > CMD_RESIZE:
                self._start = start
                # Without extended headers an unknown command's payload
                # length is unknowable, so the stream cannot be resynchronised.
                raise NbdProtocolError(f"NBD client sent unknown command type {typ}")
            append(new(Request, (flags, typ, cookie, offset, length, None)))
            start += REQUEST_SIZE
            if typ == CMD_DISC:
                self.disconnected = True
                break
        self._start = start
        return out


def _bad_request(magic: int, typ: int) -> NbdProtocolError:
    if magic == EXTENDED_REQUEST_MAGIC:
        return NbdProtocolError("NBD client sent an extended-header request "
                                "but extended headers were not negotiated")
    return NbdProtocolError(f"NBD client sent bad request magic 0x{magic:08x}")


# --- transmission: replies ---------------------------------------------------------

_SIMPLE = SIMPLE_REPLY = struct.Struct(">IIQ")  # magic, error, cookie
_CHUNK = struct.Struct(">IHHQI")
# magic, flags, type, cookie, length, offset: an OFFSET_DATA chunk's header.
_CHUNK_DATA = CHUNK_DATA_HEADER = struct.Struct(">IHHQIQ")
_CHUNK_ERROR = struct.Struct(">IHHQIIH")
_NONE_DONE = (STRUCTURED_REPLY_MAGIC, REPLY_FLAG_DONE, REPLY_TYPE_NONE)


def simple_reply(cookie: int, error: int = 0) -> bytes:
    """A 16-byte simple reply; a successful READ's data follows as its own buffer."""
    return _SIMPLE.pack(SIMPLE_REPLY_MAGIC, error, cookie)


def structured_data_header(cookie: int, offset: int, length: int, done: bool = True) -> bytes:
    """OFFSET_DATA chunk header and offset (28 bytes); ``length`` data bytes follow."""
    if not 0 < length <= MAX_CHUNK_DATA:
        # OFFSET_DATA describes at least one byte; an empty read is a NONE.
        raise LocalProtocolError(f"OFFSET_DATA chunk of {length} bytes")
    return _CHUNK_DATA.pack(STRUCTURED_REPLY_MAGIC, REPLY_FLAG_DONE if done else 0,
                            REPLY_TYPE_OFFSET_DATA, cookie, length + 8, offset)


def structured_none(cookie: int) -> bytes:
    """A NONE chunk with DONE: success without data (20 bytes)."""
    return _CHUNK.pack(*_NONE_DONE, cookie, 0)


def _error_chunk(rtype: int, cookie: int, error: int, message: str, done: bool,
                 tail: bytes = b"") -> bytes:
    if not error:
        raise LocalProtocolError("a structured error chunk needs a nonzero error")
    msg = message.encode()[:MAX_STRING]
    return _CHUNK_ERROR.pack(STRUCTURED_REPLY_MAGIC, REPLY_FLAG_DONE if done else 0, rtype,
                             cookie, 6 + len(msg) + len(tail), error, len(msg)) + msg + tail


def structured_error(cookie: int, error: int, message: str = "", done: bool = True) -> bytes:
    """An ERROR chunk: ``error`` (an NBD error value) and a message for a human."""
    return _error_chunk(REPLY_TYPE_ERROR, cookie, error, message, done)


def structured_error_offset(cookie: int, error: int, offset: int, message: str = "",
                            done: bool = True) -> bytes:
    """An ERROR_OFFSET chunk: the request failed at ``offset`` (within its range)."""
    return _error_chunk(REPLY_TYPE_ERROR_OFFSET, cookie, error, message, done,
                        struct.pack(">Q", offset))


_ERRNO_MAP = {
    errno.EPERM: EPERM, errno.EACCES: EPERM, errno.EROFS: EPERM,
    errno.EIO: EIO,
    errno.ENOMEM: ENOMEM,
    errno.EINVAL: EINVAL,
    # "SHOULD map the EDQUOT and EFBIG errors to NBD_ENOSPC".
    errno.ENOSPC: ENOSPC, errno.EDQUOT: ENOSPC, errno.EFBIG: ENOSPC,
    errno.EOVERFLOW: EOVERFLOW,
    errno.ENOTSUP: ENOTSUP, errno.EOPNOTSUPP: ENOTSUP,
    errno.ESHUTDOWN: ESHUTDOWN,
}


def errno_for(os_errno: int) -> int:
    """The NBD error value for a local errno (EIO for anything without a match)."""
    if not os_errno:
        return 0
    return _ERRNO_MAP.get(os_errno, EIO)
