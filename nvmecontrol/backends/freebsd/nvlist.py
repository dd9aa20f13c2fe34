"""FreeBSD libnv packed nvlists: what ``nvlist_pack`` writes and ``nvlist_unpack`` reads.

The nvmf(4) ioctls carry their arguments as packed nvlists
(``struct nvmf_ioc_nv``), so this module reproduces libnv's format byte for
byte (sys/contrib/libnv/nvlist.c ``nvlist_xpack``/``nvlist_size``,
nvpair.c ``nvpair_pack_*``):

* every list starts with a 19-byte packed header: magic ``'l'`` (0x6c),
  version 0, flags (u8), descriptor count (u64), size (u64);
* every pair starts with a 19-byte packed header: type (u8), name size
  including the NUL (u16), data size (u64), item count (u64, arrays only),
  then the NUL-terminated name and the data;
* a nested list is its pair header, the child's list header, the child's
  pairs, then an ``NVLIST_UP`` marker (type 255, name ``""``); an array of
  lists is its pair header (data size 0, nitems n) then, per element, a list
  header, the element's pairs and an ``NVLIST_ARRAY_NEXT`` marker (type 254).

Traps, all reproduced because the kernel's unpacker checks some of them:

* a list header's size is not the size of that list: it is the number of
  bytes from the end of that header to the end of the *whole buffer*
  (``nvlh_size = *leftp - sizeof(nvlhdr)``), and the unpacker insists;
* the data size of a nested-list pair is ``nvlist_size(child)``, and
  ``nvlist_size`` does not stop at the child: it climbs through the parents
  (and later array elements) and keeps counting the pairs that follow, but
  not the list headers and UP/NEXT markers that only an enclosing pair
  accounts for.  The unpacker only checks it is non-zero and fits; we
  match it exactly;
* ``NV_FLAG_IN_ARRAY`` is 0x100 and the header flag field is one byte, so
  array elements carry flags 0 on little-endian hosts; ``NV_FLAG_BIG_ENDIAN``
  (0x80) is set only by big-endian packers.  We pack little-endian (amd64,
  arm64) and read both orders;
* ``nvlist_pack`` refuses lists holding descriptors (EOPNOTSUPP), which is
  why nvmf(4) passes socket numbers as plain numbers.

Python values map to nvpair types as: ``None`` null, ``bool`` bool, ``int``
number (uint64), ``str`` string (UTF-8, no NUL), ``bytes``-like or
:class:`Binary` binary (non-empty, as libnv requires), a mapping a nested
list, a non-empty list/tuple of mappings an array of lists.  Insertion order
is kept both ways.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from nvmecontrol.errors import DeviceError, LocalProtocolError

# sys/sys/nv.h and nv_impl.h
NV_TYPE_NULL = 1
NV_TYPE_BOOL = 2
NV_TYPE_NUMBER = 3
NV_TYPE_STRING = 4
NV_TYPE_NVLIST = 5
NV_TYPE_DESCRIPTOR = 6
NV_TYPE_BINARY = 7
NV_TYPE_NVLIST_ARRAY = 11
NV_TYPE_DESCRIPTOR_ARRAY = 12
NV_TYPE_NVLIST_ARRAY_NEXT = 254
NV_TYPE_NVLIST_UP = 255

NV_FLAG_IGNORE_CASE = 0x01
NV_FLAG_NO_UNIQUE = 0x02
NV_FLAG_BIG_ENDIAN = 0x80
NV_FLAG_IN_ARRAY = 0x100  # does not fit the one-byte header field (see above)
_FLAG_ALL_MASK = NV_FLAG_IGNORE_CASE | NV_FLAG_NO_UNIQUE | NV_FLAG_BIG_ENDIAN | NV_FLAG_IN_ARRAY

NVLIST_HEADER_MAGIC = 0x6C
NVLIST_HEADER_VERSION = 0
# A name's length must stay below NV_NAME_MAX (nvpair_allocv: ENAMETOOLONG).
NV_NAME_MAX = 2048
# A hostile or corrupt copy-out must not make us recurse without bound;
# nvmf(4) nests three levels at most.
MAX_DEPTH = 64

HEADER_SIZE = 19  # both struct nvlist_header and struct nvpair_header, __packed
_MARKER_SIZE = HEADER_SIZE + 1  # an UP or NEXT marker: pair header plus the name ""

_LIST_HDR = {"<": struct.Struct("<BBBQQ"), ">": struct.Struct(">BBBQQ")}
_PAIR_HDR = {"<": struct.Struct("<BHQQ"), ">": struct.Struct(">BHQQ")}
assert _LIST_HDR["<"].size == _PAIR_HDR["<"].size == HEADER_SIZE


class Binary(bytes):
    """An explicit binary value (what ``unpack`` returns for binary pairs)."""


# -- packing --------------------------------------------------------------

def _name_bytes(name: Any) -> bytes:
    if not isinstance(name, str):
        raise LocalProtocolError(f"nvlist names are strings, not {type(name).__name__}")
    raw = name.encode("utf-8", "surrogateescape")
    if b"\x00" in raw:
        raise LocalProtocolError(f"nvlist name {name!r} contains a NUL byte")
    if len(raw) >= NV_NAME_MAX:
        raise LocalProtocolError(f"nvlist name of {len(raw)} bytes; libnv allows {NV_NAME_MAX - 1}")
    return raw + b"\x00"


def _is_array(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _scalar(value: Any, name: str) -> tuple[int, bytes]:
    """Type and data bytes of a non-list value."""
    if value is None:
        return NV_TYPE_NULL, b""
    if isinstance(value, bool):
        return NV_TYPE_BOOL, b"\x01" if value else b"\x00"
    if isinstance(value, int):
        if not 0 <= value < 1 << 64:
            raise LocalProtocolError(f"nvlist number {name}={value} does not fit uint64")
        return NV_TYPE_NUMBER, struct.pack("<Q", value)
    if isinstance(value, str):
        raw = value.encode("utf-8", "surrogateescape")
        if b"\x00" in raw:
            raise LocalProtocolError(f"nvlist string {name} contains a NUL byte")
        return NV_TYPE_STRING, raw + b"\x00"
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if not raw:
            # nvpair_create_binary refuses size 0 and the unpacker rejects it.
            raise LocalProtocolError(f"nvlist binary {name} is empty; libnv cannot carry that")
        return NV_TYPE_BINARY, raw
    raise LocalProtocolError(f"nvlist value {name} of type {type(value).__name__} is not supported")


def _check_array(value: Any, name: str) -> None:
    if not value:
        raise LocalProtocolError(f"nvlist array {name} is empty; libnv needs at least one element")
    for item in value:
        if not isinstance(item, Mapping):
            raise LocalProtocolError(f"nvlist array {name} may hold only nvlists, "
                                     f"not {type(item).__name__}")


def _contents_size(items: Mapping, depth: int = 0) -> int:
    """Bytes of a list's pairs (its header and closing marker excluded)."""
    if depth > MAX_DEPTH:
        raise LocalProtocolError(f"nvlist nested deeper than {MAX_DEPTH} levels")
    return sum(_pair_size(name, value, depth) for name, value in items.items())


