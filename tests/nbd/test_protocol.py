"""NBD server protocol: golden bytes, chunking, hostile input.

Golden bytes are written from NetworkBlockDevice/nbd ``doc/proto.md`` with
the spec's numbers (never the module's constants), all big-endian:

    greeting      "NBDMAGIC" "IHAVEOPT" handshake flags (16)
    option        "IHAVEOPT" option (32) length (32) data
    option reply  0x0003e889045565a9 option (32) type (32) length (32) data
    request       0x25609513 flags (16) type (16) cookie (64) offset (64) length (32) [data]
    simple reply  0x67446698 error (32) cookie (64)
    chunk         0x668e33ef flags (16) type (16) cookie (64) length (32) payload
"""

from __future__ import annotations

import errno
import random
import struct

import pytest

from nvmecontrol.errors import LocalProtocolError, PeerProtocolError
from nvmecontrol.nbd import protocol as P

MiB = 1 << 20
REPLY_MAGIC = bytes.fromhex("0003e889045565a9")
GREETING = b"NBDMAGIC" + b"IHAVEOPT" + b"\x00\x03"  # FIXED_NEWSTYLE | NO_ZEROES
# HAS_FLAGS 0x1 | SEND_FLUSH 0x4 | SEND_FUA 0x8 | SEND_TRIM 0x20 | SEND_WRITE_ZEROES 0x40
# | CAN_MULTI_CONN 0x100
RW_FLAGS = 0x016D
# HAS_FLAGS | READ_ONLY 0x2 | SEND_FLUSH | CAN_MULTI_CONN
RO_FLAGS = 0x0107

DISK = P.Export("disk", 16 * MiB, description="a RAM disk", min_block=512)
RO = P.Export("ro", 1 * MiB, read_only=True)
EXPORTS = {"disk": DISK, "ro": RO}

ERR_UNSUP, ERR_POLICY, ERR_INVALID, ERR_UNKNOWN = (0x80000001, 0x80000002, 0x80000003,
                                                   0x80000006)


def opt(code: int, data: bytes = b"") -> bytes:
    return b"IHAVEOPT" + struct.pack(">II", code, len(data)) + data


def rep(code: int, rtype: int, data: bytes = b"") -> bytes:
    return REPLY_MAGIC + struct.pack(">III", code, rtype, len(data)) + data


def go_data(name: str, *infos: int) -> bytes:
    n = name.encode()
    return struct.pack(">I", len(n)) + n + struct.pack(f">H{len(infos)}H", len(infos), *infos)


def meta_data(name: str, *queries: str) -> bytes:
    n = name.encode()
    out = struct.pack(">I", len(n)) + n + struct.pack(">I", len(queries))
    for q in queries:
        out += struct.pack(">I", len(q)) + q.encode()
    return out


def info_export(size: int, flags: int) -> bytes:
    return b"\x00\x00" + struct.pack(">QH", size, flags)


def info_block(mn: int, pref: int, mx: int) -> bytes:
    return b"\x00\x03" + struct.pack(">III", mn, pref, mx)


def handshake(flags: int = 3, **kw) -> P.Handshake:
    """A handshake past the greeting and the client flags."""
    hs = P.Handshake(EXPORTS, kw.pop("default", "disk"), **kw)
    assert b"".join(hs.take_outgoing()) == GREETING
    hs.feed(struct.pack(">I", flags))
    assert hs.take_outgoing() == []
    return hs


def replies(hs: P.Handshake, data: bytes) -> bytes:
    hs.feed(data)
    return b"".join(hs.take_outgoing())


# --- constants -----------------------------------------------------------------------

