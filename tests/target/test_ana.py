"""ANA: groups and states per port from the configuration, the ANA log page per
port, I/O refused with the ANA statuses, ``nvmfd ana-state`` and its notice."""

from __future__ import annotations

import copy

import pytest

from nvmecontrol.errors import UsageError
from nvmecontrol.host.association import AssociationParams, connect_association
from nvmecontrol.target import ana
from nvmecontrol.target.config import dump_nvmetcli, load_nvmetcli
from nvmecontrol.target.main import main as nvmfd_main
from nvmecontrol.transport.address import Address
from nvmecontrol.wire import admin, nvm
from nvmecontrol.wire import identify as I
from nvmecontrol.wire import logpages as L

from .helpers import make_host, run, sc, wait_for

NQN = "nqn.2014-08.org.example:ana"
ANA_LOG_LEN = L.ana_log_size(128, 1024)  # what a host reads: NANAGRPID and MNAN
AEC_ANA_CHANGE = 1 << 11
# (SCT, SC, DNR) of the path related ANA statuses: retryable on another path.
INACCESSIBLE, PERSISTENT_LOSS, TRANSITION = (3, 0x02, False), (3, 0x01, False), (3, 0x03, False)


def two_port_config() -> dict:
    """Port 1 serves group 2 optimized, port 2 non-optimized; group 1 optimized on both;
    group 3 only on port 2.  Namespace 1 is in group 1, 2 in group 2, 3 in group 3."""
    def port(portid, groups):
        return {"portid": portid, "subsystems": [NQN],
                "addr": {"trtype": "tcp", "adrfam": "ipv4", "traddr": "127.0.0.1",
                         "trsvcid": "0", "treq": "not specified"},
                "ana_groups": [{"grpid": g, "ana": {"state": s}} for g, s in groups]}
    return {
        "hosts": [],
        "ports": [port(1, [(1, "optimized"), (2, "optimized")]),
                  port(2, [(1, "optimized"), (2, "non-optimized"), (3, "optimized")])],
        "subsystems": [{
            "nqn": NQN, "allowed_hosts": [], "attr": {"allow_any_host": "1"},
            "namespaces": [{"nsid": 1, "enable": 1, "device": {"path": "mem:1M"}},
                           {"nsid": 2, "enable": 1, "ana_grpid": 2,
                            "device": {"path": "mem:1M"}},
                           {"nsid": 3, "enable": 1, "ana": {"grpid": "3"},
                            "device": {"path": "mem:1M"}}]}],
    }


@pytest.fixture
def target(nvmfd_factory):
    return nvmfd_factory(config=load_nvmetcli(two_port_config()))


def connect_port(target, index: int, **params):
    port = target.ports[index]
    addr = Address("127.0.0.1", port, f"127.0.0.1:{port}")
    params.setdefault("timeout_s", 10.0)
    params.setdefault("num_io_queues", 1)
    return connect_association(addr, NQN, make_host(), AssociationParams(**params))


def ana_log(a, *, rgo: bool = False, rae: bool = False) -> L.AnaLog:
    return L.decode_ana_log(a.get_log_page(admin.GetLogPage(
        lid=L.LogPage.ANA, length=ANA_LOG_LEN, lsp=L.ANA_LSP_RGO if rgo else 0, rae=rae)))


def states(log: L.AnaLog) -> dict[int, int]:
    return {g.grpid: g.state for g in log.groups}


def set_state(target, port: int, group: int, state: str) -> dict:
    with target.control() as c:
        return c.request("ana-state", port=port, group=group, state=state)


def read_status(a, nsid: int):
    return sc(run(a.io[0], nvm.build_read(nsid, 0, 1), read_len=512)[0])


# --- configuration ----------------------------------------------------------------

def test_config_groups_states_and_round_trip():
    cfg = load_nvmetcli(two_port_config())
    assert cfg.ports[0].ana_groups == {1: ana.OPTIMIZED, 2: ana.OPTIMIZED}
    assert cfg.ports[1].ana_groups == {1: ana.OPTIMIZED, 2: ana.NON_OPTIMIZED,
                                       3: ana.OPTIMIZED}
    assert [n.ana_grpid for n in cfg.subsystems[0].namespaces] == [1, 2, 3]
    dumped = dump_nvmetcli(cfg)
    assert dumped["ports"][1]["ana_groups"] == [
        {"ana": {"state": "optimized"}, "grpid": 1},
        {"ana": {"state": "non-optimized"}, "grpid": 2},
        {"ana": {"state": "optimized"}, "grpid": 3}]
    assert load_nvmetcli(dumped) == cfg


