"""A new configuration applied to a running nvmfd (reload.py), in process and by SIGHUP."""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from nvmecontrol.errors import ConnectError, HostRefused, NvmeControlError, UsageError
from nvmecontrol.host.discovery import fetch_discovery_log
from nvmecontrol.target.config import (HostAuthConfig, NamespaceConfig, PortConfig,
                                       SubsystemConfig, TargetConfig, dump_nvmetcli,
                                       load_nvmetcli)
from nvmecontrol.wire import nvm
from nvmecontrol.wire import reservations as R

from .helpers import alive, connect, connect_discovery, make_host, run, wait_for

SUB = "nqn.2014-08.org.example:reload"
OTHER = "nqn.2014-08.org.example:reload-other"
KEY = "DHHC-1:00:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:"


def config(*, namespaces=("mem:1M",), hosts=None, subsystems=None, ports=None) -> TargetConfig:
    sub = SubsystemConfig(nqn=SUB, allow_any_host=hosts is None, allowed_hosts=list(hosts or []),
                          namespaces=[NamespaceConfig(nsid=i, path=p)
                                      for i, p in enumerate(namespaces, 1)])
    return TargetConfig(hosts=list(hosts or []),
                        ports=ports or [PortConfig(portid=1, traddr="127.0.0.1", trsvcid="0",
                                                   subsystems=[SUB])],
                        subsystems=[sub] + list(subsystems or []))


def running(handle) -> TargetConfig:
    """A copy of what the daemon serves, to edit and reload."""
    return copy.deepcopy(handle.server.config)


def test_added_namespace_keeps_the_association_and_its_reservation(nvmfd_factory):
    h = nvmfd_factory(config=config())
    host = make_host()
    a = connect(h, host=host, num_io_queues=1)
    try:
        sub = h.server.subsystems[SUB]
        ns1 = sub.namespaces[1]
        cqe, _ = run(a.io[0], R.build_resv_register(1, R.RegisterAction.REGISTER),
                     write_data=R.encode_register_data(R.RegisterData(0, 0xABC)))
        assert cqe.status == 0
        new = running(h)
        new.subsystems[0].namespaces.append(NamespaceConfig(nsid=2, path="mem:2M"))
        summary = h.server.reload(new)
        assert summary["namespaces_opened"] == 1 and summary["terminated"] == 0
        assert h.server.subsystems[SUB] is sub and sub.namespaces[1] is ns1
        assert sorted(sub.namespaces) == [1, 2]
        assert alive(a)
        cqe, data = run(a.io[0], R.build_resv_report(1, 4096), read_len=4096)
        status = R.decode_reservation_status(data, extended=True)
        assert [r.rkey for r in status.controllers] == [0xABC]
        assert sub.namespaces[2].size_bytes == 2 << 20
    finally:
        a.close()


def test_removed_and_changed_namespaces(nvmfd_factory):
    h = nvmfd_factory(config=config(namespaces=("mem:1M", "mem:1M", "mem:1M")))
    sub = h.server.subsystems[SUB]
    ns1, ns3 = sub.namespaces[1], sub.namespaces[3]
    new = running(h)
    del new.subsystems[0].namespaces[1]                 # nsid 2 goes
    new.subsystems[0].namespaces[1].path = "mem:2M"     # nsid 3 changes
    summary = h.server.reload(new)
    assert (summary["namespaces_opened"], summary["namespaces_closed"]) == (1, 2)
    assert sorted(sub.namespaces) == [1, 3]
    assert sub.namespaces[1] is ns1 and sub.namespaces[3] is not ns3
    assert sub.namespaces[3].size_bytes == 2 << 20


def test_host_no_longer_allowed_is_terminated_others_stay(nvmfd_factory, caplog):
    alice, bob = make_host(), make_host()
    h = nvmfd_factory(config=config(hosts=[alice.hostnqn, bob.hostnqn]))
    a = connect(h, host=alice, num_io_queues=1)
    b = connect(h, host=bob, num_io_queues=1)
    try:
        new = running(h)
        new.subsystems[0].allowed_hosts.remove(bob.hostnqn)
        new.hosts.remove(bob.hostnqn)
        with caplog.at_level("WARNING", logger="nvmfd"):
            assert h.server.reload(new)["terminated"] == 1
        assert wait_for(lambda: [x["hostnqn"] for x in h.server.associations()]
                        == [alice.hostnqn])
        assert f"host {bob.hostnqn}" in caplog.text and "no longer allowed" in caplog.text
        assert alive(a) and not alive(b)
        with pytest.raises(HostRefused):
            connect(h, host=bob)
    finally:
        a.close()
        b.close()