def test_constants_match_the_spec():
    assert P.NBDMAGIC.to_bytes(8, "big") == b"NBDMAGIC"
    assert P.IHAVEOPT.to_bytes(8, "big") == b"IHAVEOPT"
    assert P.OPT_REPLY_MAGIC.to_bytes(8, "big") == REPLY_MAGIC
    assert (P.REQUEST_MAGIC, P.SIMPLE_REPLY_MAGIC, P.STRUCTURED_REPLY_MAGIC) == (
        0x25609513, 0x67446698, 0x668E33EF)
    assert [int(o) for o in (P.Opt.EXPORT_NAME, P.Opt.ABORT, P.Opt.LIST, P.Opt.STARTTLS,
                             P.Opt.INFO, P.Opt.GO, P.Opt.STRUCTURED_REPLY,
                             P.Opt.LIST_META_CONTEXT, P.Opt.SET_META_CONTEXT,
                             P.Opt.EXTENDED_HEADERS)] == [1, 2, 3, 5, 6, 7, 8, 9, 10, 11]
    assert [int(r) for r in (P.Rep.ACK, P.Rep.SERVER, P.Rep.INFO)] == [1, 2, 3]
    assert [int(r) - (1 << 31) for r in (
        P.Rep.ERR_UNSUP, P.Rep.ERR_POLICY, P.Rep.ERR_INVALID, P.Rep.ERR_PLATFORM,
        P.Rep.ERR_TLS_REQD, P.Rep.ERR_UNKNOWN, P.Rep.ERR_SHUTDOWN,
        P.Rep.ERR_BLOCK_SIZE_REQD, P.Rep.ERR_TOO_BIG)] == list(range(1, 10))
    assert [int(i) for i in P.Info] == [0, 1, 2, 3]
    T = P.TransmissionFlag
    assert [int(f).bit_length() - 1 for f in (
        T.HAS_FLAGS, T.READ_ONLY, T.SEND_FLUSH, T.SEND_FUA, T.ROTATIONAL, T.SEND_TRIM,
        T.SEND_WRITE_ZEROES, T.SEND_DF, T.CAN_MULTI_CONN, T.SEND_RESIZE, T.SEND_CACHE,
        T.SEND_FAST_ZERO)] == list(range(12))
    assert (P.CMD_READ, P.CMD_WRITE, P.CMD_DISC, P.CMD_FLUSH, P.CMD_TRIM, P.CMD_CACHE,
            P.CMD_WRITE_ZEROES, P.CMD_BLOCK_STATUS, P.CMD_RESIZE) == tuple(range(9))
    assert (P.CMD_FLAG_FUA, P.CMD_FLAG_NO_HOLE, P.CMD_FLAG_DF, P.CMD_FLAG_REQ_ONE,
            P.CMD_FLAG_FAST_ZERO) == (1, 2, 4, 8, 16)
    assert (P.REPLY_TYPE_NONE, P.REPLY_TYPE_OFFSET_DATA, P.REPLY_TYPE_OFFSET_HOLE,
            P.REPLY_TYPE_BLOCK_STATUS, P.REPLY_TYPE_ERROR, P.REPLY_TYPE_ERROR_OFFSET) == (
        0, 1, 2, 5, 0x8001, 0x8002)
    assert (P.EPERM, P.EIO, P.ENOMEM, P.EINVAL, P.ENOSPC, P.EOVERFLOW, P.ENOTSUP,
            P.ESHUTDOWN) == (1, 5, 12, 22, 28, 75, 95, 108)


def test_nbd_protocol_error_is_a_peer_protocol_error():
    assert issubclass(P.NbdProtocolError, PeerProtocolError)


# --- exports -------------------------------------------------------------------------

def test_transmission_flags():
    assert DISK.transmission_flags() == RW_FLAGS
    assert RO.transmission_flags() == RO_FLAGS
    bare = P.Export("x", 4096, can_trim=False, can_write_zeroes=False, can_flush=False,
                    can_fua=False, multi_conn=False)
    assert bare.transmission_flags() == 0x0001


@pytest.mark.parametrize("bad", [
    dict(min_block=3),
    dict(min_block=128 * 1024, preferred_block=128 * 1024),
    dict(preferred_block=256),
    dict(min_block=4096, preferred_block=2048),
    dict(max_block=2048),
    dict(max_block=1 << 32),
    dict(size=4097, min_block=512),
    dict(size=1 << 64),
    dict(description="x" * 4097),
])
def test_export_validation(bad):
    export = P.Export("x", 1 * MiB)._replace(**bad)
    with pytest.raises(LocalProtocolError):
        P.Handshake({"x": export})


