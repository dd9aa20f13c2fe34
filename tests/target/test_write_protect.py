"""Read-only namespaces are exported write protected (NSATTR bit 0, feature 84h),
writes fail with Namespace Is Write Protected; a host may write-protect a
namespace and lift it again, but not lift nvmfd's own read-only export."""

from __future__ import annotations

import pytest

from nvmecontrol.target.config import load_nvmetcli
from nvmecontrol.wire import admin, nvm
from nvmecontrol.wire import identify as I

from .helpers import connect, run, sc

WRITE_PROTECT = 0x84
WP_NONE, WP_ON = 0, 1
NS_WRITE_PROTECTED = (0, 0x20, True)
FEATURE_NOT_CHANGEABLE = (1, 0x0E, True)
INVALID_FIELD = (0, 0x02, True)


def nsattr(a, nsid: int = 1) -> int:
    return I.decode_identify_namespace(a.identify(I.CNS_NAMESPACE, nsid)).nsattr


def wp(a, nsid: int = 1, sel: int = 0) -> int:
    cqe, _ = run(a.admin, admin.build_get_features(WRITE_PROTECT, sel=sel, nsid=nsid))
    assert cqe.status == 0
    return cqe.dw0


def set_wp(a, value: int, nsid: int = 1):
    return sc(run(a.admin, admin.build_set_features(WRITE_PROTECT, value, nsid=nsid))[0])


def writes_refused(a, nsid: int = 1) -> list:
    """The status of every command that changes data, one per kind."""
    q = a.io[0]
    return [sc(run(q, nvm.build_write(nsid, 0, 1), write_data=b"w" * 512)[0]),  # in capsule
            sc(run(q, nvm.build_write(nsid, 0, 32), write_data=b"W" * 16384)[0]),  # R2T
            sc(run(q, nvm.build_write_zeroes(nsid, 0, 8))[0]),
            sc(run(q, nvm.build_deallocate(nsid, 1),
                   write_data=nvm.encode_dsm_ranges([(0, 8)]))[0])]


def test_read_only_export(nvmfd_factory):
    srv = nvmfd_factory(read_only=True)  # nvmfd -r
    a = connect(srv, num_io_queues=1)
    try:
        assert nsattr(a) & I.NSATTR_WRITE_PROTECTED
        c = I.decode_identify_controller(a.identify(I.CNS_CONTROLLER))
        assert c.nwpc & 1  # write protect and no write protect supported
        assert (wp(a), wp(a, sel=1), wp(a, sel=3)) == (WP_ON, WP_ON, 0x6)
        assert writes_refused(a) == [NS_WRITE_PROTECTED] * 4
        cqe, _ = run(a.io[0], nvm.build_read(1, 0, 1), read_len=512)
        assert cqe.status == 0
        assert run(a.io[0], nvm.build_flush(1))[0].status == 0
        # The host cannot lift what nvmfd exports read-only.
        assert set_wp(a, WP_NONE) == FEATURE_NOT_CHANGEABLE
        assert wp(a) == WP_ON and writes_refused(a)[0] == NS_WRITE_PROTECTED
        assert set_wp(a, WP_ON) == (0, 0, False)  # already so: nothing to do
    finally:
        a.shutdown()


def test_host_sets_and_lifts_write_protection(nvmfd_server):
    a = connect(nvmfd_server, num_io_queues=1)
    other = connect(nvmfd_server, num_io_queues=1)
    try:
        assert (nsattr(a), wp(a), wp(a, sel=1)) == (0, WP_NONE, WP_NONE)
        assert run(a.io[0], nvm.build_write(1, 0, 1), write_data=b"1" * 512)[0].status == 0
        cid = other.admin.submit(admin.build_async_event_request())
        assert set_wp(a, WP_ON) == (0, 0, False)
        # Every host sees it: a Namespace Attribute notice, NSATTR, the feature, the I/O.
        ev = admin.parse_aer(other.admin.wait(cid, timeout=5.0).dw0)
        assert (ev.type, ev.info) == (admin.AER_TYPE_NOTICE, admin.AER_NOTICE_NS_ATTR_CHANGED)
        assert nsattr(other) & I.NSATTR_WRITE_PROTECTED and wp(other) == WP_ON
        assert writes_refused(other) == [NS_WRITE_PROTECTED] * 4
        assert set_wp(other, WP_NONE) == (0, 0, False)
        assert nsattr(a) == 0
        assert run(a.io[0], nvm.build_write(1, 0, 1), write_data=b"2" * 512)[0].status == 0
    finally:
        a.shutdown()
        other.shutdown()


@pytest.mark.parametrize("value", [2, 3, 1 << 3])  # until power cycle, permanent, reserved
def test_unsupported_protection_states(nvmfd_server, value):
    a = connect(nvmfd_server)
    try:
        assert set_wp(a, value) == INVALID_FIELD
        assert wp(a) == WP_NONE
        assert sc(run(a.admin, admin.build_get_features(WRITE_PROTECT, nsid=9))[0]) \
            == (0, 0x0B, True)  # Invalid Namespace
    finally:
        a.shutdown()


def test_read_only_from_config_and_ns_add(nvmfd_factory):
    nqn = "nqn.2014-08.org.example:wp"
    cfg = load_nvmetcli({
        "hosts": [],
        "ports": [{"portid": 1, "subsystems": [nqn],
                   "addr": {"trtype": "tcp", "adrfam": "ipv4", "traddr": "127.0.0.1",
                            "trsvcid": "0"}}],
        "subsystems": [{"nqn": nqn, "attr": {"allow_any_host": "1"}, "namespaces": [
            {"nsid": 1, "enable": 1, "read_only": 1, "device": {"path": "mem:1M"}},
            {"nsid": 2, "enable": 1, "device": {"path": "mem:1M"}}]}],
    })
    srv = nvmfd_factory(config=cfg)
    with srv.control() as c:
        assert c.request("ns-add", device="mem:1M", read_only=True)["nsid"] == 3
    a = connect(srv, num_io_queues=1)
    try:
        assert [nsattr(a, n) for n in (1, 2, 3)] == [1, 0, 1]
        assert [wp(a, n) for n in (1, 2, 3)] == [WP_ON, WP_NONE, WP_ON]
        assert writes_refused(a, 3)[0] == NS_WRITE_PROTECTED
        assert set_wp(a, WP_NONE, nsid=3) == FEATURE_NOT_CHANGEABLE
    finally:
        a.shutdown()