def _pair_size(name: str, value: Any, depth: int) -> int:
    size = HEADER_SIZE + len(_name_bytes(name))
    if isinstance(value, Mapping):
        return size + HEADER_SIZE + _contents_size(value, depth + 1) + _MARKER_SIZE
    if _is_array(value):
        _check_array(value, name)
        return size + sum(HEADER_SIZE + _contents_size(e, depth + 1) + _MARKER_SIZE for e in value)
    return size + len(_scalar(value, name)[1])


class _Packer:
    def __init__(self) -> None:
        self.out = bytearray()
        self.headers: list[int] = []  # offsets of list headers, sizes patched at the end

    def list(self, items: Mapping, tail: int, depth: int) -> None:
        """Emit a list; ``tail`` is what ``nvlist_size`` counts after it is left."""
        self.headers.append(len(self.out))
        self.out += _LIST_HDR["<"].pack(NVLIST_HEADER_MAGIC, NVLIST_HEADER_VERSION, 0, 0, 0)
        pairs = list(items.items())
        sizes = [_pair_size(n, v, depth) for n, v in pairs]
        for k, (name, value) in enumerate(pairs):
            after = sum(sizes[k + 1:]) + tail
            self.pair(name, value, after, depth)

    def pair(self, name: str, value: Any, after: int, depth: int) -> None:
        raw_name = _name_bytes(name)
        if isinstance(value, Mapping):
            datasize = HEADER_SIZE + _contents_size(value, depth + 1) + after
            self.out += _PAIR_HDR["<"].pack(NV_TYPE_NVLIST, len(raw_name), datasize, 0) + raw_name
            self.list(value, after, depth + 1)
            self.marker(NV_TYPE_NVLIST_UP)
        elif _is_array(value):
            _check_array(value, name)
            self.out += _PAIR_HDR["<"].pack(NV_TYPE_NVLIST_ARRAY, len(raw_name), 0, len(value))
            self.out += raw_name
            contents = [_contents_size(e, depth + 1) for e in value]
            for i, element in enumerate(value):
                self.list(element, sum(contents[i + 1:]) + after, depth + 1)
                self.marker(NV_TYPE_NVLIST_ARRAY_NEXT)
        else:
            kind, data = _scalar(value, name)
            self.out += _PAIR_HDR["<"].pack(kind, len(raw_name), len(data), 0) + raw_name + data

    def marker(self, kind: int) -> None:
        self.out += _PAIR_HDR["<"].pack(kind, 1, 0, 0) + b"\x00"

    def finish(self) -> bytes:
        total = len(self.out)
        for off in self.headers:
            struct.pack_into("<Q", self.out, off + 11, total - off - HEADER_SIZE)
        return bytes(self.out)