def test_handshake_configuration_errors():
    with pytest.raises(LocalProtocolError, match="listed under"):
        P.Handshake({"y": DISK})
    with pytest.raises(LocalProtocolError, match="default"):
        P.Handshake(EXPORTS, "missing")
    with pytest.raises(LocalProtocolError):
        P.Handshake({"a\0b": P.Export("a\0b", 512)})


# --- greeting and client flags ------------------------------------------------------

def test_greeting_bytes():
    hs = P.Handshake(EXPORTS, "disk")
    assert hs.outgoing == [bytes.fromhex("4e42444d41474943" "49484156454f5054" "0003")]
    assert not hs.done


@pytest.mark.parametrize("flags", [0, 1, 2, 3])
def test_known_client_flags(flags):
    hs = handshake(flags)
    assert hs.client_flags == flags and not hs.done


@pytest.mark.parametrize("flags", [4, 0x80000000, 0xFFFFFFFF])
def test_unknown_client_flags_drop_the_connection(flags):
    hs = P.Handshake(EXPORTS, "disk")
    with pytest.raises(P.NbdProtocolError, match="unknown client flags"):
        hs.feed(struct.pack(">I", flags))


# --- options -------------------------------------------------------------------------

def test_export_name_with_no_zeroes():
    hs = handshake(3)
    assert replies(hs, opt(1, b"disk")) == struct.pack(">QH", 16 * MiB, RW_FLAGS)
    assert hs.done and not hs.aborted and hs.export == DISK and hs.leftover == b""


def test_export_name_without_no_zeroes():
    hs = handshake(1)
    assert replies(hs, opt(1, b"ro")) == struct.pack(">QH", 1 * MiB, RO_FLAGS) + bytes(124)
    assert hs.export == RO


def test_export_name_empty_is_the_default():
    hs = handshake(3, default="ro")
    assert replies(hs, opt(1)) == struct.pack(">QH", 1 * MiB, RO_FLAGS)
    assert hs.export == RO


@pytest.mark.parametrize("name", [b"nope", b"\xff\xfe", b""])
def test_export_name_unknown_hangs_up(name):
    hs = handshake(3, default=None)
    with pytest.raises(P.NbdProtocolError, match="unknown export"):
        hs.feed(opt(1, name))


@pytest.mark.parametrize("data", [b"", b"ignored"])
def test_abort(data):
    hs = handshake()
    assert replies(hs, opt(2, data)) == rep(2, 1)
    assert hs.done and hs.aborted and hs.export is None


def test_list():
    hs = handshake()
    assert replies(hs, opt(3)) == (
        rep(3, 2, b"\x00\x00\x00\x04disk" b"a RAM disk")
        + rep(3, 2, b"\x00\x00\x00\x02ro")
        + rep(3, 1))


def test_list_with_data_is_invalid():
    hs = handshake()
    assert replies(hs, opt(3, b"x")) == rep(3, ERR_INVALID, b"NBD_OPT_LIST carries no data")


def test_starttls_is_refused_by_policy():
    hs = handshake()
    assert replies(hs, opt(5)) == rep(5, ERR_POLICY, b"TLS is not offered by this server")
    assert not hs.done


@pytest.mark.parametrize("code", [6, 7])
def test_info_and_go_with_every_request(code):
    hs = handshake()
    out = replies(hs, opt(code, go_data("disk", 1, 2, 3)))
    assert out == (rep(code, 3, info_export(16 * MiB, RW_FLAGS))
                   + rep(code, 3, b"\x00\x01disk")
                   + rep(code, 3, b"\x00\x02a RAM disk")
                   + rep(code, 3, info_block(512, 4096, 32 * MiB))
                   + rep(code, 1))
    assert hs.done == (code == 7)
    assert hs.export == (DISK if code == 7 else None)


