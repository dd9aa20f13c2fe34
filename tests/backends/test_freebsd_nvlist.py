"""libnv packed nvlists (nvmecontrol.backends.freebsd.nvlist).

Expected bytes are written out field by field from libnv's source
(sys/contrib/libnv/nvlist.c nvlist_xpack/nvlist_size, nvpair.c
nvpair_pack_*): 19-byte list header (magic 0x6c, version, flags, u64
descriptors, u64 size = bytes from the end of that header to the end of the
buffer), 19-byte pair header (type, u16 namesize with NUL, u64 datasize,
u64 nitems), name, data; UP (255) and ARRAY_NEXT (254) markers are a pair
header with the name "".  All little-endian.
"""

from __future__ import annotations

import random
import struct

import pytest

from nvmecontrol.backends.freebsd.nvlist import Binary, pack, packed_size, unpack
from nvmecontrol.errors import DeviceError, LocalProtocolError


def h(text: str) -> bytes:
    """Hex with spaces, comments after '#' on each line."""
    return bytes.fromhex("".join(line.split("#")[0] for line in text.splitlines()))


def u64(v: int) -> str:
    return v.to_bytes(8, "little").hex(" ")


def test_single_number():
    expected = h(f"""
        6c 00 00                      # magic 'l', version 0, flags 0 (little-endian)
        {u64(0)}                      # descriptors
        {u64(29)}                     # size: the 29 bytes after this header
        03 02 00                      # NV_TYPE_NUMBER, namesize 2 ("a" + NUL)
        {u64(8)}                      # datasize
        {u64(0)}                      # nitems
        61 00                         # "a"
        {u64(1)}                      # value
    """)
    assert len(expected) == 48
    assert pack({"a": 1}) == expected
    assert packed_size({"a": 1}) == 48


def test_every_scalar_type():
    expected = h(f"""
        6c 00 00 {u64(0)} {u64(143)}                              # 162 bytes in all
        01 02 00 {u64(0)} {u64(0)} 6e 00                          # null "n"
        02 02 00 {u64(1)} {u64(0)} 74 00 01                       # bool "t" true
        02 02 00 {u64(1)} {u64(0)} 66 00 00                       # bool "f" false
        03 04 00 {u64(8)} {u64(0)} 6e 75 6d 00 08 07 06 05 04 03 02 01   # number "num"
        04 02 00 {u64(3)} {u64(0)} 73 00 68 69 00                 # string "s" = "hi" + NUL
        07 02 00 {u64(2)} {u64(0)} 62 00 de ad                    # binary "b"
    """)
    value = {"n": None, "t": True, "f": False, "num": 0x0102030405060708, "s": "hi",
             "b": Binary(b"\xde\xad")}
    assert pack(value) == expected
    assert unpack(expected) == value
    assert type(unpack(expected)["b"]) is Binary


def test_nested_list_and_nvlist_size_quirk():
    # The pair's datasize is nvlist_size(child), which climbs back to the
    # parent and also counts "z": 19 + 22 + 29 = 70, not the child's 41.
    expected = h(f"""
        6c 00 00 {u64(0)} {u64(144)}                              # root, 163 bytes in all
        03 02 00 {u64(8)} {u64(0)} 78 00 {u64(1)}                 # "x" = 1            (29)
        05 06 00 {u64(70)} {u64(0)} 63 68 69 6c 64 00             # NV_TYPE_NVLIST "child"
        6c 00 00 {u64(0)} {u64(71)}                               #   child header at 73
        02 02 00 {u64(1)} {u64(0)} 79 00 01                       #   "y" = true       (22)
        ff 01 00 {u64(0)} {u64(0)} 00                             # NVLIST_UP
        03 02 00 {u64(8)} {u64(0)} 7a 00 {u64(2)}                 # "z" = 2            (29)
    """)
    value = {"x": 1, "child": {"y": True}, "z": 2}
    assert pack(value) == expected
    assert unpack(expected) == value


