"""ANA beside the configuration changes: ``ns-add --ana-grpid``, a reload or
host ACL change that changes a port's groups or moves a namespace (count and
ANA Change notice, as ``ana-state``), and ``ana-state`` under the reconfigure lock."""

from __future__ import annotations

import copy
import threading

import pytest

from nvmecontrol.target import ana
from nvmecontrol.target.config import load_nvmetcli
from nvmecontrol.target.main import main as nvmfd_main
from nvmecontrol.wire import admin
from nvmecontrol.wire import identify as I
from nvmecontrol.wire import logpages as L

from .test_ana import (INACCESSIBLE, NQN, ana_log, connect_port, read_status, set_state, states,
                       two_port_config)

OK = (0, 0, False)
HOST_C = "nqn.2014-08.org.nvmexpress:uuid:0c0c0c0c-1111-4222-8333-444444444444"


@pytest.fixture
def target(nvmfd_factory):
    return nvmfd_factory(config=load_nvmetcli(two_port_config()))


def io_ctrl(target, port_index: int):
    port = target.server.ports[port_index]
    return next(c for c in target.server.controllers.values()
                if not c.discovery and c.port is port)


def members(log: L.AnaLog) -> dict[int, list[int]]:
    return {g.grpid: g.nsids for g in log.groups}


def wait_ana_notice(assoc, cid) -> None:
    ev = admin.parse_aer(assoc.admin.wait(cid, timeout=5.0).dw0)
    assert (ev.type, ev.info, ev.lid) == (admin.AER_TYPE_NOTICE, 0x03, L.LogPage.ANA)


# --- ns-add --ana-grpid ---------------------------------------------------------------

def test_ns_add_in_a_group(target, capsys):
    sock = target.socket_path
    assert nvmfd_main(["ns-add", "-S", sock, "--nsid", "4", "--ana-grpid", "3", "mem:1M"]) == 0
    assert capsys.readouterr().out == f"namespace 4 added to {NQN}\n"
    a, b = connect_port(target, 0), connect_port(target, 1)
    try:
        assert I.decode_identify_namespace(a.identify(I.CNS_NAMESPACE, 4)).anagrpid == 3
        assert members(ana_log(a))[3] == [3, 4]
        # Group 3 is listed on port 2 only: the new namespace follows it.
        assert read_status(a, 4) == INACCESSIBLE
        assert read_status(b, 4) == OK
    finally:
        a.shutdown()
        b.shutdown()
    with target.control() as c:
        saved = c.request("config")["config"]
    (ns4,) = [n for n in saved["subsystems"][0]["namespaces"] if n["nsid"] == 4]
    assert ns4["ana_grpid"] == 3
    # Without the option: group 1, as in a configuration file.
    assert nvmfd_main(["ns-add", "-S", sock, "mem:1M"]) == 0
    assert target.server.subsystems[NQN].namespaces[5].anagrpid == 1


@pytest.mark.parametrize("grpid, message", [
    ("7", "ns-add: ANA group 7 is not an ANA group of any port (groups: 1, 2, 3)"),
    ("0", "ns-add: ANA group 0 out of range 1..128"),
    ("129", "ns-add: ANA group 129 out of range 1..128"),
    ("x", "invalid int value"),
])
def test_ns_add_group_errors(target, capsys, grpid, message):
    assert nvmfd_main(["ns-add", "-S", target.socket_path, "--ana-grpid", grpid,
                       "mem:1M"]) == 64
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert sorted(target.server.subsystems[NQN].namespaces) == [1, 2, 3]


def test_ns_add_in_a_group_added_by_ana_state(target):
    set_state(target, 1, 7, "optimized")
    with target.control() as c:
        r = c.request("ns-add", device="mem:1M", ana_grpid=7)
    assert target.server.subsystems[NQN].namespaces[r["nsid"]].anagrpid == 7


# --- reload ------------------------------------------------------------------------------

def reload_with(target, mutate) -> dict:
    data = copy.deepcopy(two_port_config())
    for port, bound in zip(data["ports"], target.ports):
        port["addr"]["trsvcid"] = str(bound)
    mutate(data)
    return target.server.reload(load_nvmetcli(data))