def test_config_defaults_as_nvmet():
    data = two_port_config()
    del data["ports"][0]["ana_groups"]  # no groups: group 1 optimized
    data["ports"][1]["ana_groups"] = [{"grpid": 1}, {"grpid": 2}, {"grpid": 3}]
    cfg = load_nvmetcli(data)
    assert cfg.ports[0].ana_groups == {1: ana.OPTIMIZED}
    # A group listed without a state starts inaccessible, as nvmet creates one.
    assert cfg.ports[1].ana_groups == {1: ana.OPTIMIZED, 2: ana.INACCESSIBLE,
                                       3: ana.INACCESSIBLE}


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["ports"][0]["ana_groups"].append({"grpid": 129}), "out of range 1..128"),
    (lambda c: c["ports"][0]["ana_groups"].append({"grpid": 0}), "out of range 1..128"),
    (lambda c: c["ports"][0]["ana_groups"].append({"grpid": 2}), "appears twice"),
    (lambda c: c["ports"][0]["ana_groups"].append({"ana": {"state": "optimized"}}),
     "'grpid' is missing"),
    (lambda c: c["ports"][0]["ana_groups"][0]["ana"].update(state="standby"),
     'ANA state "standby" is not one of optimized, non-optimized'),
    (lambda c: c["subsystems"][0]["namespaces"][0].update(ana_grpid=7),
     "ana_grpid 7 is not an ANA group of any port"),
    (lambda c: c["subsystems"][0]["namespaces"][0].update(ana_grpid=500), "out of range"),
])
def test_config_refuses(mutate, message):
    data = copy.deepcopy(two_port_config())
    mutate(data)
    with pytest.raises(UsageError, match=message):
        load_nvmetcli(data)


# --- what a controller reports ---------------------------------------------------------

def test_identify_advertises_ana(target):
    a = connect_port(target, 0)
    try:
        c = I.decode_identify_controller(a.identify(I.CNS_CONTROLLER))
        assert c.cmic & I.CMIC_ANA
        assert (c.anagrpmax, c.nanagrpid, c.anacap, c.anatt) == (128, 128, 0x1F, 10)
        assert c.oaes & AEC_ANA_CHANGE
        ns = I.decode_identify_namespace(a.identify(I.CNS_NAMESPACE, 2))
        assert ns.anagrpid == 2 and ns.nuse == ns.nsze
    finally:
        a.shutdown()


def test_ana_log_is_per_port(target):
    a, b = connect_port(target, 0), connect_port(target, 1)
    try:
        la, lb = ana_log(a), ana_log(b)
        # Every group some port lists; each with the reading port's state.
        assert states(la) == {1: ana.OPTIMIZED, 2: ana.OPTIMIZED, 3: ana.INACCESSIBLE}
        assert states(lb) == {1: ana.OPTIMIZED, 2: ana.NON_OPTIMIZED, 3: ana.OPTIMIZED}
        assert {g.grpid: g.nsids for g in la.groups} == {1: [1], 2: [2], 3: [3]}
        assert all(g.chgcnt == la.chgcnt for g in la.groups)
        # Return Groups Only: the same groups, no NSIDs.
        rgo = ana_log(a, rgo=True)
        assert states(rgo) == states(la) and all(g.nsids == [] for g in rgo.groups)
        # I/O follows: group 3 is not served through port 1.
        assert read_status(a, 1) == (0, 0, False)
        assert read_status(a, 3) == INACCESSIBLE
        assert read_status(b, 3) == (0, 0, False)
        assert read_status(b, 2) == (0, 0, False)  # non-optimized still serves
    finally:
        a.shutdown()
        b.shutdown()


# --- changes at run time ------------------------------------------------------------