def test_go_without_requests_still_gets_export_and_block_size():
    hs = handshake()
    assert replies(hs, opt(7, go_data("ro"))) == (
        rep(7, 3, info_export(1 * MiB, RO_FLAGS))
        + rep(7, 3, info_block(1, 4096, 32 * MiB))
        + rep(7, 1))


def test_go_empty_name_is_the_default_and_description_only_when_set():
    hs = handshake(default="ro")
    assert replies(hs, opt(7, go_data("", 1, 2, 2, 99))) == (
        rep(7, 3, info_export(1 * MiB, RO_FLAGS))
        + rep(7, 3, b"\x00\x01ro")
        + rep(7, 3, info_block(1, 4096, 32 * MiB))
        + rep(7, 1))
    assert hs.export == RO


def test_go_unknown_export_keeps_negotiating():
    hs = handshake()
    assert replies(hs, opt(7, go_data("nope"))) == rep(7, ERR_UNKNOWN, b"no export named 'nope'")
    assert not hs.done
    assert replies(hs, opt(7, go_data("disk"))).endswith(rep(7, 1))
    assert hs.export == DISK


@pytest.mark.parametrize("data", [
    b"",
    b"\x00\x00\x00",
    b"\x00\x00\x00\x05disk\x00\x00",        # name length beyond the data
    go_data("disk", 3)[:-1],                 # request list cut short
    go_data("disk") + b"\x00",               # trailing byte
    go_data("\xff").replace(b"\xc3\xbf", b"\xff\xff"),  # not UTF-8
])
def test_go_malformed_is_invalid(data):
    hs = handshake()
    out = replies(hs, opt(7, data))
    assert out.startswith(REPLY_MAGIC + struct.pack(">II", 7, ERR_INVALID))
    assert not hs.done


def test_structured_reply():
    hs = handshake()
    assert replies(hs, opt(8)) == rep(8, 1)
    assert hs.structured_replies


def test_structured_reply_with_data_is_invalid():
    hs = handshake()
    assert replies(hs, opt(8, b"x")).startswith(rep(8, ERR_INVALID)[:16])
    assert not hs.structured_replies


def test_structured_reply_not_offered():
    hs = handshake(offer_structured=False)
    assert replies(hs, opt(8)) == rep(8, ERR_UNSUP, b"option NBD_OPT_STRUCTURED_REPLY is "
                                                    b"not supported")
    assert not hs.structured_replies


def test_meta_contexts_none_offered():
    hs = handshake()
    assert replies(hs, opt(9, meta_data("disk"))) == rep(9, 1)  # LIST allowed before SR
    assert replies(hs, opt(8)) == rep(8, 1)
    assert replies(hs, opt(9, meta_data("disk", "base:"))) == rep(9, 1)
    assert replies(hs, opt(10, meta_data("disk", "base:allocation"))) == rep(10, 1)
    assert replies(hs, opt(10, meta_data("", "qemu:dirty-bitmap:x", "base:allocation"))) == \
        rep(10, 1)


def test_set_meta_context_needs_structured_replies():
    hs = handshake()
    assert replies(hs, opt(10, meta_data("disk", "base:allocation"))) == rep(
        10, ERR_INVALID, b"structured replies were not negotiated")


def test_meta_context_unknown_export():
    hs = handshake(default=None)
    assert replies(hs, opt(9, meta_data(""))).startswith(rep(9, ERR_UNKNOWN)[:16])


@pytest.mark.parametrize("data", [
    b"",
    b"\x00\x00\x00\x04disk",                              # no query count
    meta_data("disk", "base:allocation")[:-1],            # query cut short
    meta_data("disk") + b"\x00",                          # trailing byte
    meta_data("disk")[:-4] + b"\x00\x00\x00\x02" + b"\x00\x00\x00\x00",  # count > queries
    meta_data("disk")[:-4] + b"\xff\xff\xff\xff",         # absurd count
])
def test_meta_context_malformed_is_invalid(data):
    hs = handshake()
    hs.feed(opt(8))
    hs.take_outgoing()
    assert replies(hs, opt(10, data)).startswith(rep(10, ERR_INVALID)[:16])