def pack(items: Mapping) -> bytes:
    """The bytes ``nvlist_pack`` produces for ``items`` on a little-endian host."""
    if not isinstance(items, Mapping):
        raise LocalProtocolError(f"an nvlist is a mapping, not {type(items).__name__}")
    _contents_size(items)  # validates every value before anything is written
    packer = _Packer()
    packer.list(items, 0, 0)
    return packer.finish()


def packed_size(items: Mapping) -> int:
    """``nvlist_size`` of a top-level list: the length ``pack`` returns."""
    return HEADER_SIZE + _contents_size(items)


# -- unpacking ------------------------------------------------------------

class _Reader:
    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0
        self.order = "<"

    @property
    def left(self) -> int:
        return len(self.buf) - self.pos

    def fail(self, problem: str) -> DeviceError:
        return DeviceError(f"malformed nvlist from the kernel at byte {self.pos}: {problem}")

    def list_header(self, *, top: bool = False) -> int:
        if self.left < HEADER_SIZE:
            raise self.fail("truncated list header")
        magic, _version, flags = self.buf[self.pos:self.pos + 3]
        if magic != NVLIST_HEADER_MAGIC:
            raise self.fail(f"bad list magic {magic:#04x}")
        if flags & ~_FLAG_ALL_MASK & 0xFF:
            raise self.fail(f"unknown list flags {flags:#04x}")
        if top:
            self.order = ">" if flags & NV_FLAG_BIG_ENDIAN else "<"
        _m, _v, _f, descriptors, size = _LIST_HDR[self.order].unpack_from(self.buf, self.pos)
        if size != self.left - HEADER_SIZE:
            raise self.fail(f"list header size {size}, but {self.left - HEADER_SIZE} bytes follow")
        if descriptors:
            raise self.fail(f"{descriptors} descriptors in an ioctl nvlist")
        self.pos += HEADER_SIZE
        return flags

    def pair(self) -> tuple[int, str, int, int]:
        if self.left < HEADER_SIZE:
            raise self.fail("truncated pair header")
        kind, namesize, datasize, nitems = _PAIR_HDR[self.order].unpack_from(self.buf, self.pos)
        self.pos += HEADER_SIZE
        if not 1 <= namesize <= NV_NAME_MAX or namesize > self.left:
            raise self.fail(f"bad name size {namesize}")
        raw = self.buf[self.pos:self.pos + namesize]
        if raw.find(b"\x00") != namesize - 1:
            raise self.fail("name not terminated by its last byte")
        self.pos += namesize
        if datasize > self.left:
            raise self.fail(f"data size {datasize} beyond the buffer")
        return kind, raw[:-1].decode("utf-8", "surrogateescape"), datasize, nitems

    def take(self, n: int) -> bytes:
        data = self.buf[self.pos:self.pos + n]
        self.pos += n
        return data