def test_ana_state_change_notice_and_io(target):
    a, b = connect_port(target, 0), connect_port(target, 1)
    try:
        before = ana_log(b).chgcnt
        cid = b.admin.submit(admin.build_async_event_request())
        r = set_state(target, 2, 1, "inaccessible")
        assert r == {"port": 2, "group": 1, "state": "inaccessible", "chgcnt": r["chgcnt"],
                     "notified": 1}  # only the controller that came in by port 2
        ev = admin.parse_aer(b.admin.wait(cid, timeout=5.0).dw0)
        assert (ev.type, ev.info, ev.lid) == (admin.AER_TYPE_NOTICE, 0x03, L.LogPage.ANA)
        log_b = ana_log(b)
        assert log_b.chgcnt > before and states(log_b)[1] == ana.INACCESSIBLE
        assert states(ana_log(a))[1] == ana.OPTIMIZED
        # Reads and writes of group 1 fail on port 2 only: in-capsule and R2T writes,
        # reads, Flush, and the other commands alike.
        assert read_status(b, 1) == INACCESSIBLE
        assert sc(run(b.io[0], nvm.build_write(1, 0, 1), write_data=b"w" * 512)[0]) \
            == INACCESSIBLE
        assert sc(run(b.io[0], nvm.build_write(1, 0, 32), write_data=b"W" * 16384)[0]) \
            == INACCESSIBLE
        assert sc(run(b.io[0], nvm.build_flush(1))[0]) == INACCESSIBLE
        assert read_status(b, 2) == (0, 0, False)
        assert run(a.io[0], nvm.build_write(1, 0, 1), write_data=b"a" * 512)[0].status == 0
        assert run(a.io[0], nvm.build_write(1, 8, 32), write_data=b"A" * 16384)[0].status == 0
        # Identify Namespace: NUSE 0 while inaccessible, as nvmet.
        assert I.decode_identify_namespace(b.identify(I.CNS_NAMESPACE, 1)).nuse == 0
        for state, status in (("persistent-loss", PERSISTENT_LOSS), ("change", TRANSITION)):
            set_state(target, 2, 1, state)
            assert read_status(b, 1) == status
        set_state(target, 2, 1, "optimized")
        cqe, data = run(b.io[0], nvm.build_read(1, 0, 1), read_len=512)
        assert cqe.status == 0 and bytes(data) == b"a" * 512
    finally:
        a.shutdown()
        b.shutdown()


def test_notice_masked_until_read_and_by_aec(target):
    b = connect_port(target, 1)
    try:
        ctrl = next(c for c in target.server.controllers.values() if not c.discovery)
        cid = b.admin.submit(admin.build_async_event_request())
        set_state(target, 2, 2, "inaccessible")
        b.admin.wait(cid, timeout=5.0)
        # Until the page is read without RAE, further changes raise nothing.
        set_state(target, 2, 2, "optimized")
        assert wait_for(lambda: "ana" in ctrl.masked) and ctrl.events == []
        ana_log(b, rae=True)
        assert "ana" in ctrl.masked
        ana_log(b)
        assert "ana" not in ctrl.masked
        # With the notice disabled in Async Event Configuration, nothing is queued.
        assert run(b.admin, admin.build_set_features(admin.Feature.ASYNC_EVENT_CONFIG,
                                                     admin.AEC_NS_ATTR))[0].status == 0
        set_state(target, 2, 2, "non-optimized")
        assert states(ana_log(b))[2] == ana.NON_OPTIMIZED
        assert ctrl.events == [] and "ana" not in ctrl.masked
    finally:
        b.shutdown()


def test_new_group_and_running_config(target):
    r = set_state(target, 1, 3, "non-optimized")
    assert r["state"] == "non-optimized"
    a = connect_port(target, 0)
    try:
        assert states(ana_log(a))[3] == ana.NON_OPTIMIZED
        assert read_status(a, 3) == (0, 0, False)
    finally:
        a.shutdown()
    with target.control() as c:
        saved = c.request("config")["config"]
    assert {"ana": {"state": "non-optimized"}, "grpid": 3} in saved["ports"][0]["ana_groups"]


@pytest.mark.parametrize("argv, status, message", [
    (["2", "1", "standby"], 64, 'ANA state "standby" is not one of'),
    (["9", "1", "optimized"], 66, "no port 9 (ports: 1, 2)"),
    (["1", "200", "optimized"], 64, "ANA group 200 out of range 1..128"),
    (["1", "x", "optimized"], 64, "invalid int value"),
])
def test_ana_state_subcommand_errors(target, capsys, argv, status, message):
    assert nvmfd_main(["ana-state", "-S", target.socket_path, *argv]) == status
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") <= 2


def test_ana_state_subcommand(target, capsys):
    assert nvmfd_main(["-S", target.socket_path, "ana-state", "1", "2", "change"]) == 0
    assert capsys.readouterr().out.startswith("port 1: ANA group 2 change (change count ")
    assert target.server.ports[0].cfg.ana_groups[2] == ana.CHANGE