@pytest.mark.parametrize("code", [4, 11, 12, 0xFFFFFFFF])
def test_unknown_options_are_unsupported_and_parsing_goes_on(code):
    hs = handshake()
    out = replies(hs, opt(code, b"some data") + opt(8))
    head = REPLY_MAGIC + struct.pack(">II", code, ERR_UNSUP)
    assert out.startswith(head)
    assert out.endswith(rep(8, 1))


# --- whole negotiations, any chunking -------------------------------------------------

REQUEST = bytes.fromhex("25609513" "0000" "0000" "0102030405060708"
                        "0000000000001000" "00000200")
CLIENT = (b"\x00\x00\x00\x03"
          + opt(8) + opt(3) + opt(6, go_data("disk", 3)) + opt(9, meta_data("disk"))
          + opt(10, meta_data("disk", "base:allocation")) + opt(7, go_data("disk", 1, 3))
          + REQUEST)
SERVER = (GREETING + rep(8, 1)
          + rep(3, 2, b"\x00\x00\x00\x04disk" b"a RAM disk") + rep(3, 2, b"\x00\x00\x00\x02ro")
          + rep(3, 1)
          + rep(6, 3, info_export(16 * MiB, RW_FLAGS)) + rep(6, 3, info_block(512, 4096, 32 * MiB))
          + rep(6, 1)
          + rep(9, 1) + rep(10, 1)
          + rep(7, 3, info_export(16 * MiB, RW_FLAGS)) + rep(7, 3, b"\x00\x01disk")
          + rep(7, 3, info_block(512, 4096, 32 * MiB)) + rep(7, 1))


def negotiate(chunks) -> P.Handshake:
    hs = P.Handshake(EXPORTS, "disk")
    for c in chunks:
        hs.feed(c)
    return hs


def chunked(data: bytes, rng: random.Random):
    i = 0
    while i < len(data):
        n = rng.randint(1, 40)
        yield data[i:i + n]
        i += n


@pytest.mark.parametrize("how", ["whole", "bytes", "random"])
def test_full_negotiation(how):
    if how == "whole":
        chunks = [CLIENT]
    elif how == "bytes":
        chunks = [CLIENT[i:i + 1] for i in range(len(CLIENT))]
    else:
        chunks = list(chunked(CLIENT, random.Random(1)))
    hs = negotiate(chunks)
    assert b"".join(hs.outgoing) == SERVER
    assert hs.done and hs.export == DISK and hs.structured_replies and not hs.aborted
    assert hs.leftover == REQUEST
    assert hs.options == [8, 3, 6, 9, 10, 7]


def test_bytes_after_done_are_leftover():
    hs = negotiate([CLIENT[:-len(REQUEST)]])
    assert hs.done and hs.leftover == b""
    hs.feed(REQUEST[:10])
    hs.feed(REQUEST[10:])
    assert hs.leftover == REQUEST


def test_polite_close_between_options():
    hs = handshake()
    hs.feed(opt(8))
    hs.feed(b"")
    assert hs.done and hs.aborted and hs.export is None


def test_close_before_client_flags_is_polite():
    hs = P.Handshake(EXPORTS, "disk")
    hs.feed(b"")
    assert hs.done and hs.aborted


@pytest.mark.parametrize("partial", [b"\x00\x00", opt(7, go_data("disk"))[:10],
                                     opt(7, go_data("disk"))[:20]])
def test_close_mid_message_is_an_error(partial):
    hs = P.Handshake(EXPORTS, "disk")
    hs.feed(b"\x00\x00\x00\x03"[: 2 if partial == b"\x00\x00" else 4])
    if partial != b"\x00\x00":
        hs.feed(partial)
    with pytest.raises(P.NbdProtocolError, match="middle"):
        hs.feed(b"")


# --- hostile handshakes -----------------------------------------------------------------

def test_bad_option_magic():
    hs = handshake()
    with pytest.raises(P.NbdProtocolError, match="bad option magic 0x4948415645"):
        hs.feed(b"IHAVEOPX" + struct.pack(">II", 7, 0))