def test_empty_nested_list():
    expected = h(f"""
        6c 00 00 {u64(0)} {u64(60)}                               # 79 bytes in all
        05 02 00 {u64(19)} {u64(0)} 65 00                         # "e": datasize 19
        6c 00 00 {u64(0)} {u64(20)}                               # empty child
        ff 01 00 {u64(0)} {u64(0)} 00                             # NVLIST_UP
    """)
    assert pack({"e": {}}) == expected
    assert unpack(expected) == {"e": {}}


def test_array_of_lists():
    # Element headers carry flags 0: NV_FLAG_IN_ARRAY (0x100) does not fit
    # the one-byte field.  The array pair has datasize 0 and nitems 2.
    expected = h(f"""
        6c 00 00 {u64(0)} {u64(153)}                              # root, 172 bytes
        0b 03 00 {u64(0)} {u64(2)} 69 6f 00                       # NVLIST_ARRAY "io"
        6c 00 00 {u64(0)} {u64(112)}                              #   element 0 at 41
        03 02 00 {u64(8)} {u64(0)} 61 00 {u64(1)}                 #   "a" = 1
        fe 01 00 {u64(0)} {u64(0)} 00                             #   NVLIST_ARRAY_NEXT
        6c 00 00 {u64(0)} {u64(44)}                               #   element 1 (empty)
        fe 01 00 {u64(0)} {u64(0)} 00                             #   NVLIST_ARRAY_NEXT
        02 04 00 {u64(1)} {u64(0)} 65 6e 64 00 01                 # "end" = true
    """)
    value = {"io": [{"a": 1}, {}], "end": True}
    assert pack(value) == expected
    assert unpack(expected) == value


def test_list_inside_array_element_counts_later_elements():
    # nvlist_size("q"'s child) = 19 + "k"(29) + element 1's "r"(29) + "t"(29).
    expected = h(f"""
        6c 00 00 {u64(0)} {u64(247)}
        0b 03 00 {u64(0)} {u64(2)} 69 6f 00                       # "io", 2 elements
        6c 00 00 {u64(0)} {u64(206)}                              #   element 0
        05 02 00 {u64(106)} {u64(0)} 71 00                        #   "q": nested list
        6c 00 00 {u64(0)} {u64(166)}                              #     its header
        03 02 00 {u64(8)} {u64(0)} 6b 00 {u64(1)}                 #     "k" = 1
        ff 01 00 {u64(0)} {u64(0)} 00                             #   NVLIST_UP
        fe 01 00 {u64(0)} {u64(0)} 00                             #   NVLIST_ARRAY_NEXT
        6c 00 00 {u64(0)} {u64(78)}                               #   element 1
        03 02 00 {u64(8)} {u64(0)} 72 00 {u64(2)}                 #   "r" = 2
        fe 01 00 {u64(0)} {u64(0)} 00                             #   NVLIST_ARRAY_NEXT
        03 02 00 {u64(8)} {u64(0)} 74 00 {u64(3)}                 # "t" = 3
    """)
    value = {"io": [{"q": {"k": 1}}, {"r": 2}], "t": 3}
    assert pack(value) == expected
    assert unpack(expected) == value


def test_insertion_order_is_kept():
    value = {"z": 1, "a": 2, "m": {"y": 1, "b": 2}}
    assert list(unpack(pack(value))) == ["z", "a", "m"]
    assert list(unpack(pack(value))["m"]) == ["y", "b"]


def test_big_endian_buffers_are_read():
    expected = h(f"""
        6c 00 80 {(0).to_bytes(8, 'big').hex()} {(29).to_bytes(8, 'big').hex()}
        03 00 02 {(8).to_bytes(8, 'big').hex()} {(0).to_bytes(8, 'big').hex()} 61 00
        {(0x0102).to_bytes(8, 'big').hex()}
    """)
    assert unpack(expected) == {"a": 0x0102}


