"""How ``connect_association`` reports a controller that refuses, stalls or vanishes.

A tiny scripted controller (``ControllerQueuePair`` behind a loopback
listener, in a thread) answers Connect, Property Get/Set and Identify, and
can be told to fail Connect, never become ready, stop answering or close at
a chosen command.  Deadlines are short (CAP.TO = 1, i.e. 0.5 s; host
timeouts of 0.3 s) so the whole file runs in a few seconds.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field

import pytest

from nvmecontrol.errors import (CommandFailed, ConnectError, ConnectionLost, PeerTimeout,
                                Unsupported, UsageError)
from nvmecontrol.host.association import AssociationParams, connect_association
from nvmecontrol.hostid import HostIdentity
from nvmecontrol.transport.address import Address
from nvmecontrol.transport.tcp import TcpQueuePair
from nvmecontrol.wire import fabrics as F
from nvmecontrol.wire.capsule import decode_sqe
from nvmecontrol.wire.qpair import Command, ControllerQueuePair

SUBNQN = "nqn.2024-01.org.example:fake"
HOST = HostIdentity(
    hostnqn="nqn.2014-08.org.nvmexpress:uuid:8f0c2a4e-1d6b-4e55-9a0b-6c3d2e1f0a9b",
    hostid=uuid.UUID("8f0c2a4e-1d6b-4e55-9a0b-6c3d2e1f0a9b"),
    hostnqn_source="test",
    hostid_source="test",
)
CNTLID = 0x0007
# MQES 31, CQR 1, TO 1 (0.5 s), CSS NVM: computed by hand, not with the codec.
CAP_VALUE = 31 | (1 << 16) | (1 << 24) | (1 << 37)


@dataclass
class Script:
    connect_status: int = 0
    connect_dw0: int = CNTLID
    ready: bool = True
    silent_from: str | None = None  # a command name: stop answering from there on
    close_at: str | None = None  # a command name: close the connection there
    delay_s: float = 0.0  # before each answer (a slow but live controller)
    seen: list = field(default_factory=list)  # (name, details) in arrival order


def command_name(sqe) -> str:
    if sqe.opc == F.OPC_FABRICS:
        fctype = F.fctype_of(sqe)
        if fctype == F.FCType.CONNECT:
            return "Connect"
        if fctype in (F.FCType.PROPERTY_GET, F.FCType.PROPERTY_SET):
            prop = F.parse_property(sqe).offset
            verb = "Get" if fctype == F.FCType.PROPERTY_GET else "Set"
            return f"{verb} {F.Prop(prop).name if prop in set(F.Prop) else hex(prop)}"
        return f"Fabrics {fctype:#x}"
    return {0x06: "Identify", 0x09: "Set Features", 0x18: "Keep Alive"}.get(sqe.opc, hex(sqe.opc))


class FakeController:
    """Serves one admin connection at a time according to ``script``."""

    def __init__(self, script: Script):
        self.script = script
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(4)
        self.srv.settimeout(0.05)
        self.port = self.srv.getsockname()[1]
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.cc = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def address(self) -> Address:
        return Address("127.0.0.1", self.port, f"127.0.0.1:{self.port}")

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.srv.close()
        assert not self.thread.is_alive()
        if self.errors:
            raise self.errors[0]

    # -- server --
    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.srv.accept()
            except (socket.timeout, OSError):
                continue
            try:
                self._connection(conn)
            except BaseException as e:  # surfaced by close()
                self.errors.append(e)
            finally:
                conn.close()

    def _connection(self, conn):
        tq = TcpQueuePair(conn, ControllerQueuePair(), timeout=5)
        silent = False
        while not self.stop.is_set():
            try:
                events = tq.poll(time.monotonic() + 0.05)
            except PeerTimeout:
                continue
            except ConnectionLost:
                return
            for ev in events:
                if not isinstance(ev, Command):
                    continue
                sqe = decode_sqe(ev.sqe)
                name = command_name(sqe)
                self.script.seen.append((name, sqe, bytes(ev.data) if ev.data is not None else None))
                if name == self.script.close_at:
                    tq.close()
                    return
                if name == self.script.silent_from:
                    silent = True
                if not silent:
                    if self.script.delay_s:
                        time.sleep(self.script.delay_s)
                    self._answer(tq.qp, ev.cid, name, sqe, ev.data)
            tq.flush()

    def _answer(self, qp: ControllerQueuePair, cid: int, name: str, sqe, data):
        s = self.script
        if name == "Connect":
            c = F.parse_connect(sqe)
            qp.sqsize = c.sqsize + 1
            if c.cattr & F.CATTR_DISABLE_SQFLOW:
                qp.sq_flow_control = False
            qp.respond(cid, status=s.connect_status, dw0=s.connect_dw0)
        elif name.startswith("Get "):
            prop = F.parse_property(sqe).offset
            if prop == F.Prop.CAP:
                qp.respond(cid, dw0=CAP_VALUE & 0xFFFFFFFF, dw1=CAP_VALUE >> 32)
            elif prop == F.Prop.CC:
                qp.respond(cid, dw0=self.cc)
            elif prop == F.Prop.CSTS:
                en, shn = self.cc & 1, (self.cc >> 14) & 3
                csts = (1 if en and s.ready and not shn else 0) | ((2 << 2) if shn else 0)
                qp.respond(cid, dw0=csts)
            elif prop == F.Prop.VS:
                qp.respond(cid, dw0=0x00010400)
            else:
                qp.respond(cid, status=0x4002)
        elif name.startswith("Set "):
            self.cc = F.parse_property(sqe).value
            qp.respond(cid)
        elif name == "Identify":
            qp.send_data(cid, bytes(4096))
            qp.respond(cid)
        else:
            qp.respond(cid)


@pytest.fixture
def fake():
    made = []

    def make(**kw) -> FakeController:
        f = FakeController(Script(**kw))
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


def connect(f: FakeController, timeout_s: float = 2.0):
    return connect_association(f.address, SUBNQN, HOST, AssociationParams(timeout_s=timeout_s))


def names(f: FakeController) -> list[str]:
    return [n for n, _, _ in f.script.seen]


# --- the fake itself behaves ------------------------------------------------------------

def test_fake_controller_happy_path(fake):
    f = fake()
    assoc = connect(f)
    try:
        assert assoc.cntlid == CNTLID
        assert assoc.cap.mqes == 31 and assoc.cap.to == 1
        assert assoc.sq_flow_control is False  # we asked to disable it and the fake agreed
    finally:
        assoc.shutdown()
    name, sqe, data = f.script.seen[0]
    assert name == "Connect"
    c = F.parse_connect(sqe)
    assert (c.qid, c.sqsize, c.cattr, c.kato_ms) == (0, 31, F.CATTR_DISABLE_SQFLOW, 120_000)
    cd = F.decode_connect_data(data)
    assert cd == F.ConnectData(HOST.hostid.bytes, 0xFFFF, SUBNQN, HOST.hostnqn)
    seq = names(f)
    assert seq[:4] == ["Connect", "Get CAP", "Get CC", "Set CC"]
    assert "Identify" in seq
    en = [F.parse_property(s).value for n, s, _ in f.script.seen if n == "Set CC"][0]
    assert F.CC.decode(en) == F.CC(en=1, iosqes=6, iocqes=4)


# --- Connect refused ----------------------------------------------------------------------

def test_connect_invalid_host(fake):
    # SCT 1, SC 84h, DNR: what Linux nvmet answers a host NQN outside allowed_hosts.
    f = fake(connect_status=0x4184, connect_dw0=0)
    with pytest.raises(CommandFailed) as ei:
        connect(f)
    assert "Connect Invalid Host" in str(ei.value)
    assert ei.value.status == 0x4184
    assert names(f) == ["Connect"]


@pytest.mark.parametrize("dw0,ipo,where", [
    (0x00010100, 256, "Connect data"),  # SUBNQN, as nvmet reports an unknown subsystem
    (0x00010200, 512, "Connect data"),  # HOSTNQN
    (0x0000002A, 42, "Connect command"),  # QID
], ids=["subnqn", "hostnqn", "qid"])
def test_connect_invalid_parameters(fake, dw0, ipo, where):
    f = fake(connect_status=0x4182, connect_dw0=dw0)
    with pytest.raises(CommandFailed) as ei:
        connect(f)
    msg = str(ei.value)
    assert "Connect Invalid Parameters" in msg
    assert f"byte {ipo} " in msg and where in msg


def test_connect_invalid_parameters_is_a_command_failure(fake):
    f = fake(connect_status=0x4182, connect_dw0=0x00010100)
    with pytest.raises(CommandFailed, match="Connect Invalid Parameters") as ei:
        connect(f)
    assert ei.value.status == 0x4182


@pytest.mark.parametrize("authreq,family,phrase", [
    (F.AUTHREQ_ATR, UsageError, "--dhchap-secret"),  # no secret given (tests/host/test_association_auth.py)
    (F.AUTHREQ_ASCR, Unsupported, "secure channel")])
def test_authreq_without_what_it_needs(fake, authreq, family, phrase):
    f = fake(connect_dw0=CNTLID | (authreq << 16))
    with pytest.raises(family) as ei:
        connect(f)
    assert phrase in str(ei.value)
    assert SUBNQN in str(ei.value)
    assert names(f) == ["Connect"]  # nothing sent after the refusal


# --- stalls and disappearances ------------------------------------------------------------

def test_never_ready_times_out_after_cap_to(fake):
    f = fake(ready=False)
    start = time.monotonic()
    with pytest.raises(PeerTimeout) as ei:
        connect(f)
    elapsed = time.monotonic() - start
    assert "ready" in str(ei.value) and "CAP.TO" in str(ei.value)
    assert 0.5 <= elapsed < 3.0
    seq = names(f)
    assert seq.count("Get CSTS") >= 2  # it polled, then gave up
    assert "Identify" not in seq
    # Afterwards the host shut the controller down (CC.SHN normal).
    shn = [F.CC.decode(F.parse_property(s).value).shn for n, s, _ in f.script.seen if n == "Set CC"]
    assert shn[-1] == F.SHN_NORMAL


@pytest.mark.parametrize("at", ["Connect", "Get CAP", "Identify"])
def test_peer_stops_answering(fake, at):
    f = fake(silent_from=at)
    start = time.monotonic()
    with pytest.raises(PeerTimeout):
        connect(f, timeout_s=0.3)
    # One timeout for the stalled command, at most one more for the shutdown attempt.
    assert time.monotonic() - start < 2.0
    assert at in names(f)


@pytest.mark.parametrize("at", ["Connect", "Get CAP", "Set CC", "Identify"])
def test_peer_closes_mid_command(fake, at):
    f = fake(close_at=at)
    start = time.monotonic()
    with pytest.raises(ConnectionLost):
        connect(f)
    assert time.monotonic() - start < 2.0
    assert names(f)[-1] == at


def test_nothing_listening(fake):
    f = fake()
    port = f.port
    f.close()  # listener gone
    with pytest.raises(ConnectError, match=f"127.0.0.1:{port}"):
        connect_association(Address("127.0.0.1", port, f"127.0.0.1:{port}"), SUBNQN, HOST,
                            AssociationParams(timeout_s=1))


def test_cap_value_by_hand():
    # Guard the fake's register against a typo: these are the fields the host relies on.
    assert struct.pack("<Q", CAP_VALUE) == bytes.fromhex("1f00010120000000")


def test_a_deadline_bounds_the_whole_operation(fake):
    """Every answer comes in time for its command (0.15 s < 0.5 s), but the
    operation as a whole may take no longer than its deadline."""
    f = fake(delay_s=0.15)
    with pytest.raises(PeerTimeout, match="the operation did not finish within 0.5 s"):
        connect_association(f.address, SUBNQN, HOST,
                            AssociationParams(timeout_s=0.5, deadline=time.monotonic() + 0.5))


def test_without_a_deadline_each_command_has_its_own_timeout(fake):
    f = fake(delay_s=0.15)
    a = connect_association(f.address, SUBNQN, HOST, AssociationParams(timeout_s=0.5))
    a.shutdown()
    assert len(names(f)) > 5  # several commands, each answered within its timeout