def test_old_style_client_bytes_are_garbage():
    hs = handshake()
    with pytest.raises(P.NbdProtocolError):
        hs.feed(bytes(16))


def test_absurd_option_length_is_refused_before_buffering():
    hs = handshake()
    with pytest.raises(P.NbdProtocolError, match="65537 bytes"):
        hs.feed(b"IHAVEOPT" + struct.pack(">II", 7, P.MAX_OPTION_LENGTH + 1))


def test_largest_option_is_accepted():
    hs = handshake()
    hs.feed(opt(0x1234, bytes(P.MAX_OPTION_LENGTH)))
    assert b"".join(hs.take_outgoing()).startswith(REPLY_MAGIC)


def test_option_flood_ends_the_handshake():
    hs = handshake()
    budget = P.MAX_OPTIONS + P.MAX_OPTIONS_PER_EXPORT * len(EXPORTS)
    hs.feed(opt(6, go_data("disk")) * budget)
    with pytest.raises(P.NbdProtocolError, match="options"):
        hs.feed(opt(6, go_data("disk")))


def test_handshake_fuzz_only_raises_protocol_errors():
    rng = random.Random(20240501)
    pieces = [opt(c, d) for c, d in [(7, go_data("disk")), (8, b""), (3, b""), (9, meta_data("ro")),
                                     (10, meta_data("disk", "base:allocation")), (6, b"")]]
    for _ in range(400):
        data = b"\x00\x00\x00\x01" + b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 3)))
        data = bytearray(data + rng.randbytes(rng.randint(0, 40)))
        for _ in range(rng.randint(0, 4)):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        hs = P.Handshake(EXPORTS, "disk")
        try:
            for c in chunked(bytes(data), rng):
                hs.feed(c)
            hs.feed(b"")
        except P.NbdProtocolError:
            pass


# --- requests ----------------------------------------------------------------------------

def req(rtype: int, cookie: int = 1, offset: int = 0, length: int = 0, flags: int = 0,
        data: bytes = b"") -> bytes:
    return bytes.fromhex("25609513") + struct.pack(">HHQQI", flags, rtype, cookie, offset,
                                                   length) + data


def frozen(r: P.Request) -> P.Request:
    return r._replace(data=bytes(r.data)) if r.data is not None else r


def test_request_golden_bytes():
    d = P.RequestDecoder()
    d.feed(bytes.fromhex("25609513" "0001" "0000" "1122334455667788"
                         "0000000000010000" "00001000"))
    assert d.decode() == [P.Request(1, 0, 0x1122334455667788, 0x10000, 0x1000, None)]
    assert d.pending == 0


def test_write_payload_is_a_view_into_the_buffer():
    d = P.RequestDecoder()
    payload = bytes(range(256)) * 2
    d.feed(req(1, 7, 4096, 512, data=payload) + req(3, 8))
    w, f = d.decode()
    assert isinstance(w.data, memoryview) and w.data.obj is d.get_buffer(0).obj
    assert bytes(w.data) == payload
    assert (w.type, w.cookie, w.offset, w.length) == (1, 7, 4096, 512)
    assert f == P.Request(0, 3, 8, 0, 0, None)


def test_recv_into_protocol():
    d = P.RequestDecoder(buffer_size=64)
    stream = req(1, 1, 0, 100, data=b"w" * 100)
    buf = d.get_buffer(len(stream))
    buf[:len(stream)] = stream
    d.buffer_updated(len(stream))
    (r,) = d.decode()
    assert bytes(r.data) == b"w" * 100


