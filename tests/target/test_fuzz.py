"""Seeded fuzzing of what hosts send to the controller role.

Invariant (wire level): whatever bytes arrive, in whatever pieces, the
controller queue pair produces events or raises PeerProtocolError (or
ConnectionLost for a well-formed H2CTermReq): never another exception,
never a hang.  Invariant (live target): after a stream of mutated PDUs the
daemon still serves another association, and no connection thread died of
an internal error.
"""

from __future__ import annotations

import logging
import random
import socket

import pytest

from nvmecontrol.errors import ConnectionLost, PeerProtocolError
from nvmecontrol.wire import fabrics as F, nvm, pdu as P
from nvmecontrol.wire.capsule import encode_sqe
from nvmecontrol.wire.qpair import Command, ControllerQueuePair, WriteData

from .helpers import connect, run

SEED = 20261121
CASES = 1500


def _seed_stream(hdgst: bool, ddgst: bool) -> tuple[bytes, bytes]:
    """(ICReq, a valid stream of PDUs after it) as a host would send them."""
    icreq = P.encode_icreq(P.ICReq(dgst=(P.DGST_HDGST if hdgst else 0)
                                   | (P.DGST_DDGST if ddgst else 0)))
    out = []
    connect_data = F.encode_connect_data(F.ConnectData(bytes(16), 0xFFFF, "nqn.x", "nqn.y"))
    sqe = F.build_connect(F.ConnectCmd(qid=0, sqsize=31))
    raw = encode_sqe(sqe._replace(sgl=sqe.sgl._replace(length=1024, type=0x01)))
    out += P.encode_capsule_cmd(raw, connect_data, hdgst=hdgst, ddgst=ddgst)
    raw = encode_sqe(nvm.build_write(1, 0, 1)._replace(cid=1))
    out += P.encode_capsule_cmd(raw, b"w" * 512, hdgst=hdgst, ddgst=ddgst)
    raw = encode_sqe(nvm.build_write(1, 0, 16)._replace(cid=2))
    out += P.encode_capsule_cmd(raw, hdgst=hdgst, ddgst=ddgst)
    out += P.encode_h2c_data(P.H2CData(2, 0, 0, b"d" * 8192), hdgst=hdgst, ddgst=ddgst)
    raw = encode_sqe(nvm.build_read(1, 0, 8)._replace(cid=3))
    out += P.encode_capsule_cmd(raw, hdgst=hdgst, ddgst=ddgst)
    return icreq, P.join(out)


def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        if op == 0 and b:  # flip bits
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:  # random byte
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 2:  # interesting values in a header field
            i = rng.randrange(min(len(b), 96) or 1)
            v = rng.choice([0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0xFFFFFFFF, 72, 24, 128])
            b[i:i + 4] = v.to_bytes(4, "little")
        elif op == 3 and b:  # truncate
            del b[rng.randrange(len(b)):]
        elif op == 4:  # insert garbage
            i = rng.randrange(len(b) + 1)
            b[i:i] = rng.randbytes(rng.randint(1, 16))
        elif op == 5 and len(b) > 8:  # duplicate a slice
            i = rng.randrange(len(b) - 8)
            b[i:i] = b[i:i + rng.randint(1, 80)]
    return bytes(b)


def _drive(qp: ControllerQueuePair, stream: bytes, rng: random.Random) -> None:
    pos = 0
    while pos < len(stream):
        n = rng.choice([1, 7, 64, 4096, len(stream)])
        qp.decoder.feed(stream[pos:pos + n])
        pos += n
        for ev in qp.receive():
            assert type(ev).__name__ in ("Established", "Command", "WriteData")
            if type(ev) is Command:
                opc = ev.sqe[0]
                length = int.from_bytes(ev.sqe[32:36], "little")
                if opc == nvm.NvmOpc.WRITE and ev.data is None and 0 < length <= 1 << 20:
                    qp.request_data(ev.cid, length)
                qp.respond(ev.cid)
            elif type(ev) is WriteData:
                assert len(ev.data) <= qp.maxh2cdata
        qp.take_outgoing()


@pytest.mark.parametrize("digests", [(False, False), (True, True)], ids=["plain", "digests"])
def test_controller_role_fuzz(digests):
    rng = random.Random(SEED + digests[0])
    icreq, body = _seed_stream(*digests)
    outcomes = {"events": 0, "protocol": 0, "lost": 0}
    for _ in range(CASES):
        qp = ControllerQueuePair(maxh2cdata=1 << 20, max_icd=8192)
        whole = icreq + body if rng.random() < 0.2 else icreq + _mutate(rng, body)
        if rng.random() < 0.1:
            whole = _mutate(rng, icreq) + body
        try:
            _drive(qp, whole, rng)
            outcomes["events"] += 1
        except PeerProtocolError as e:
            assert e.fes is None or 1 <= e.fes <= 6
            outcomes["protocol"] += 1
        except ConnectionLost:
            outcomes["lost"] += 1
    assert outcomes["events"] and outcomes["protocol"]