def test_subsystems_added_removed_and_replaced(nvmfd_factory):
    h = nvmfd_factory(config=config())
    a = connect(h, num_io_queues=1)
    try:
        new = running(h)
        new.subsystems.append(SubsystemConfig(nqn=OTHER, allow_any_host=True,
                                              namespaces=[NamespaceConfig(1, "mem:1M")]))
        new.ports[0].subsystems.append(OTHER)
        assert h.server.reload(new)["subsystems_added"] == 1
        assert alive(a)
        b = connect(h, OTHER, num_io_queues=1)
        b.close()
        # A new serial is a new subsystem: its associations end.
        new = running(h)
        new.subsystems[0].serial = "NEWSERIAL"
        summary = h.server.reload(new)
        assert summary["subsystems_replaced"] == 1 and summary["terminated"] == 1
        assert wait_for(lambda: not alive(a))
        # A removed subsystem is no longer served or listed.
        c = connect(h, OTHER, num_io_queues=1)
        new = running(h)
        new.subsystems = [s for s in new.subsystems if s.nqn != OTHER]
        new.ports[0].subsystems.remove(OTHER)
        assert h.server.reload(new)["subsystems_removed"] == 1
        assert wait_for(lambda: not alive(c))
        c.close()
        d = connect_discovery(h)
        try:
            assert [e.subnqn for e in fetch_discovery_log(d).entries] == [SUB]
        finally:
            d.close()
    finally:
        a.close()


def test_unlinked_from_its_port_is_terminated(nvmfd_factory):
    h = nvmfd_factory(config=config())
    a = connect(h, num_io_queues=1)
    try:
        new = running(h)
        new.ports[0].subsystems = []
        assert h.server.reload(new)["terminated"] == 1
        assert wait_for(lambda: not alive(a))
    finally:
        a.close()


def test_ports_opened_and_closed(nvmfd_factory):
    h = nvmfd_factory(config=config())
    a = connect(h, num_io_queues=1)
    try:
        new = running(h)
        new.ports.append(PortConfig(portid=7, traddr="127.0.0.1", trsvcid="0",
                                    subsystems=[SUB]))
        assert h.server.reload(new)["ports_opened"] == 1
        port7 = next(p for p in h.server.ports if p.portid == 7)
        assert port7.trsvcid != "0" and h.server.config.ports[1].trsvcid == port7.trsvcid

        class Seven:
            host, port, subnqn = "127.0.0.1", int(port7.trsvcid), SUB
            from nvmecontrol.transport.address import Address
            address = Address("127.0.0.1", int(port7.trsvcid), "127.0.0.1")
        b = connect(Seven, num_io_queues=1)
        # Port 1 goes: its association ends, the one through port 7 stays.
        new = running(h)
        new.ports = [p for p in new.ports if p.portid == 7]
        summary = h.server.reload(new)
        assert summary["ports_closed"] == 1 and summary["terminated"] == 1
        assert wait_for(lambda: not alive(a)) and alive(b)
        b.close()
        with pytest.raises(ConnectError):
            connect(h, timeout_s=2.0)
    finally:
        a.close()


def test_port_renumbered_keeps_its_listener(nvmfd_factory):
    h = nvmfd_factory(config=config())
    a = connect(h, num_io_queues=1)
    try:
        sock = h.server.ports[0].sock
        new = running(h)
        new.ports[0].portid = 9
        summary = h.server.reload(new)
        assert summary["ports_opened"] == summary["ports_closed"] == summary["terminated"] == 0
        assert h.server.ports[0].sock is sock and h.server.ports[0].portid == 9
        assert alive(a)
    finally:
        a.close()


def test_host_that_must_now_authenticate_is_terminated(nvmfd_factory):
    host = make_host()
    h = nvmfd_factory(config=config(hosts=[host.hostnqn]))
    a = connect(h, host=host, num_io_queues=1)
    try:
        new = running(h)
        new.host_auth[host.hostnqn] = HostAuthConfig(KEY)
        assert h.server.reload(new)["terminated"] == 1
        assert wait_for(lambda: not alive(a))
    finally:
        a.close()


