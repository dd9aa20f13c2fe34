"""The read side of the public API against nvmfd: discovery, one-shot admin, reservations.

``api.discovery`` (walk, Identify, secrets), ``api.admin`` (Identify and log
pages by address, the refusal hook), ``api.reservations`` and the option
table's defaults in ``api.admin.ConnectOptions``.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from nvmecontrol import api
from nvmecontrol.api import admin, discovery, reservations, structures
from nvmecontrol.errors import Unsupported
from nvmecontrol.options import DISCOVERY_KATO_S, OPTIONS, default
from nvmecontrol.target.config import (HostAuthConfig, NamespaceConfig, PortConfig, ReferralConfig,
                                       SubsystemConfig, TargetConfig)
from nvmecontrol.wire.dhchap_key import format_secret, generate_secret

HOSTID = "0c9d8e7f-6a5b-4c3d-8e2f-1a0b9c8d7e6f"
HOSTNQN = f"nqn.2014-08.org.nvmexpress:uuid:{HOSTID}"
OTHER_ID = "7e6f5a4b-3c2d-4e1f-9a8b-7c6d5e4f3a2b"
OTHER = (f"nqn.2014-08.org.nvmexpress:uuid:{OTHER_ID}", OTHER_ID)
WHO = {"hostnqn": HOSTNQN, "hostid": HOSTID}
SUB_A = "nqn.2014-08.org.example:read-a"
SUB_B = "nqn.2014-08.org.example:read-b"
DISCOVERY_NQN = "nqn.2014-08.org.nvmexpress.discovery"


def _config(subnqn: str, referrals=()) -> TargetConfig:
    return TargetConfig(
        subsystems=[SubsystemConfig(nqn=subnqn, allow_any_host=True,
                                    namespaces=[NamespaceConfig(1, "mem:1M")])],
        ports=[PortConfig(1, "127.0.0.1", "0", subsystems=[subnqn], referrals=list(referrals))])


@pytest.fixture
def target(nvmfd_factory) -> str:
    return f"127.0.0.1:{nvmfd_factory(config=_config(SUB_A)).port}"


def _options(**kw) -> admin.ConnectOptions:
    return admin.ConnectOptions(hostnqn=HOSTNQN, hostid=HOSTID, **kw)


# -- discovery ----------------------------------------------------------------------------------

def test_walk_follows_a_referral_to_another_discovery_controller(nvmfd_factory):
    far = nvmfd_factory(config=_config(SUB_B)).port
    near = nvmfd_factory(config=_config(SUB_A, [ReferralConfig("far", "127.0.0.1", str(far),
                                                                portid=2)])).port
    start = f"127.0.0.1:{near}"
    one = discovery.read_discovery(start, **WHO)
    assert {e.subnqn for e in one.log.entries} == {SUB_A, DISCOVERY_NQN}  # the referral
    assert one.visited is None and one.controller is None
    walked = discovery.read_discovery(start, walk=True, **WHO)
    assert [e.subnqn for e in walked.log.entries] == [SUB_A, SUB_B]
    assert walked.visited == [start, f"127.0.0.1:{far}"] and walked.errors == []
    assert walked.log.header.numrec == 2
    assert [e.subnqn for e in api.discover(start, walk=True, **WHO).entries] == [SUB_A, SUB_B]


def test_identify_comes_with_the_log_and_warnings_are_handed_over(target):
    seen: list[str] = []
    d = discovery.read_discovery(target, identify=True, warn=seen.append, **WHO)
    assert d.controller.subnqn == DISCOVERY_NQN
    assert [e.subnqn for e in d.log.entries] == [SUB_A]
    assert seen == []  # given on the command line: nothing to say about where it came from
    assert discovery.subsystems_by_address(d.log.entries) == \
        {f"127.0.0.1:{target.rsplit(':', 1)[1]}": [SUB_A]}


def test_discovery_secrets_reach_the_association(nvmfd_factory):
    hkey = format_secret(generate_secret(transform=1))
    ckey = format_secret(generate_secret(transform=2))
    cfg = _config(SUB_A)
    cfg.host_auth[HOSTNQN] = HostAuthConfig(hkey, ckey, "hmac(sha256)", "ffdhe2048")
    address = f"127.0.0.1:{nvmfd_factory(config=cfg).port}"
    # nvmfd's discovery controller holds no keys: asked to prove one, it cannot.
    with pytest.raises(api.Error, match="cannot authenticate itself"):
        discovery.discover(address, dhchap_secret=hkey, dhchap_ctrl_secret=ckey, **WHO)
    with pytest.raises(api.UsageError, match="dhchap_ctrl_secret needs dhchap_secret"):
        discovery.discover(address, dhchap_ctrl_secret=ckey, **WHO)
    with pytest.raises(api.UsageError, match="dhchap_secret"):
        discovery.discover(address, dhchap_secret="DHHC-1:00:xx:", **WHO)


# -- one-shot admin --------------------------------------------------------------------------

def test_identify_and_log_pages_by_address(target):
    with admin.open_controller(target, SUB_A, _options()) as ctrl:
        assert (ctrl.target, ctrl.name, ctrl.nsid) == (target, f"{target} {SUB_A}", None)
        c = ctrl.identify_controller()
        assert c is ctrl.identify_controller()  # read once
        assert c.data.subnqn == SUB_A and structures.decode_identify_controller(c.raw) == c.data
        ns = ctrl.identify_namespace(1)
        assert isinstance(ns.data, structures.IdentifyNamespace) and ns.data.nsze == 2048
        with pytest.raises(api.NotFound, match=f"{target}: no such namespace"):
            ctrl.identify_namespace(5)
        smart = ctrl.log_page(structures.LogPage.SMART, 512)
        assert len(smart) == 512 and structures.decode_smart_log(smart).power_on_hours >= 0
        # offset: the second half is the whole page's second half
        assert ctrl.log_page(structures.LogPage.SMART, 256, offset=256) == smart[256:]


def test_the_discovery_controller_by_address_alone(target):
    with admin.open_controller(target, options=_options()) as ctrl:
        log = ctrl.discovery_log()
        assert [e.subnqn for e in log.entries] == [SUB_A]
        header, entries = structures.decode_discovery_log(log.raw)
        assert (header, entries) == (log.header, log.entries)


def test_a_refused_connect_goes_through_the_hook(target):
    asked = []

    @contextmanager
    def hook(subnqn, hostnqn, hostid):
        asked.append((subnqn, hostnqn, hostid))
        try:
            yield
        except api.CommandFailed as e:
            raise api.UsageError(f"explained: {e}") from None

    with pytest.raises(api.UsageError, match="^explained: "):
        admin.open_controller(target, "nqn.2014-08.org.example:absent", _options(),
                              explain_refusal=hook)
    assert asked == [("nqn.2014-08.org.example:absent", HOSTNQN, HOSTID)]


def test_names_that_are_not_addresses(target):
    assert [admin.target_kind(t) for t in ("nvme0", "/dev/nvme0n1", "nvmeu3ns2", target)] == \
        ["device", "device", "session", "address"]
    with pytest.raises(api.UsageError, match="nvmeu0 is a session"):
        admin.open_controller("nvmeu0", SUB_A)
    with pytest.raises(api.UsageError, match="subsystem NQN"):
        admin.open_controller(target, "", _options())


def test_connect_options_defaults_are_the_option_tables():
    o = admin.ConnectOptions()
    assert (o.hostnqn, o.hostid) == (OPTIONS["hostnqn"].default, OPTIONS["hostid"].default)
    assert (o.hdgst, o.ddgst, o.timeout_s) == \
        (default("hdgst"), default("ddgst"), default("timeout_s"))
    assert DISCOVERY_KATO_S == 0


# -- reservations ------------------------------------------------------------------------------

def test_reservations_by_address(target):
    other = admin.ConnectOptions(hostnqn=OTHER[0], hostid=OTHER[1])
    with reservations.open_reservations(target, SUB_A, 1, _options()) as ns:
        ns.register(nrkey=0xA1)
    with reservations.open_reservations(target, SUB_A, 1, other) as ns:
        ns.register(nrkey=0xB2)
        with pytest.raises(api.CommandFailed, match="Reservation Conflict"):
            ns.acquire(0xB1, rtype=1)  # a key it does not hold
    with reservations.open_reservations(target, SUB_A, 1, _options()) as ns:
        ns.acquire(0xA1, rtype=1)
        report = ns.report(eds=True)
        assert report.extended and report.status.rtype == 1 and report.status.regctl == 2
        assert report.status == structures.decode_reservation_status(report.raw, extended=True)
        holders = [c.hostid for c in report.status.controllers if c.rcsts & structures.RCSTS_HOLDER]
        assert [bytes(h).hex() for h in holders] == [HOSTID.replace("-", "")]
        with pytest.raises(api.CommandFailed, match="report them with -e"):
            ns.report(eds=False)  # 64-bit host identifiers: not for fabrics hosts
        ns.release(0xA1, rtype=1)
        assert ns.report(eds=True).status.rtype == 0


@pytest.mark.parametrize("args, message", [
    (("nvme0", None, None), "name a namespace"),
    (("nvme0n1", None, 2), "names its namespace"),
    (("nvmeu0ns1", None, 2), "names namespace 1, -n says 2"),
    (("nvmeu0", SUB_A, 1), "is a device; a subsystem NQN"),
    (("127.0.0.1:9", None, 1), "needs a subsystem NQN"),
    (("127.0.0.1:9", SUB_A, None), "-n NSID names the namespace"),
])
def test_reservations_need_one_namespace(args, message):
    with pytest.raises(api.UsageError, match=message):
        reservations.open_reservations(*args)


# -- the kernel's controllers (the passthrough ioctls, faked as tests/test_api_open.py does) ---

from .test_api_open import kernel  # noqa: E402,F401  (a fixture: a fake /dev and ioctl)


def test_admin_and_reservations_on_a_kernel_node(kernel):
    with admin.open_controller("nvme0n2") as ctrl:
        assert (ctrl.target, ctrl.nsid) == ("nvme0n2", 2)
        assert ctrl.identify_namespace(2).data.nsze == kernel.BLOCKS
        with pytest.raises(api.NotFound, match=r"^nvme0n2: no such namespace \(NSID 5"):
            ctrl.identify_namespace(5)
    with reservations.open_reservations("/dev/nvme0n1") as ns:
        assert ns.nsid == 1
        # The fake answers Invalid Command Opcode: a controller without reservations.
        with pytest.raises(Unsupported, match="does not support reservations"):
            ns.report(eds=True)
    assert kernel.commands[-1] == ("nvme0n1", 0x0E)  # Reservation Report, on the node named