@pytest.mark.parametrize("value", [
    {},
    {"deep": {"er": {"est": {"n": None, "s": "", "b": b"\x00"}}}},
    {"arr": [{}, {}, {"x": [{"y": 1}]}], "after": "text"},
    {"big": 2**64 - 1, "zero": 0, "bytes": bytes(range(256)) * 16},
    {"utf8": "h\u00e9llo", "name with spaces": True},
])
def test_round_trips(value):
    packed = pack(value)
    assert len(packed) == packed_size(value)
    assert unpack(packed) == value
    assert pack(unpack(packed)) == packed


@pytest.mark.parametrize("value, problem", [
    ({"n": -1}, "uint64"),
    ({"n": 2**64}, "uint64"),
    ({"b": b""}, "empty"),
    ({"s": "a\x00b"}, "NUL"),
    ({"a\x00": 1}, "NUL"),
    ({"x" * 2048: 1}, "2047"),
    ({"arr": []}, "at least one"),
    ({"arr": [1]}, "only nvlists"),
    ({"f": 1.5}, "not supported"),
    ({1: 1}, "strings"),
])
def test_pack_refuses(value, problem):
    with pytest.raises(LocalProtocolError, match=problem):
        pack(value)


def test_pack_refuses_a_non_mapping():
    with pytest.raises(LocalProtocolError):
        pack([("a", 1)])


GOOD = pack({"a": 1, "l": {"s": "x"}, "io": [{"b": True}]})


def _corrupt(data: bytes, offset: int, raw: bytes) -> bytes:
    return data[:offset] + raw + data[offset + len(raw):]


@pytest.mark.parametrize("data, problem", [
    (b"", "truncated list header"),
    (_corrupt(GOOD, 0, b"\x6d"), "magic"),
    (_corrupt(GOOD, 2, b"\x04"), "flags"),
    (_corrupt(GOOD, 3, struct.pack("<Q", 1)), "descriptors"),
    (GOOD + b"\x00", "size"),
    (GOOD[:-1], "size"),
    # "a" claims a 9-byte number
    (_corrupt(GOOD, 19 + 3, struct.pack("<Q", 9)), "number"),
    # name size 3 for "a\0": the NUL is not the last name byte
    (_corrupt(GOOD, 19 + 1, struct.pack("<H", 3)), "name"),
    # name size 0
    (_corrupt(GOOD, 19 + 1, struct.pack("<H", 0)), "name size"),
    # "a" retyped as a descriptor
    (_corrupt(GOOD, 19, b"\x06"), "descriptor"),
    # "a" retyped as an UP marker at the top level
    (_corrupt(GOOD, 19, b"\xff"), "marker"),
    # type 9 (number array) is not used by nvmf(4)
    (_corrupt(GOOD, 19, b"\x09"), "unsupported"),
])
def test_unpack_rejects(data, problem):
    with pytest.raises(DeviceError, match=problem):
        unpack(data)


def test_unpack_rejects_bad_bool_and_duplicates():
    bad_bool = h(f"6c 00 00 {u64(0)} {u64(22)} 02 02 00 {u64(1)} {u64(0)} 74 00 02")
    with pytest.raises(DeviceError, match="bool"):
        unpack(bad_bool)
    pair = f"03 02 00 {u64(8)} {u64(0)} 61 00 {u64(1)}"
    dup = h(f"6c 00 00 {u64(0)} {u64(58)} {pair} {pair}")
    with pytest.raises(DeviceError, match="duplicate"):
        unpack(dup)


def test_unpack_rejects_an_unterminated_nested_list():
    # A child opened at the end of the buffer, never closed by its UP marker.
    data = h(f"""
        6c 00 00 {u64(0)} {u64(40)}
        05 02 00 {u64(19)} {u64(0)} 65 00
        6c 00 00 {u64(0)} {u64(0)}
    """)
    with pytest.raises(DeviceError, match="truncated pair header"):
        unpack(data)


def test_hostile_bytes_only_raise_device_errors():
    rng = random.Random(20240611)
    for _ in range(3000):
        data = bytearray(GOOD)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[:rng.randrange(len(data))]
        try:
            unpack(bytes(data))
        except DeviceError:
            pass