@pytest.mark.parametrize("breakage", ["missing file", "address in use", "refused"])
def test_a_configuration_that_cannot_be_served_changes_nothing(nvmfd_factory, tmp_path,
                                                               breakage):
    h = nvmfd_factory(config=config())
    a = connect(h, num_io_queues=1)
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other.listen(1)
    try:
        before = json.dumps(dump_nvmetcli(h.server.config), sort_keys=True)
        new = running(h)
        new.subsystems[0].namespaces.append(NamespaceConfig(nsid=2, path="mem:1M"))
        new.ports.append(PortConfig(portid=2, traddr="127.0.0.1", trsvcid="0",
                                    subsystems=[SUB]))
        if breakage == "missing file":
            new.subsystems[0].namespaces.append(
                NamespaceConfig(nsid=3, path=str(tmp_path / "missing.img")))
            with pytest.raises(UsageError):
                h.server.reload(new)
        elif breakage == "address in use":
            new.ports[1].trsvcid = str(other.getsockname()[1])
            with pytest.raises(OSError):
                h.server.reload(new)
        else:
            data = dump_nvmetcli(new)
            data["ports"][1]["addr"]["tsas"] = "tls1.3"
            with pytest.raises(UsageError, match="addr.tsas"):
                h.server.reload(load_nvmetcli(data))
        assert json.dumps(dump_nvmetcli(h.server.config), sort_keys=True) == before
        assert sorted(h.server.subsystems[SUB].namespaces) == [1]
        assert [p.portid for p in h.server.ports] == [1]
        assert alive(a)
    finally:
        other.close()
        a.close()


# --- the daemon: signals ---------------------------------------------------------------

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _nvmetcli(namespaces) -> dict:
    return {"hosts": [],
            "ports": [{"portid": 1, "addr": {"trtype": "tcp", "adrfam": "ipv4",
                                             "traddr": "127.0.0.1", "trsvcid": "0"},
                       "subsystems": [SUB]}],
            "subsystems": [{"nqn": SUB, "attr": {"allow_any_host": "1"},
                            "namespaces": [{"nsid": i, "enable": 1, "device": {"path": p}}
                                           for i, p in enumerate(namespaces, 1)]}]}


class Daemon:
    """``nvmfd -F -c FILE`` (or devices) in a subprocess, its log in tmp_path."""

    def __init__(self, tmp_path, *argv):
        self.tmp = tmp_path
        self.sock = str(tmp_path / "nvmfd.sock")
        self.pid_file = tmp_path / "nvmfd.pid"
        self.port_file = tmp_path / "port"
        self.log_path = tmp_path / "nvmfd.log"
        cmd = [sys.executable, "-m", "nvmecontrol.target.main", "-F", "-S", self.sock,
               "--pid-file", str(self.pid_file), "--port-file", str(self.port_file),
               "--log-file", str(self.log_path), *argv]
        env = dict(os.environ, PYTHONPATH=REPO)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env=env, cwd=REPO)
        deadline = time.monotonic() + 30
        while not (self.pid_file.exists() and os.path.exists(self.sock)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("nvmfd did not start: " + self.proc.stderr.read().decode())
            time.sleep(0.05)
        self.host, self.port, self.subnqn = "127.0.0.1", int(self.port_file.read_text()), SUB
        from nvmecontrol.transport.address import Address
        self.address = Address(self.host, self.port, f"{self.host}:{self.port}")

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def hangup_and_wait_for(self, text: str) -> None:
        n = self.log().count(text)
        self.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: self.log().count(text) > n, timeout=20), self.log()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stderr.close()
        return self.proc.returncode


@pytest.fixture
def daemon(tmp_path):
    started = []

    def start(*argv):
        d = Daemon(tmp_path, *argv)
        started.append(d)
        return d
    yield start
    for d in started:
        d.stop()