def _admin_stream(subnqn: str) -> bytes:
    """Connect to a real subsystem, enable, then a spread of admin commands."""
    from nvmecontrol.wire import admin
    from nvmecontrol.wire.fabrics import CC, Prop
    out = []
    data = F.encode_connect_data(F.ConnectData(bytes(16), 0xFFFF, subnqn, "nqn.2014-08.org.fuzz"))
    sqe = F.build_connect(F.ConnectCmd(qid=0, sqsize=31, kato_ms=5000))
    out += P.encode_capsule_cmd(encode_sqe(sqe._replace(sgl=sqe.sgl._replace(length=1024,
                                                                             type=0x01))), data)
    cmds = [F.build_property_set(Prop.CC, CC(en=1, iosqes=6, iocqes=4).encode()),
            F.build_property_get(Prop.CAP), admin.build_identify(1), admin.build_identify(0, 1),
            admin.build_get_log_page(admin.GetLogPage(lid=2, length=512)),
            admin.build_get_log_page(admin.GetLogPage(lid=0x70, length=1024, nsid=0)),
            admin.build_set_num_queues(2), admin.build_async_event_request(),
            admin.build_keep_alive(), admin.build_get_features(admin.Feature.KEEP_ALIVE_TIMER)]
    for cid, c in enumerate(cmds, 1):
        length = 4096 if c.opc == admin.AdminOpc.IDENTIFY else (c.cdw10 >> 16) * 4 + 4 \
            if c.opc == admin.AdminOpc.GET_LOG_PAGE else 0
        out += P.encode_capsule_cmd(encode_sqe(c._replace(cid=cid, sgl=c.sgl._replace(
            length=length))))
    return P.join(out)


def _io_stream() -> bytes:
    out = []
    cmds = [(nvm.build_write(1, 0, 1), b"w" * 512), (nvm.build_read(1, 0, 8), None),
            (nvm.build_write(1, 8, 32), None), (nvm.build_flush(1), None),
            (nvm.build_write_zeroes(1, 0, 4, deallocate=True), None),
            (nvm.build_deallocate(1, 2), nvm.encode_dsm_ranges([(0, 1), (10, 2)]))]
    for cid, (c, data) in enumerate(cmds, 1):
        if data is not None:
            c = c._replace(sgl=c.sgl._replace(length=len(data), type=0x01))
        elif c.opc in (nvm.NvmOpc.READ, nvm.NvmOpc.WRITE):
            c = c._replace(sgl=c.sgl._replace(length=((c.cdw12 & 0xFFFF) + 1) * 512))
        out += P.encode_capsule_cmd(encode_sqe(c._replace(cid=cid)), data)
    out += P.encode_h2c_data(P.H2CData(3, 0, 0, b"h" * 16384))
    return P.join(out)


def _send_and_drain(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(2)
        while sock.recv(65536):
            pass
    except OSError:
        pass
    finally:
        sock.close()


def test_live_target_survives_mutated_streams(nvmfd_server, caplog):
    rng = random.Random(SEED)
    caplog.set_level(logging.INFO, logger="nvmfd")
    bystander = connect(nvmfd_server, num_io_queues=1)
    icreq = P.encode_icreq(P.ICReq())
    admin_body = _admin_stream(nvmfd_server.subnqn)
    io_body = _io_stream()
    try:
        for i in range(40):
            s = socket.create_connection((nvmfd_server.host, nvmfd_server.port), timeout=5)
            _send_and_drain(s, icreq + _mutate(rng, admin_body) if i % 5
                            else _mutate(rng, icreq + admin_body))
        for i in range(40):
            a = connect(nvmfd_server, num_io_queues=1)
            try:
                _send_and_drain(a.io[0].driver.sock, _mutate(rng, io_body))
            finally:
                a.close()
            if i % 10 == 0:
                assert run(bystander.io[0], nvm.build_read(1, 0, 1), read_len=512)[0].status == 0
        assert run(bystander.io[0], nvm.build_read(1, 0, 1), read_len=512)[0].status == 0
    finally:
        bystander.shutdown()
    assert "internal error" not in caplog.text
    assert "Traceback" not in caplog.text
