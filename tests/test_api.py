"""The public Python API (nvmecontrol.api) against nvmfd."""

from __future__ import annotations

import os
import threading

import pytest

from nvmecontrol import api

HOSTID = "3a7c1e52-9b0d-4f6e-8a21-5c4d3e2f1a0b"
HOSTNQN = f"nqn.2014-08.org.nvmexpress:uuid:{HOSTID}"
WHO = {"hostnqn": HOSTNQN, "hostid": HOSTID}


@pytest.fixture
def ctrl(nvmfd_factory):
    t = nvmfd_factory(namespaces=("mem:8M", "mem:4M"))
    with api.connect(f"127.0.0.1:{t.port}", t.subnqn, io_queues=2, kato=5, **WHO) as c:
        yield c


def test_discover_lists_the_subsystem(nvmfd_server):
    log = api.discover(f"127.0.0.1:{nvmfd_server.port}", **WHO)
    assert nvmfd_server.subnqn in [e.subnqn for e in log.entries]
    assert log.header.numrec == len(log.entries)


def test_controller_identify_and_namespaces(ctrl):
    assert ctrl.identify().subnqn == ctrl.subnqn and ctrl.cntlid > 0
    nss = ctrl.namespaces()
    assert [(n.nsid, n.size, n.block_size) for n in nss] == [(1, 8 << 20, 512), (2, 4 << 20, 512)]
    with pytest.raises(api.NotFound):
        ctrl.namespace(7)