STREAM = [
    (req(0, 1, 0, 4096), [P.Request(0, 0, 1, 0, 4096, None)]),
    (req(1, 2, 512, 3, flags=1, data=b"abc"), [P.Request(1, 1, 2, 512, 3, b"abc")]),
    (req(3, 3), [P.Request(0, 3, 3, 0, 0, None)]),
    (req(4, 4, 0, 1 << 30), [P.Request(0, 4, 4, 0, 1 << 30, None)]),
    (req(5, 5, 0, 8), [P.Request(0, 5, 5, 0, 8, None)]),
    (req(6, 6, 8, 1 << 20, flags=2 | 16), [P.Request(18, 6, 6, 8, 1 << 20, None)]),
    (req(7, 7, 0, 512, flags=8), [P.Request(8, 7, 7, 0, 512, None)]),
    (req(1, 8, 0, 0), [P.Request(0, 1, 8, 0, 0, b"")]),
    (req(1, 0xFFFFFFFFFFFFFFFF, 1 << 63, 70000, data=bytes(70000)),
     [P.Request(0, 1, 0xFFFFFFFFFFFFFFFF, 1 << 63, 70000, bytes(70000))]),
    (req(8, 9), [P.Request(0, 8, 9, 0, 0, None)]),
    (req(2, 10), [P.Request(0, 2, 10, 0, 0, None)]),
]
WIRE = b"".join(w for w, _ in STREAM)
EXPECTED = [r for _, rs in STREAM for r in rs]


@pytest.mark.parametrize("how", ["whole", "bytes", "random", "recv_into"])
def test_request_stream_any_chunking(how):
    d = P.RequestDecoder(buffer_size=4096)
    got = []
    rng = random.Random(7)
    if how == "whole":
        chunks = [WIRE]
    elif how == "bytes":
        chunks = [WIRE[i:i + 1] for i in range(len(WIRE))]
    else:
        chunks = []
        i = 0
        while i < len(WIRE):
            n = rng.choice([1, 5, 28, 29, 100, 4096, 65536])
            chunks.append(WIRE[i:i + n])
            i += n
    for c in chunks:
        if how == "recv_into":
            buf = d.get_buffer(1)
            n = min(len(c), len(buf))
            buf[:n] = c[:n]
            d.buffer_updated(n)
            if n < len(c):
                d.feed(c[n:])
        else:
            d.feed(c)
        got += [frozen(r) for r in d.decode()]
    assert got == EXPECTED
    assert d.disconnected


def test_decoding_stops_after_disc():
    d = P.RequestDecoder()
    d.feed(req(2, 1) + b"garbage that is never looked at......")
    assert d.decode() == [P.Request(0, 2, 1, 0, 0, None)]
    assert d.decode() == []


def test_partial_request_waits():
    d = P.RequestDecoder()
    d.feed(req(1, 1, 0, 10, data=b"0123456789")[:-1])
    assert d.decode() == [] and d.pending == 37
    d.feed(b"9")
    assert [frozen(r) for r in d.decode()] == [P.Request(0, 1, 1, 0, 10, b"0123456789")]


def test_bad_request_magic():
    d = P.RequestDecoder()
    d.feed(req(0)[:-28] + bytes.fromhex("67446698") + req(0)[4:])
    with pytest.raises(P.NbdProtocolError, match="bad request magic 0x67446698"):
        d.decode()


def test_extended_request_magic_is_named():
    d = P.RequestDecoder()
    d.feed(bytes.fromhex("21e41c71") + bytes(28))
    with pytest.raises(P.NbdProtocolError, match="extended headers were not negotiated"):
        d.decode()


@pytest.mark.parametrize("rtype", [9, 100, 0xFFFF])
def test_unknown_command_type(rtype):
    d = P.RequestDecoder()
    d.feed(req(0, 1) + req(rtype, 2))
    with pytest.raises(P.NbdProtocolError, match=f"unknown command type {rtype}"):
        d.decode()


def test_oversize_write_is_refused_from_its_header():
    d = P.RequestDecoder(max_payload=1 * MiB)
    d.feed(req(1, 1, 0, 1 * MiB + 1))
    with pytest.raises(P.NbdProtocolError, match="1048577 bytes"):
        d.decode()