def test_reload_changing_a_ports_state_notifies_that_port(target):
    a, b = connect_port(target, 0), connect_port(target, 1)
    try:
        before = ana_log(b).chgcnt
        ctrl_a = io_ctrl(target, 0)
        cid = b.admin.submit(admin.build_async_event_request())

        def port2_group2_inaccessible(data):
            data["ports"][1]["ana_groups"][1]["ana"]["state"] = "inaccessible"
        summary = reload_with(target, port2_group2_inaccessible)
        assert summary["ana_notified"] == 1
        wait_ana_notice(b, cid)
        log_b = ana_log(b)
        assert log_b.chgcnt == before + 1 and states(log_b)[2] == ana.INACCESSIBLE
        assert read_status(b, 2) == INACCESSIBLE
        assert read_status(a, 2) == OK
        assert ctrl_a.events == [] and "ana" not in ctrl_a.masked
    finally:
        a.shutdown()
        b.shutdown()


def test_reload_moving_a_namespace_notifies_its_subsystem(target):
    a, b = connect_port(target, 0), connect_port(target, 1)
    try:
        before = ana_log(a).chgcnt
        cids = [x.admin.submit(admin.build_async_event_request()) for x in (a, b)]

        def ns1_to_group3(data):
            data["subsystems"][0]["namespaces"][0]["ana_grpid"] = 3
        summary = reload_with(target, ns1_to_group3)
        assert summary["ana_notified"] == 2
        assert summary["namespaces_opened"] == summary["namespaces_closed"] == 0
        for x, cid in zip((a, b), cids):
            wait_ana_notice(x, cid)
        log_a = ana_log(a)
        assert log_a.chgcnt == before + 1
        assert members(log_a) == {1: [], 2: [2], 3: [1, 3]}
        assert read_status(a, 1) == INACCESSIBLE  # group 3 is not on port 1
        assert read_status(b, 1) == OK
        assert I.decode_identify_namespace(b.identify(I.CNS_NAMESPACE, 1)).anagrpid == 3
    finally:
        a.shutdown()
        b.shutdown()


def test_reload_adding_a_group_notifies_every_controller(target):
    a, b = connect_port(target, 0), connect_port(target, 1)
    try:
        def group4_on_port2(data):
            data["ports"][1]["ana_groups"].append({"grpid": 4, "ana": {"state": "optimized"}})
        # Port 1's page gains group 4 (inaccessible there) although its states did not change.
        assert reload_with(target, group4_on_port2)["ana_notified"] == 2
        assert states(ana_log(a))[4] == ana.INACCESSIBLE
        assert states(ana_log(b))[4] == ana.OPTIMIZED
    finally:
        a.shutdown()
        b.shutdown()


def test_reload_serves_the_files_states_host_add_keeps_the_running_ones(target):
    b = connect_port(target, 1)
    try:
        set_state(target, 2, 2, "inaccessible")
        count = ana_log(b).chgcnt
        # host-add starts from the running configuration: the state stays, nothing to tell.
        with target.control() as c:
            r = c.request("host-add", host=HOST_C)
        assert r["ana_notified"] == 0
        assert states(ana_log(b))[2] == ana.INACCESSIBLE and ana_log(b).chgcnt == count
        # A reload from the file: the file's state, as nvmet's configfs is its state.
        cid = b.admin.submit(admin.build_async_event_request())
        assert reload_with(target, lambda data: None)["ana_notified"] == 1
        wait_ana_notice(b, cid)
        log_b = ana_log(b)
        assert states(log_b)[2] == ana.NON_OPTIMIZED and log_b.chgcnt == count + 1
        assert read_status(b, 2) == OK
        # The same file again changes nothing.
        assert reload_with(target, lambda data: None)["ana_notified"] == 0
        assert ana_log(b).chgcnt == count + 1
    finally:
        b.shutdown()


def test_ana_state_waits_for_a_reconfiguration(target):
    """A state set while a reload holds the reconfigure lock is applied after it,
    so the configuration the reload copied cannot overwrite it."""
    done = threading.Event()

    def change():
        set_state(target, 1, 2, "change")
        done.set()
    with target.server.reconfigure_lock:
        t = threading.Thread(target=change)
        t.start()
        t.join(0.3)
        assert not done.is_set()
        assert target.server.ports[0].cfg.ana_groups[2] == ana.OPTIMIZED
    t.join(10)
    assert done.is_set() and target.server.ports[0].cfg.ana_groups[2] == ana.CHANGE
