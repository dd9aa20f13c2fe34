"""NBD requests turned into NVMe commands (request.split)."""

from __future__ import annotations

import pytest

from nvmecontrol.backends.userspace import request as R
from nvmecontrol.wire.nvm import FUA, NvmOpc

NS = R.Namespace(3, 512, 1 << 30, max_cmd_bytes=128 * 1024, can_write_zeroes=True,
                 can_trim=True)


def req(kind, offset, length):
    return R.NbdRequest(None, 7, kind, offset, length)


def test_a_small_read_is_its_own_command():
    r = req(R.READ, 4096, 4096)
    out = R.split(r, NS)
    assert out == [r] and r.remaining == 1 and r.req is r
    assert (r.opc, r.nsid, r.slba, r.nlb, r.read_len, r.buf_off) == (NvmOpc.READ, 3, 8, 8, 4096, 0)


def test_a_large_read_is_cut_at_the_command_size_with_buffer_offsets():
    r = req(R.READ, 0, 300 * 1024)
    out = R.split(r, NS)
    assert [(p.slba, p.nlb, p.read_len, p.buf_off) for p in out] == [
        (0, 256, 131072, 0), (256, 256, 131072, 131072), (512, 88, 45056, 262144)]
    assert all(p.req is r for p in out) and r.remaining == 3


def test_a_large_write_shares_its_payload_and_keeps_fua():
    data = bytes(range(256)) * 1024  # 256 KiB
    r = req(R.WRITE, 512, len(data))
    out = R.split(r, NS, data, fua=True)
    assert [bytes(p.data) for p in out] == [data[:131072], data[131072:]]
    assert all(type(p.data) is memoryview and p.data.obj is data for p in out)
    assert all(p.c12 == FUA | 255 and p.opc == NvmOpc.WRITE for p in out)
    assert [p.slba for p in out] == [1, 257]


def test_a_small_write_is_its_own_command_with_fua_beside_nlb():
    data = bytes(4096)
    r = req(R.WRITE, (1 << 33) * 512, 4096)
    assert R.split(r, NS, data, fua=True) == [r]
    # SLBA 2^33 spans CDW10/CDW11; NLB 0's based in CDW12 15:0, FUA in bit 30.
    assert (r.c10, r.c11, r.c12, r.data, r.read_len) == (0, 2, FUA | 7, data, 0)
    assert (r.slba, r.nlb) == (1 << 33, 8)


def test_parts_append_to_the_batch():
    batch = []
    a, b = req(R.READ, 0, 512), req(R.FLUSH, 0, 0)
    R.split(a, NS, out=batch)
    R.split(b, NS, out=batch)
    assert batch == [a, b] and b.opc == NvmOpc.FLUSH and b.remaining == 1


@pytest.mark.parametrize("kind, opc", [(R.ZERO, NvmOpc.WRITE_ZEROES), (R.TRIM, NvmOpc.DATASET_MANAGEMENT)])
def test_zeroes_and_trim_become_their_commands(kind, opc):
    r = req(kind, 0, 64 * 1024 * 1024)
    out = R.split(r, NS)
    assert all(p.opc == opc for p in out) and r.remaining == len(out)
    if kind == R.ZERO:
        # NLB is 16 bits: 64 MiB of 512-byte blocks takes two commands.
        assert [(p.slba, p.nlb) for p in out] == [(0, 0x10000), (0x10000, 0x10000)]
    else:
        # One range; NR 0 in CDW10, Attribute - Deallocate in CDW11.
        assert len(out) == 1 and len(out[0].data) == 16
        assert (out[0].c10, out[0].c11, out[0].nlb) == (0, 0x4, 0)


def test_a_request_that_is_its_own_part_holds_no_reference_to_itself():
    """A self-reference would leave requests (and their write payloads) to the
    garbage collector instead of freeing them with their reply."""
    import gc

    r = req(R.WRITE, 0, 4096)
    R.split(r, NS, bytes(4096))
    assert r.req is r
    assert all(x is not r for x in gc.get_referents(r))