def test_largest_write_grows_the_buffer():
    d = P.RequestDecoder(max_payload=1 * MiB, buffer_size=4096)
    payload = random.Random(3).randbytes(1 * MiB)
    wire = req(1, 1, 0, len(payload), data=payload)
    pos = 0
    while pos < len(wire):
        buf = d.get_buffer()
        n = min(len(buf), len(wire) - pos, 65536)
        buf[:n] = wire[pos:pos + n]
        d.buffer_updated(n)
        pos += n
        got = d.decode()
    assert len(got) == 1 and bytes(got[0].data) == payload


def test_read_length_is_not_limited_by_the_decoder():
    # A READ's length is the server's to refuse with an error reply.
    d = P.RequestDecoder(max_payload=4096)
    d.feed(req(0, 1, 0, 0xFFFFFFFF))
    assert d.decode()[0].length == 0xFFFFFFFF


def test_request_fuzz_only_raises_protocol_errors():
    rng = random.Random(99)
    for _ in range(300):
        data = bytearray(b"".join(w for w, _ in rng.sample(STREAM[:-1], 4)))
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        d = P.RequestDecoder(max_payload=1 * MiB, buffer_size=256)
        try:
            for i in range(0, len(data), 50):
                d.feed(data[i:i + 50])
                d.decode()
        except P.NbdProtocolError:
            pass


# --- replies -----------------------------------------------------------------------------

COOKIE = 0x0102030405060708


def test_simple_reply():
    assert P.simple_reply(COOKIE) == bytes.fromhex("67446698" "00000000" "0102030405060708")
    assert P.simple_reply(COOKIE, 5) == bytes.fromhex("67446698" "00000005" "0102030405060708")


def test_structured_data_header():
    assert P.structured_data_header(COOKIE, 0x1000, 512) == bytes.fromhex(
        "668e33ef" "0001" "0001" "0102030405060708" "00000208" "0000000000001000")
    assert P.structured_data_header(COOKIE, 0, 1, done=False) == bytes.fromhex(
        "668e33ef" "0000" "0001" "0102030405060708" "00000009" "0000000000000000")


@pytest.mark.parametrize("length", [0, 0xFFFFFFFF - 7])
def test_structured_data_header_length_limits(length):
    with pytest.raises(LocalProtocolError):
        P.structured_data_header(COOKIE, 0, length)


def test_structured_none():
    assert P.structured_none(COOKIE) == bytes.fromhex(
        "668e33ef" "0001" "0000" "0102030405060708" "00000000")


def test_structured_error():
    assert P.structured_error(COOKIE, 22, "bad") == bytes.fromhex(
        "668e33ef" "0001" "8001" "0102030405060708" "00000009" "00000016" "0003") + b"bad"
    assert P.structured_error(COOKIE, 5, done=False) == bytes.fromhex(
        "668e33ef" "0000" "8001" "0102030405060708" "00000006" "00000005" "0000")


def test_structured_error_message_is_capped():
    out = P.structured_error(COOKIE, 5, "x" * 5000)
    assert struct.unpack_from(">IH", out, 20) == (5, 4096) and len(out) == 26 + 4096


def test_structured_error_offset():
    assert P.structured_error_offset(COOKIE, 5, 0x200, "x") == bytes.fromhex(
        "668e33ef" "0001" "8002" "0102030405060708" "0000000f" "00000005" "0001"
        "78" "0000000000000200")


def test_structured_error_needs_an_error():
    with pytest.raises(LocalProtocolError):
        P.structured_error(COOKIE, 0)


@pytest.mark.parametrize("os_errno, nbd", [
    (0, 0), (errno.EPERM, 1), (errno.EACCES, 1), (errno.EROFS, 1), (errno.EIO, 5),
    (errno.ENOMEM, 12), (errno.EINVAL, 22), (errno.ENOSPC, 28), (errno.EDQUOT, 28),
    (errno.EFBIG, 28), (errno.EOVERFLOW, 75), (errno.ENOTSUP, 95), (errno.EOPNOTSUPP, 95),
    (errno.ESHUTDOWN, 108), (errno.ENOENT, 5), (errno.ETIMEDOUT, 5),
])
def test_errno_for(os_errno, nbd):
    assert P.errno_for(os_errno) == nbd