def test_sighup_reloads_the_file_and_survives_a_broken_one(daemon, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(_nvmetcli(["mem:1M"])))
    d = daemon("-c", str(path))
    a = connect(d, num_io_queues=1)
    try:
        # The port was bound with trsvcid 0: the reloaded file says 0 again.
        path.write_text(json.dumps(_nvmetcli(["mem:1M", "mem:2M"])))
        d.hangup_and_wait_for("configuration applied")
        assert alive(a)
        from nvmecontrol.target.control import ControlClient
        with ControlClient(d.sock) as c:
            cfg = c.request("config")["config"]
        assert [n["nsid"] for n in cfg["subsystems"][0]["namespaces"]] == [1, 2]
        path.write_text("{ not json")
        d.hangup_and_wait_for("the running one is kept")
        line = next(x for x in d.log().splitlines() if "the running one is kept" in x)
        assert "not valid JSON" in line
        path.write_text(json.dumps({**_nvmetcli(["mem:1M"]), "ports": [
            {"portid": 1, "addr": {"trtype": "rdma", "adrfam": "ipv4", "traddr": "127.0.0.1",
                                   "trsvcid": "0"}, "subsystems": [SUB]}]}))
        d.hangup_and_wait_for("the running one is kept")
        assert "addr.trtype" in d.log().splitlines()[-1]
        assert d.proc.poll() is None and alive(a)
    finally:
        a.close()
    assert d.stop() == 0


def test_sighup_without_a_configuration_file_changes_nothing(daemon):
    d = daemon("-a", "127.0.0.1", "-p", "0", "-n", SUB, "mem:1M")
    d.hangup_and_wait_for("nothing to reload")
    d.hangup_and_wait_for("nothing to reload")
    a = connect(d, num_io_queues=1)
    try:
        assert alive(a)
    finally:
        a.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_end_associations_and_remove_files(daemon, sig):
    d = daemon("-a", "127.0.0.1", "-p", "0", "-n", SUB, "mem:1M")
    assert int(d.pid_file.read_text()) == d.proc.pid
    a = connect(d, num_io_queues=1)
    try:
        d.proc.send_signal(sig)
        assert d.proc.wait(timeout=15) == 0
        assert not alive(a)
    finally:
        a.close()
    assert not d.pid_file.exists() and not os.path.exists(d.sock)


@pytest.mark.parametrize("change", ["host removed", "subsystem removed"])
def test_a_connect_checked_just_before_a_reload_is_refused_after_it(nvmfd_factory, monkeypatch,
                                                                   change):
    """The reload commits between an admin Connect's checks and the new
    controller: the Connect must follow the new configuration."""
    host, other = make_host(), make_host()
    h = nvmfd_factory(config=config(hosts=[host.hostnqn, other.hostnqn]))
    new = running(h)
    if change == "host removed":
        new.subsystems[0].allowed_hosts = [other.hostnqn]
        new.hosts = [other.hostnqn]
    else:
        new.subsystems = []
        new.ports[0].subsystems = []
    original = h.server.new_controller

    def reload_first(*args, **kw):
        h.server.reload(new)
        return original(*args, **kw)

    monkeypatch.setattr(h.server, "new_controller", reload_first)
    with pytest.raises(NvmeControlError) as e:
        connect(h, host=host, num_io_queues=1)
    # Connect Invalid Host, or Invalid Parameters at byte 256 (SUBNQN).
    assert ("host" if change == "host removed" else "byte 256") in str(e.value).lower(), str(e.value)
    assert not [a for a in h.server.associations() if not a["discovery"]]


def test_a_ram_namespace_whose_settings_change_keeps_its_data(nvmfd_factory):
    """Same NGUID to the host, so the same disk: a reload that makes a RAM
    namespace read-only must not hand out a blank new mapping under it."""
    h = nvmfd_factory(config=config(namespaces=("mem:1M",)))
    a = connect(h, num_io_queues=1)
    try:
        before = h.server.subsystems[SUB].namespaces[1]
        assert run(a.io[0], nvm.build_write(1, 0, 8), write_data=b"D" * 4096)[0].status == 0
        new = running(h)
        new.subsystems[0].namespaces[0].read_only = True
        h.server.reload(new)
        after = h.server.subsystems[SUB].namespaces[1]
        assert after.read_only and after.nguid == before.nguid
        cqe, data = run(a.io[0], nvm.build_read(1, 0, 8), read_len=4096)
        assert cqe.status == 0 and data == b"D" * 4096
        # Writable again by the next reload, the same memory still.
        new = running(h)
        new.subsystems[0].namespaces[0].read_only = False
        h.server.reload(new)
        assert run(a.io[0], nvm.build_write(1, 8, 8), write_data=b"E" * 4096)[0].status == 0
        cqe, data = run(a.io[0], nvm.build_read(1, 0, 16), read_len=8192)
        assert data == b"D" * 4096 + b"E" * 4096
    finally:
        a.close()