def test_read_write_flush_round_trip_of_any_size(ctrl):
    ns = ctrl.namespace(1)
    data = os.urandom(3 << 20)  # larger than one command: split and reassembled
    ns.write(100, data)
    ns.flush()
    assert ns.read(100, len(data) // 512) == data
    buf = bytearray(4096)
    assert ns.readinto(100, buf) == 4096 and bytes(buf) == data[:4096]


def test_many_commands_in_flight_from_one_thread(ctrl):
    ns = ctrl.namespace(2)
    blocks = [os.urandom(4096) for _ in range(256)]
    _all([ns.submit_write(i * 8, b) for i, b in enumerate(blocks)])
    futures = [ns.submit_read(i * 8, 8) for i in range(256)]
    assert [bytes(f.result(timeout=30)) for f in futures] == blocks


def test_threads_share_a_controller(ctrl):
    ns = ctrl.namespace(1)
    errors = []

    def worker(k):
        try:
            for i in range(50):
                data = bytes([k]) * 4096
                ns.write(k * 1000 + i * 8, data)
                assert ns.read(k * 1000 + i * 8, 8) == data
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []


def test_write_zeroes_and_trim(ctrl):
    ns = ctrl.namespace(2)
    ns.write(0, b"\xff" * 8192)
    ns.write_zeroes(0, 8)
    assert ns.read(0, 16) == bytes(4096) + b"\xff" * 4096
    ns.trim(8, 8)  # deallocated blocks of a RAM namespace read as zeroes
    assert ns.read(8, 8) == bytes(4096)


def test_errors_carry_the_status_and_bad_arguments_are_refused(ctrl):
    ns = ctrl.namespace(2)
    with pytest.raises(api.UsageError):
        ns.read(ns.blocks - 1, 2)  # past the end: refused before it is sent
    with pytest.raises(api.UsageError):
        ns.write(0, b"x" * 100)  # not whole blocks
    # Past the end, sent anyway (a Namespace for NSID 2 with a larger size):
    ns.blocks += 8
    with pytest.raises(api.CommandError) as info:
        ns.read(ns.blocks - 8, 8)
    assert info.value.status & 0xFF == 0x80  # LBA Out of Range
    assert "LBA Out of Range" in str(info.value)
    # The message names the command by its fields (built only when needed).
    assert str(info.value).startswith(f"Read {ns.blocks - 8}+8")
    with pytest.raises(api.CommandError, match=rf"^Write {ns.blocks - 1}\+1"):
        ns.write(ns.blocks - 1, bytes(ns.block_size))


def test_log_page_and_features(ctrl):
    smart = ctrl.log_page(0x02, 512)
    assert len(smart) == 512
    # Asynchronous Event Configuration: what is set is what is read back.
    ctrl.set_features(0x0B, 0)
    assert ctrl.get_features(0x0B) == 0
    ctrl.set_features(0x0B, 1 << 8)
    assert ctrl.get_features(0x0B) == 1 << 8
    with pytest.raises(api.CommandError) as info:
        ctrl.get_features(0x7E)  # no such feature
    assert info.value.status & 0xFF == 0x02  # Invalid Field in Command


def test_closed_controller_refuses_work(nvmfd_server):
    c = api.connect(f"127.0.0.1:{nvmfd_server.port}", nvmfd_server.subnqn, **WHO)
    ns = c.namespace(1)
    c.close()
    c.close()  # idempotent
    with pytest.raises(api.ConnectionLost):
        ns.read(0, 1)


def test_a_dropped_connection_fails_the_commands_in_flight(nvmfd_server):
    c = api.connect(f"127.0.0.1:{nvmfd_server.port}", nvmfd_server.subnqn, kato=0, **WHO)
    try:
        ns = c.namespace(1)
        assert ns.read(0, 1) == bytes(512)
        nvmfd_server.server.terminate(all=True)
        with pytest.raises(api.Error):
            for _ in range(100):  # the loss is noticed by the receiver, then by submit
                ns.read(0, 1)
    finally:
        c.close()


def _all(futures):
    for f in futures:
        f.result(timeout=30)


def test_a_read_queued_behind_writes_keeps_its_buffer(nvmfd_server):
    """More commands than the queue holds, a read after the writes: the read
    goes out with its data buffer when its turn comes (review finding)."""
    with api.connect(f"127.0.0.1:{nvmfd_server.port}", nvmfd_server.subnqn, queue_size=8,
                     **WHO) as c:
        ns = c.namespace(1)
        writes = [ns.submit_write(i, bytes([i]) * 512) for i in range(40)]
        into = bytearray(512)
        read = ns.submit_read(39, 1, into)
        _all(writes)
        assert read.result(timeout=30) is into and bytes(into) == bytes([39]) * 512


def test_commands_completed_before_a_protocol_error_are_finished():
    """A batch whose second PDU is bad: the command the first one completed
    is finished, not left waiting for ever (review finding)."""
    import struct
    import threading as T

    from nvmecontrol.api.controllers import IoRequest, _IoQueue
    from nvmecontrol.errors import PeerProtocolError
    from nvmecontrol.wire.qpair import HostQueuePair

    qp = HostQueuePair(queue_size=8, buffer_size=4096)
    qp.start()
    qp.take_outgoing()
    qp.decoder.feed(struct.pack("<BBBBI", 1, 0, 128, 0, 128) + struct.pack("<HBBI", 0, 0, 0, 0x20000)
                    + bytes(112))
    qp.receive()
    qp.sq_flow_control = False

    class Driver:
        def __init__(self):
            self.qp, self.lock, self.stop = qp, T.Lock(), T.Event()

        def set_timeout(self, t):
            pass

        def serve(self, on_batch):
            self.stop.wait(5)

        def send(self, out):
            pass

        def abort(self):
            self.stop.set()

    d = Driver()
    q = _IoQueue(d, 0)
    cmd = q.submit(IoRequest(0x00, 1, 0, 0, 0, None, None, None, "Flush"))
    (cid,) = [c for c in range(7) if qp._pending[c] is not None]

    def resp(c):
        return struct.pack("<BBBBI", 5, 0, 24, 0, 24) + struct.pack("<IIHHHH", 0, 0, 0, 0, c, 0)

    qp.decoder.feed(resp(cid) + resp(6 if cid != 6 else 5))  # the second CID was never sent
    with pytest.raises(PeerProtocolError):
        q._on_batch()
    assert cmd.done() and cmd.result(timeout=1) is None
    d.abort()


def test_a_receiver_that_fails_on_a_bug_fails_its_commands(monkeypatch):
    """An exception that is not one of ours in the I/O queue's receiver (a
    bug) fails every command waiting on the queue, with one line naming it:
    a program's result() must not wait for ever."""
    import threading as T

    from nvmecontrol.api.controllers import IoRequest, _IoQueue
    from nvmecontrol.errors import NvmeControlError
    from nvmecontrol.wire.qpair import HostQueuePair

    qp = HostQueuePair(queue_size=8, buffer_size=4096)
    qp.start()
    qp.take_outgoing()
    batch_arrived = T.Event()

    class Driver:
        def __init__(self):
            self.qp, self.lock = qp, T.Lock()

        def set_timeout(self, t):
            pass

        def serve(self, on_batch):
            batch_arrived.wait(5)
            on_batch()

        def send(self, out):
            pass

        def abort(self):
            pass

    def broken_receive():
        raise KeyError("a bug")

    monkeypatch.setattr(qp, "receive", broken_receive)
    q = _IoQueue(Driver(), 0)
    cmd = q.submit(IoRequest(0x00, 1, 0, 0, 0, None, None, None, "Flush"))
    batch_arrived.set()
    with pytest.raises(NvmeControlError, match="receiver: internal error: KeyError: 'a bug'"):
        cmd.result(timeout=10)
    with pytest.raises(NvmeControlError, match="internal error"):
        q.submit(IoRequest(0x00, 1, 0, 0, 0, None, None, None, "Flush"))


def test_result_times_out_when_the_controller_stops_reading():
    """A controller that no longer reads holds our sends: result(timeout)
    still raises PeerTimeout on time, whatever is stuck in a send (review
    finding: a waiting thread that sent deferred commands itself blocked)."""
    import threading as T
    import time

    from nvmecontrol.api.controllers import IoRequest, _IoQueue
    from nvmecontrol.errors import PeerTimeout
    from nvmecontrol.wire.nvm import NvmOpc

    class QueuePair:
        def __init__(self):
            self.outstanding, self._out = 2, []  # two commands already in flight

        def room(self):
            return 32

        def queue_command(self, *args):
            self.outstanding += 1
            self._out.append(b"capsule")

        def take_outgoing(self):
            out, self._out = self._out, []
            return out

        def outstanding_tags(self):
            return []

    class Driver:  # send blocks, as sendmsg does on a full socket buffer
        def __init__(self):
            self.qp, self.lock, self.gone = QueuePair(), T.Lock(), T.Event()
            self.send_lock = T.Lock()

        def set_timeout(self, t):
            pass

        def serve(self, on_batch):
            self.gone.wait(30)

        def send(self, out):
            with self.send_lock:
                self.gone.wait(30)

        def abort(self):
            self.gone.set()

    d = Driver()
    q = _IoQueue(d, 0)
    try:
        q.submit(IoRequest(NvmOpc.WRITE, 1, 0, 1, 0, b"\0" * 512, None, None, None))
        time.sleep(0.3)  # the sender thread took it and is stuck sending
        cmd = q.submit(IoRequest(NvmOpc.WRITE, 1, 8, 1, 0, b"\0" * 512, None, None, None))
        outcome = []

        def wait():
            try:
                cmd.result(timeout=1.0)
            except PeerTimeout as e:
                outcome.append(str(e))

        waiter = T.Thread(target=wait, daemon=True)
        waiter.start()
        waiter.join(10)
        assert outcome == ["Write 8+1: not completed within 1 s"]
    finally:
        d.abort()