def _value(r: _Reader, kind: int, name: str, datasize: int) -> Any:
    if kind == NV_TYPE_NULL:
        if datasize:
            raise r.fail(f"null {name} with data")
        return None
    if kind == NV_TYPE_BOOL:
        data = r.take(datasize) if datasize == 1 else None
        if data is None or data[0] > 1:
            raise r.fail(f"bad bool {name}")
        return bool(data[0])
    if kind == NV_TYPE_NUMBER:
        if datasize != 8:
            raise r.fail(f"number {name} of {datasize} bytes")
        return struct.unpack(r.order + "Q", r.take(8))[0]
    if kind == NV_TYPE_STRING:
        data = r.take(datasize)
        if not data or data.find(b"\x00") != datasize - 1:
            raise r.fail(f"string {name} not terminated by its last byte")
        return data[:-1].decode("utf-8", "surrogateescape")
    if kind == NV_TYPE_BINARY:
        if not datasize:
            raise r.fail(f"empty binary {name}")
        return Binary(r.take(datasize))
    if kind in (NV_TYPE_DESCRIPTOR, NV_TYPE_DESCRIPTOR_ARRAY):
        raise r.fail(f"descriptor {name} cannot travel through an ioctl")
    raise r.fail(f"unsupported pair type {kind} for {name}")


def _read_list(r: _Reader, depth: int, end_marker: int | None) -> dict:
    """Pairs up to ``end_marker`` (None: the end of the buffer)."""
    if depth > MAX_DEPTH:
        raise r.fail(f"nested deeper than {MAX_DEPTH} levels")
    items: dict = {}
    while True:
        if end_marker is None and r.left == 0:
            return items
        kind, name, datasize, nitems = r.pair()
        if kind in (NV_TYPE_NVLIST_UP, NV_TYPE_NVLIST_ARRAY_NEXT):
            if kind != end_marker or name or datasize or nitems:
                raise r.fail(f"unexpected {'UP' if kind == NV_TYPE_NVLIST_UP else 'NEXT'} marker")
            return items
        if name in items:
            raise r.fail(f"duplicate name {name!r}")
        if kind == NV_TYPE_NVLIST:
            if not datasize:
                raise r.fail(f"nested list {name} with data size 0")
            r.list_header()
            items[name] = _read_list(r, depth + 1, NV_TYPE_NVLIST_UP)
        elif kind == NV_TYPE_NVLIST_ARRAY:
            if nitems < 1 or nitems * HEADER_SIZE > r.left:
                raise r.fail(f"array {name} of {nitems} lists")
            elements = []
            for _ in range(nitems):
                r.list_header()
                elements.append(_read_list(r, depth + 1, NV_TYPE_NVLIST_ARRAY_NEXT))
            items[name] = elements
        else:
            items[name] = _value(r, kind, name, datasize)


def unpack(data: bytes | bytearray | memoryview) -> dict:
    """The nvlist in ``data`` as a dict (nested dicts, lists of dicts, :class:`Binary`).

    Stricter than ``nvlist_unpack``: the buffer must end exactly where the
    top-level list does, every nested list must be closed by its own marker,
    and names must be unique.  Raises :class:`DeviceError` on malformed data.
    """
    r = _Reader(bytes(data))
    r.list_header(top=True)
    return _read_list(r, 0, None)
