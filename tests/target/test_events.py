"""Keep-alive enforcement and asynchronous event notices."""

from __future__ import annotations

import time

import pytest

from nvmecontrol.errors import ConnectionLost, NvmeControlError
from nvmecontrol.wire import admin, logpages as L, nvm

from .helpers import connect, connect_discovery, run, sc, wait_for


def _assoc_ids(handle):
    with handle.control() as c:
        return [a["id"] for a in c.request("list")["associations"]]


def test_keep_alive_expiry_closes_every_queue(nvmfd_server):
    a = connect(nvmfd_server, kato_s=1, num_io_queues=2)
    try:
        assert len(_assoc_ids(nvmfd_server)) == 1
        # Silence for longer than KATO: the association is torn down.
        assert wait_for(lambda: not _assoc_ids(nvmfd_server), timeout=4.0)
        for q in [a.admin] + a.io:
            with pytest.raises((ConnectionLost, NvmeControlError)):
                q.execute(admin.build_keep_alive() if q is a.admin else nvm.build_flush(1),
                          "after expiry", timeout=3.0)
    finally:
        a.close()


def test_keep_alive_and_traffic_keep_it_alive(nvmfd_server):
    a = connect(nvmfd_server, kato_s=1, num_io_queues=1)
    try:
        end = time.monotonic() + 2.5
        i = 0
        while time.monotonic() < end:
            # Alternate Keep Alive and I/O: both count (traffic-based keep alive).
            if i % 2:
                assert run(a.admin, admin.build_keep_alive())[0].status == 0
            else:
                assert run(a.io[0], nvm.build_flush(1))[0].status == 0
            i += 1
            time.sleep(0.25)
        assert len(_assoc_ids(nvmfd_server)) == 1
    finally:
        a.shutdown()


def test_keep_alive_with_kato_zero(nvmfd_server):
    a = connect(nvmfd_server, kato_s=0)
    try:
        assert sc(run(a.admin, admin.build_keep_alive())[0]) == (0, 0x1A, False)
    finally:
        a.shutdown()


def _aer(a):
    return a.admin.submit(admin.build_async_event_request())


def test_namespace_attribute_notice(nvmfd_server):
    a = connect(nvmfd_server, num_io_queues=1)
    try:
        cid = _aer(a)
        with nvmfd_server.control() as c:
            r = c.request("ns-add", device="mem:2M")
        assert r["nsid"] == 2
        cqe = a.admin.wait(cid, timeout=5.0)
        ev = admin.parse_aer(cqe.dw0)
        assert (ev.type, ev.info, ev.lid) == (admin.AER_TYPE_NOTICE,
                                             admin.AER_NOTICE_NS_ATTR_CHANGED,
                                             L.LogPage.CHANGED_NS)
        # The new namespace is usable.
        assert run(a.io[0], nvm.build_write(2, 0, 1), write_data=b"x" * 512)[0].status == 0
        # Masked until the log is read: a removal now queues nothing visible yet.
        cid2 = _aer(a)
        with nvmfd_server.control() as c:
            c.request("ns-remove", nsid=2)
        with pytest.raises(NvmeControlError):
            a.admin.wait(cid2, timeout=0.3)

        def changed(rae=False):
            g = admin.GetLogPage(lid=L.LogPage.CHANGED_NS, length=4096, rae=rae)
            return L.decode_changed_ns_list(a.get_log_page(g)).nsids

        assert changed(rae=True) == [2]
        assert changed() == [2]  # read without RAE clears it and re-arms the notice
        assert changed() == []
        assert sc(run(a.io[0], nvm.build_read(2, 0, 1), read_len=512)[0]) == (0, 0x0B, True)
        with nvmfd_server.control() as c:
            c.request("ns-add", device="mem:1M", nsid=5)
        cqe = a.admin.wait(cid2, timeout=5.0)
        assert admin.parse_aer(cqe.dw0).lid == L.LogPage.CHANGED_NS
        assert changed() == [5]
    finally:
        a.shutdown()


def test_aer_limit(nvmfd_server):
    a = connect(nvmfd_server)
    try:
        for _ in range(4):
            _aer(a)
        cqe, _ = run(a.admin, admin.build_async_event_request())
        assert sc(cqe) == (1, 0x05, True)
    finally:
        a.close()


def test_discovery_log_change_notice(nvmfd_server):
    d = connect_discovery(nvmfd_server)
    try:
        cid = _aer(d)
        with nvmfd_server.control() as c:
            c.request("ns-add", device="mem:1M")
        ev = admin.parse_aer(d.admin.wait(cid, timeout=5.0).dw0)
        assert (ev.type, ev.info, ev.lid) == (admin.AER_TYPE_NOTICE, 0xF0, L.LogPage.DISCOVERY)
    finally:
        d.close()


class FakeClock:
    """The target's time seam: keep-alive timers read this instead of the real clock."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_kato_is_enforced_on_an_injected_clock(nvmfd_factory):
    clock = FakeClock()
    target = nvmfd_factory(clock=clock)
    a = connect(target, kato_s=5, num_io_queues=1)
    try:
        clock.now += 4.9
        target.server.check_keep_alive()
        # Traffic restarts the timer (TBKAS): a Flush on the I/O queue counts.
        assert run(a.io[0], nvm.build_flush(1))[0].status == 0
        clock.now += 4.9  # 9.8 s after Connect, 4.9 s after the Flush
        target.server.check_keep_alive()
        time.sleep(0.2)  # let the housekeeping thread look (it must find nothing)
        assert len(_assoc_ids(target)) == 1
        clock.now += 0.2  # 5.1 s of silence
        target.server.check_keep_alive()
        assert wait_for(lambda: not _assoc_ids(target), timeout=5.0)
    finally:
        a.close()
