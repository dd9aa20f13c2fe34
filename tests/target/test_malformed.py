"""Hostile and broken PDUs: the right C2HTermReq (FES/FEI) or status, and nobody else hurt."""

from __future__ import annotations

import socket
import struct

import pytest

from nvmecontrol.wire import crc, nvm, pdu as P
from nvmecontrol.wire.capsule import SGL, SGL_DATA_BLOCK_OFFSET, encode_sqe, set_sgl

from .helpers import connect, raw_queue, read_pdus, run, sc, termreq_of


@pytest.fixture
def bystander(nvmfd_server):
    """Another host's association, which must keep working throughout."""
    a = connect(nvmfd_server, num_io_queues=1)
    assert run(a.io[0], nvm.build_write(1, 7, 1), write_data=b"b" * 512)[0].status == 0
    yield a
    assert run(a.io[0], nvm.build_read(1, 7, 1), read_len=512)[1] == b"b" * 512
    a.shutdown()


def _raw_socket(handle) -> socket.socket:
    s = socket.create_connection((handle.host, handle.port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _term_before_ic(handle, data: bytes) -> P.TermReq:
    s = _raw_socket(handle)
    try:
        s.sendall(data)
        return termreq_of(read_pdus(s, P.PduDecoder(P.ROLE_HOST)))
    finally:
        s.close()


def _term_after_ic(handle, data: bytes, **kw) -> P.TermReq:
    tq = raw_queue(handle, **kw)
    try:
        tq.sock.sendall(data)
        return termreq_of(read_pdus(tq.sock, tq.qp.decoder))
    finally:
        tq.close()


def _capsule_header(hlen=72, pdo=0, plen=72, flags=0, ptype=P.PduType.CapsuleCmd) -> bytes:
    return struct.pack("<BBBBI", ptype, flags, hlen, pdo, plen)


def test_garbage_first_bytes(nvmfd_server, bystander):
    t = _term_before_ic(nvmfd_server, b"\xff" * 8)
    assert (t.fes, t.fei) == (P.FES.INVALID_HEADER_FIELD, 0)


def test_capsule_before_icreq_is_a_sequence_error(nvmfd_server, bystander):
    sqe = encode_sqe(nvm.build_flush(1))
    t = _term_before_ic(nvmfd_server, _capsule_header() + bytes(sqe))
    assert (t.fes, t.fei) == (P.FES.PDU_SEQUENCE_ERROR, 0)


def test_icreq_with_unknown_pfv(nvmfd_server, bystander):
    t = _term_before_ic(nvmfd_server, P.encode_icreq(P.ICReq(pfv=1)))
    assert (t.fes, t.fei) == (P.FES.UNSUPPORTED_PARAMETER, 8)


def test_bad_hlen(nvmfd_server, bystander):
    sent = _capsule_header(hlen=70) + bytes(64)
    t = _term_after_ic(nvmfd_server, sent)
    assert (t.fes, t.fei) == (P.FES.INVALID_HEADER_FIELD, 2)
    assert t.data == sent  # the offending header is echoed back


def test_oversized_plen(nvmfd_server, bystander):
    t = _term_after_ic(nvmfd_server, _capsule_header(pdo=72, plen=72 + (64 << 20)) + bytes(64))
    assert (t.fes, t.fei) == (P.FES.INVALID_HEADER_FIELD, 4)


def test_second_icreq(nvmfd_server, bystander):
    t = _term_after_ic(nvmfd_server, P.encode_icreq(P.ICReq()))
    assert (t.fes, t.fei) == (P.FES.PDU_SEQUENCE_ERROR, 0)


def test_h2c_data_without_r2t(nvmfd_server, bystander):
    pdu = P.join(P.encode_h2c_data(P.H2CData(cccid=3, ttag=0, datao=0, data=bytes(512))))
    t = _term_after_ic(nvmfd_server, pdu)
    assert (t.fes, t.fei) == (P.FES.INVALID_HEADER_FIELD, 8)


def test_controller_to_host_pdu_sent_to_controller(nvmfd_server, bystander):
    pdu = P.join(P.encode_capsule_resp(bytes(16)))
    t = _term_after_ic(nvmfd_server, pdu)
    assert (t.fes, t.fei) == (P.FES.INVALID_HEADER_FIELD, 0)


def test_header_digest_mismatch(nvmfd_server, bystander):
    pdu = bytearray(P.join(P.encode_capsule_cmd(encode_sqe(nvm.build_flush(1)), hdgst=True)))
    pdu[-1] ^= 0xFF
    t = _term_after_ic(nvmfd_server, bytes(pdu), hdgst=True)
    assert (t.fes, t.fei) == (P.FES.HEADER_DIGEST_ERROR, 0)


def test_missing_header_digest_flag(nvmfd_server, bystander):
    pdu = P.join(P.encode_capsule_cmd(encode_sqe(nvm.build_flush(1))))
    t = _term_after_ic(nvmfd_server, pdu, hdgst=True)
    assert (t.fes, t.fei) == (P.FES.INVALID_HEADER_FIELD, 1)


def test_data_digest_error_fails_only_the_command(nvmfd_server, bystander):
    a = connect(nvmfd_server, num_io_queues=1, hdgst=True, ddgst=True)
    try:
        q = a.io[0]
        qp = q.qp
        cid = qp.submit(nvm.build_write(1, 20, 1), write_data=b"z" * 512)
        out = qp.take_outgoing()
        assert len(out[-1]) == 4  # the data digest
        out[-1] = bytes(b ^ 0xFF for b in out[-1])
        qp.outgoing = out
        q.driver.flush()
        cqe = q.wait(cid, timeout=5)
        assert sc(cqe) == (0, 0x22, False)  # Transient Transport Error, retryable
        # The connection stays up and the block was not written.
        cqe, data = run(q, nvm.build_read(1, 20, 1), read_len=512)
        assert cqe.status == 0 and data != b"z" * 512
        # Same through R2T: a corrupted H2CData.
        big = b"y" * 65536
        cid = qp.submit(nvm.build_write(1, 100, 128), write_data=big)
        q.driver.flush()
        original = P.encode_h2c_data

        def corrupt(p, **kw):
            bufs = original(p, **kw)
            bufs[-1] = bytes(b ^ 1 for b in bufs[-1])
            return bufs
        P.encode_h2c_data = corrupt
        try:
            cqe = q.wait(cid, timeout=5)
        finally:
            P.encode_h2c_data = original
        assert sc(cqe) == (0, 0x22, False)
        assert run(q, nvm.build_write(1, 100, 128), write_data=big)[0].status == 0
    finally:
        a.shutdown()


def test_in_capsule_sgl_mismatch(nvmfd_server, bystander):
    """Status errors, not TermReqs: SGL offset and length that do not fit the data."""
    a = connect(nvmfd_server, num_io_queues=1)
    try:
        q = a.io[0]
        for sgl, expect in ((SGL(16, 512, SGL_DATA_BLOCK_OFFSET), 0x16),
                            (SGL(0, 1024, SGL_DATA_BLOCK_OFFSET), 0x0F),
                            (SGL(0, 512, 0x00), 0x11)):
            cid = q.qp.submit(nvm.build_write(1, 0, 1), write_data=b"q" * 512)
            header = q.qp.outgoing[0]  # CH + SQE: patch SGL1 (SQE bytes 24-39)
            set_sgl(memoryview(header)[8:], sgl)
            q.driver.flush()
            cqe = q.wait(cid, timeout=5)
            assert sc(cqe) == (0, expect, True)
    finally:
        a.shutdown()


def test_host_termreq_closes_quietly(nvmfd_server, bystander):
    tq = raw_queue(nvmfd_server)
    try:
        tq.sock.sendall(P.encode_termreq(P.TermReq(P.FES.INVALID_HEADER_FIELD, 0)))
        assert read_pdus(tq.sock, tq.qp.decoder) == []
    finally:
        tq.close()


def test_silent_connection_is_dropped(nvmfd_server, monkeypatch, bystander):
    from nvmecontrol.target import constants
    monkeypatch.setattr(constants, "HANDSHAKE_TIMEOUT_S", 0.3)
    s = _raw_socket(nvmfd_server)
    try:
        s.settimeout(5)
        assert s.recv(100) == b""  # closed by the target
    finally:
        s.close()


def test_icreq_digest_negotiation(nvmfd_factory):
    h = nvmfd_factory(allow_hdgst=True, allow_ddgst=False)
    tq = raw_queue(h, hdgst=True, ddgst=True)
    try:
        est = tq.established
        assert est.hdgst and not est.ddgst
        assert est.maxh2cdata >= 4096
    finally:
        tq.close()
    assert crc.crc32c(b"123456789") == 0xE3069283
