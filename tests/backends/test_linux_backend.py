"""LinuxKernelBackend against a fake kernel: a sysroot in tmp_path and a fake /dev/nvme-fabrics.

The fake kernel answers a create() the way nvmf_create_ctrl does on 6.12 with
native multipath: a controller under /sys/devices/virtual/nvme-fabrics/ctl,
its hidden per-path disks and the subsystem's head disks.  Time is injected.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from nvmecontrol.backends.linux import LinuxKernelBackend
from nvmecontrol.backends.linux_fabrics import AlreadyConnected
from nvmecontrol.backends.model import ConnectParams
from nvmecontrol.backends.runtime import ENV_RUNTIME_DIR
from nvmecontrol.errors import ConnectError, DeviceError, NotFound, UsageError
from nvmecontrol.nqn import DISCOVERY_NQN
from nvmecontrol.wire.identify import CNS_ACTIVE_NSID_LIST, encode_active_nsid_list

SUBNQN = "nqn.2014-08.org.example:sub1"
OTHER_NQN = "nqn.2014-08.org.example:sub2"
HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:3d39c2a4-5e1f-4b8e-9a1c-0f6e2d7b8c90"
HOSTID = "3d39c2a4-5e1f-4b8e-9a1c-0f6e2d7b8c90"
FABRICS = "sys/devices/virtual/nvme-fabrics/ctl"
SUBSYS = "sys/devices/virtual/nvme-subsystem"
TOKENS = ("instance=-1,cntlid=-1,transport=%s,traddr=%s,trsvcid=%s,nqn=%s,queue_size=%d,"
          "nr_io_queues=%d,reconnect_delay=%d,ctrl_loss_tmo=%d,keep_alive_tmo=%d,hostnqn=%s,"
          "host_traddr=%s,host_iface=%s,hostid=%s,duplicate_connect,disable_sqflow,hdr_digest,"
          "data_digest,nr_write_queues=%d,nr_poll_queues=%d,tos=%d,keyring=%d,tls_key=%d,"
          "fast_io_fail_tmo=%d,discovery,dhchap_secret=%s,dhchap_ctrl_secret=%s,tls\n")


def files(d: Path, attrs: dict) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for k, v in attrs.items():
        p = d / k
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"{v}\n" if v is not None else "")


def link(root: Path, at: str, to: str) -> None:
    p = root / at
    p.parent.mkdir(parents=True, exist_ok=True)
    if not p.is_symlink():
        os.symlink(os.path.relpath(root / to, p.parent), p)


class FakeKernel:
    """The sysfs side and the /dev/nvme-fabrics side of a 6.12 host driver."""

    path = "/dev/nvme-fabrics"

    def __init__(self, root: Path, namespaces=(1,), *, appear_late: bool = False):
        self.root = root
        self.namespaces = list(namespaces)  # NSIDs every subsystem has
        self.appear_late = appear_late  # namespaces show up only on the first sleep
        self.written: list[str] = []
        self.errors: list[OSError] = []
        self.subsystems: dict[str, int] = {}
        self.pending: list[tuple[int, int]] = []
        self.events: list[str] = []

    # /dev/nvme-fabrics
    def read_tokens(self) -> str:
        return TOKENS

    def create(self, options: str) -> str:
        self.written.append(options)
        self.events.append("create")
        if self.errors:
            raise self.errors.pop(0)
        opts = dict(p.partition("=")[::2] for p in options.split(","))
        inst = self.free_instance()
        self.add_ctrl(inst, traddr=opts["traddr"], trsvcid=opts["trsvcid"], subnqn=opts["nqn"],
                      queue_count=int(opts.get("nr_io_queues", 1)) + 1,
                      sqsize=int(opts.get("queue_size", 128)) - 1,
                      kato=int(opts.get("keep_alive_tmo", 0)),
                      ctrl_loss_tmo=opts.get("ctrl_loss_tmo", "600"))
        return f"instance={inst},cntlid={inst + 1}\n"

    def free_instance(self) -> int:
        used = {int(n[4:]) for n in os.listdir(self.root / "sys/class/nvme")} \
            if (self.root / "sys/class/nvme").exists() else set()
        return min(set(range(len(used) + 1)) - used)

    # sysfs
    def add_ctrl(self, inst: int, *, traddr="10.0.2.2", trsvcid="4420", subnqn=SUBNQN,
                 state="live", queue_count=2, sqsize=127, kato=120, ctrl_loss_tmo="600",
                 transport="tcp") -> None:
        d = self.root / FABRICS / f"nvme{inst}"
        files(d, {"address": f"traddr={traddr},trsvcid={trsvcid},src_addr=10.0.2.15",
                  "cntlid": inst + 1, "ctrl_loss_tmo": ctrl_loss_tmo, "delete_controller": None,
                  "hostid": HOSTID, "hostnqn": HOSTNQN, "kato": kato,
                  "model": "Linux".ljust(40), "queue_count": queue_count,
                  "reconnect_delay": 10, "reset_controller": None, "sqsize": sqsize,
                  "state": state, "subsysnqn": subnqn, "transport": transport})
        link(self.root, f"sys/class/nvme/nvme{inst}", f"{FABRICS}/nvme{inst}")
        if subnqn == DISCOVERY_NQN:
            return
        sub = self.subsystems.setdefault(subnqn, inst)
        if self.appear_late:
            self.pending.append((sub, inst))
        else:
            self.add_paths(sub, inst)

    def add_paths(self, sub: int, inst: int) -> None:
        sd = self.root / SUBSYS / f"nvme-subsys{sub}"
        files(sd, {"subsysnqn": next(n for n, i in self.subsystems.items() if i == sub)})
        link(self.root, f"sys/class/nvme-subsystem/nvme-subsys{sub}", f"{SUBSYS}/nvme-subsys{sub}")
        for k, nsid in enumerate(self.namespaces, 1):
            path = self.root / FABRICS / f"nvme{inst}" / f"nvme{sub}c{inst}n{k}"
            files(path, {"nsid": nsid, "size": 2048})
            head = sd / f"nvme{sub}n{k}"
            if not head.exists():
                files(head, {"nsid": nsid, "size": 2048, "queue/logical_block_size": 512})
                link(self.root, f"sys/block/nvme{sub}n{k}", str(head.relative_to(self.root)))

    def set_state(self, inst: int, state: str) -> None:
        (self.root / FABRICS / f"nvme{inst}" / "state").write_text(state + "\n")

    def attr(self, inst: int, name: str) -> str:
        return (self.root / FABRICS / f"nvme{inst}" / name).read_text()


class Clock:
    def __init__(self, kernel: FakeKernel | None = None, on_sleep=None):
        self.now = 100.0
        self.sleeps = 0
        self.on_sleep = on_sleep

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps += 1
        self.now += s
        if self.on_sleep:
            self.on_sleep(self.sleeps)


class FakeAssoc:
    def __init__(self, nsids=(1,), events=None):
        self.nsids = list(nsids)
        self.events = events if events is not None else []

    def identify(self, cns: int, nsid: int = 0, cntid: int = 0) -> bytes:
        assert cns == CNS_ACTIVE_NSID_LIST
        return encode_active_nsid_list(self.nsids)

    def shutdown(self) -> None:
        self.events.append("shutdown")


def params(**kw) -> ConnectParams:
    base = dict(traddr="10.0.2.2", trsvcid="4420", subnqn=SUBNQN, hostnqn=HOSTNQN, hostid=HOSTID)
    base.update(kw)
    return ConnectParams(**base)


@pytest.fixture
def kernel(tmp_path) -> FakeKernel:
    root = tmp_path / "root"
    root.mkdir()
    return FakeKernel(root)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def backend(kernel, clock, tmp_path) -> LinuxKernelBackend:
    return LinuxKernelBackend(root=str(kernel.root), fabrics=kernel, clock=clock, sleep=clock.sleep,
                              environ={ENV_RUNTIME_DIR: str(tmp_path / "run")})


def writes(backend, monkeypatch) -> list[tuple[str, str]]:
    """Record sysfs writes (the fake files cannot act like the kernel)."""
    log = []
    real = backend.sysfs.write

    def write(name, attr, value="1"):
        log.append((name, attr))
        real(name, attr, value)

    monkeypatch.setattr(backend.sysfs, "write", write)
    return log


# -- identity --

def test_available_follows_the_node(tmp_path):
    assert not LinuxKernelBackend.available(str(tmp_path))
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/nvme-fabrics").write_text("")
    assert LinuxKernelBackend.available(str(tmp_path))


@pytest.mark.parametrize("name, owned", [
    ("nvme0", True), ("/dev/nvme12", True), ("nvme0n1", True), ("/dev/nvme0n1", True),
    ("nvme0ns1", True), ("nvme0c1n1", True), ("/dev/nvme0c1n1", True),
    ("nvmeu0", False), ("nvmeu0ns1", False), ("nbd0", False), ("nvme0c1", False),
    ("nda0", False), (SUBNQN, False),
])
def test_owns(backend, name, owned):
    assert backend.owns(name) is owned


# -- connect --

def test_connect_shuts_the_preflight_down_then_adds(backend, kernel):
    assoc = FakeAssoc(events=kernel.events)
    info = backend.connect(assoc, params())
    assert kernel.events == ["shutdown", "create"]
    assert kernel.written == [
        f"transport=tcp,traddr=10.0.2.2,trsvcid=4420,nqn={SUBNQN},hostnqn={HOSTNQN},"
        f"hostid={HOSTID},nr_io_queues=1,keep_alive_tmo=120,reconnect_delay=10,"
        f"ctrl_loss_tmo=600,disable_sqflow"]
    assert (info.name, info.backend, info.state, info.subnqn, info.cntlid) == \
        ("nvme0", "kernel", "live", SUBNQN, 1)
    assert [(n.name, n.nsid, n.path) for n in info.namespaces] == [("nvme0n1", 1, "/dev/nvme0n1")]
    assert info.warnings == []


def test_connect_is_idempotent(backend, kernel):
    first = backend.connect(FakeAssoc(), params())
    again = FakeAssoc()
    second = backend.connect(again, params())
    assert second.name == first.name
    assert len(kernel.written) == 1
    assert again.events == ["shutdown"]  # the pre-flight is still ours to end
    assert backend.find(params()).name == "nvme0"
    assert backend.find(params(trsvcid="4421")) is None
    assert backend.find(params(hostnqn="nqn.2014-08.org.example:other")) is None


def test_connect_to_another_subsystem_is_a_new_controller(backend, kernel):
    backend.connect(FakeAssoc(), params())
    info = backend.connect(FakeAssoc(), params(subnqn=OTHER_NQN))
    assert info.name == "nvme1"
    assert [n.name for n in info.namespaces] == ["nvme1n1"]


def test_connect_waits_for_namespaces(kernel, tmp_path):
    kernel.appear_late = True
    clock = Clock(on_sleep=lambda n: n == 3 and kernel.add_paths(*kernel.pending.pop()))
    backend = LinuxKernelBackend(root=str(kernel.root), fabrics=kernel, clock=clock,
                                 sleep=clock.sleep, environ={ENV_RUNTIME_DIR: str(tmp_path / "r")})
    info = backend.connect(FakeAssoc(nsids=[1]), params())
    assert clock.sleeps == 3
    assert [n.name for n in info.namespaces] == ["nvme0n1"]


def test_connect_gives_up_waiting_after_the_settle_time(kernel, backend, clock):
    kernel.appear_late = True
    info = backend.connect(FakeAssoc(nsids=[1, 2]), params())
    assert info.namespaces == []
    assert clock.now - 100.0 == pytest.approx(backend.settle_s, abs=0.1)
    assert info.warnings == ["0 of 2 namespaces visible so far"]


def test_connect_warns_when_not_live_yet(backend, kernel, monkeypatch):
    real_create = kernel.create

    def create_connecting(options):
        answer = real_create(options)
        kernel.set_state(0, "connecting")
        return answer

    monkeypatch.setattr(kernel, "create", create_connecting)
    info = backend.connect(FakeAssoc(), params())
    assert info.state == "connecting" and info.warnings == ["still connecting after 5 s"]


def test_discovery_connect_waits_for_nothing(backend, kernel, clock):
    info = backend.connect(FakeAssoc(), params(subnqn=DISCOVERY_NQN, num_io_queues=0, kato_s=0))
    assert clock.sleeps == 0 and info.namespaces == []
    assert "nr_io_queues" not in kernel.written[0]


def test_connect_without_preflight(backend):
    assert backend.connect(None, params()).name == "nvme0"


def test_connect_reports_left_out_options(backend, kernel):
    info = backend.connect(FakeAssoc(), params(cntlid=1))
    assert len(info.warnings) == 1 and "dynamic controller" in info.warnings[0]


def test_kernel_duplicate_without_a_match_is_reported(backend, kernel):
    kernel.errors.append(OSError(errno.EALREADY, "Operation already in progress"))
    with pytest.raises(AlreadyConnected, match="already connected"):
        backend.connect(FakeAssoc(), params())


def test_kernel_refusal_surfaces(backend, kernel):
    kernel.errors.append(OSError(errno.ECONNREFUSED, "Connection refused"))
    with pytest.raises(ConnectError, match="10.0.2.2:4420 .*Connection refused"):
        backend.connect(FakeAssoc(), params())


def test_a_controller_gone_at_once_is_an_error(backend, kernel, monkeypatch):
    monkeypatch.setattr(kernel, "create", lambda options: "instance=9,cntlid=1\n")
    with pytest.raises(DeviceError, match="nvme9 disappeared"):
        backend.connect(FakeAssoc(), params())


# -- list --

def test_list_includes_pcie(backend, kernel):
    kernel.add_ctrl(0)
    kernel.add_ctrl(1, transport="pcie")
    infos = backend.list()
    assert [(c.name, c.transport, c.params is not None) for c in infos] == [
        ("nvme0", "tcp", True), ("nvme1", "pcie", False)]


# -- disconnect --

@pytest.fixture
def two_paths(kernel):
    """nvme0 and nvme1: two paths to SUBNQN (head nvme0n1); nvme2 to OTHER_NQN; nvme3 pcie."""
    kernel.add_ctrl(0)
    kernel.add_ctrl(1, traddr="10.0.3.2")
    kernel.add_ctrl(2, subnqn=OTHER_NQN)
    kernel.add_ctrl(3, transport="pcie", subnqn="nqn.2019-08.org.qemu:x")
    return kernel


@pytest.mark.parametrize("name, deleted", [
    ("nvme1", ["nvme1"]),
    ("/dev/nvme2", ["nvme2"]),
    ("nvme0n1", ["nvme0", "nvme1"]),  # the multipath head: every path
    ("/dev/nvme0n1", ["nvme0", "nvme1"]),
    ("nvme0c1n1", ["nvme1"]),  # one path
    ("nvme2n1", ["nvme2"]),
    ("nvme2ns1", ["nvme2"]),  # FreeBSD spelling
    ("nvme1ns1", ["nvme1"]),  # namespace 1 of nvme1, whose node is nvme0n1
    (SUBNQN, ["nvme0", "nvme1"]),
    (OTHER_NQN, ["nvme2"]),
])
def test_disconnect_by_name(backend, two_paths, monkeypatch, name, deleted):
    log = writes(backend, monkeypatch)
    assert backend.disconnect(name) == deleted
    assert log == [(c, "delete_controller") for c in deleted]
    for c in deleted:
        assert two_paths.attr(int(c[4:]), "delete_controller") == "1"


def test_disconnect_takes_the_controller_lock(backend, two_paths, tmp_path):
    backend.disconnect("nvme1")
    assert (tmp_path / "run/locks/nvme1").exists()


@pytest.mark.parametrize("name", ["nvme7", "nvme7n1", "nvme0n9", "nvme0c7n1",
                                  "nqn.2014-08.org.example:none"])
def test_disconnect_unknown_names(backend, two_paths, name):
    with pytest.raises(NotFound):
        backend.disconnect(name)


def test_disconnect_refuses_pcie(backend, two_paths):
    with pytest.raises(UsageError, match="nvme3 is a pcie controller"):
        backend.disconnect("nvme3")


def test_disconnect_all_leaves_pcie_alone(backend, two_paths, monkeypatch):
    log = writes(backend, monkeypatch)
    assert backend.disconnect_all() == ["nvme0", "nvme1", "nvme2"]
    assert [c for c, _ in log] == ["nvme0", "nvme1", "nvme2"]


def test_delete_errors(backend, two_paths, monkeypatch):
    def busy(name, attr, value="1"):
        raise OSError(errno.EBUSY, "Device or resource busy")

    monkeypatch.setattr(backend.sysfs, "write", busy)
    with pytest.raises(DeviceError, match="not been live yet"):
        backend.disconnect("nvme0")

    def denied(name, attr, value="1"):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(backend.sysfs, "write", denied)
    with pytest.raises(DeviceError, match="needs root"):
        backend.disconnect("nvme0")


# -- reconnect --

def test_reconnect_resets_a_live_controller(backend, two_paths, monkeypatch):
    log = writes(backend, monkeypatch)
    info = backend.reconnect("nvme2")
    assert log == [("nvme2", "reset_controller")]
    assert (info.name, info.state) == ("nvme2", "live")


def test_reconnect_by_namespace_of_one_controller(backend, two_paths, monkeypatch):
    log = writes(backend, monkeypatch)
    backend.reconnect("nvme2n1")
    assert log == [("nvme2", "reset_controller")]


def test_reconnect_needs_one_controller(backend, two_paths):
    with pytest.raises(UsageError, match="2 controllers \\(nvme0, nvme1\\)"):
        backend.reconnect("nvme0n1")


def test_reconnect_waits_for_a_controller_already_reconnecting(kernel, tmp_path, monkeypatch):
    kernel.add_ctrl(0, state="connecting")
    clock = Clock(on_sleep=lambda n: n == 2 and kernel.set_state(0, "live"))
    backend = LinuxKernelBackend(root=str(kernel.root), fabrics=kernel, clock=clock,
                                 sleep=clock.sleep, environ={ENV_RUNTIME_DIR: str(tmp_path / "r")})
    log = writes(backend, monkeypatch)
    assert backend.reconnect("nvme0").state == "live"
    assert log == []  # the kernel refuses a reset while connecting


def test_reconnect_that_does_not_come_back(backend, kernel, monkeypatch):
    kernel.add_ctrl(0)

    def reset_fails(name, attr, value="1"):
        kernel.set_state(0, "connecting")
        raise OSError(errno.ENETRESET, "Connection reset by network")

    monkeypatch.setattr(backend.sysfs, "write", reset_fails)
    with pytest.raises(ConnectError, match="nvme0: not live again \\(connecting\\); the kernel "
                                           "retries every 10 s until ctrl_loss_tmo \\(600 s\\)"):
        backend.reconnect("nvme0")


def test_reconnect_refuses_pcie(backend, two_paths):
    with pytest.raises(UsageError, match="pcie"):
        backend.reconnect("nvme3")


def test_reconnect_to_a_new_address_adds_before_deleting(backend, kernel, monkeypatch):
    kernel.add_ctrl(0, queue_count=5, sqsize=63, kato=30, ctrl_loss_tmo="off")
    log = writes(backend, monkeypatch)
    monkeypatch.setattr(backend.sysfs, "write",
                        lambda n, a, v="1", w=backend.sysfs.write: (kernel.events.append(a), w(n, a, v)))
    info = backend.reconnect("nvme0", params(traddr="10.0.9.9", trsvcid="4430", hdgst=True))
    assert kernel.events == ["create", "delete_controller"]
    assert log == [("nvme0", "delete_controller")]
    assert kernel.written == [
        f"transport=tcp,traddr=10.0.9.9,trsvcid=4430,nqn={SUBNQN},hostnqn={HOSTNQN},"
        f"hostid={HOSTID},nr_io_queues=4,queue_size=64,keep_alive_tmo=30,reconnect_delay=10,"
        f"ctrl_loss_tmo=-1,hdr_digest,disable_sqflow"]
    assert (info.name, info.traddr, info.trsvcid) == ("nvme1", "10.0.9.9", "4430")


def test_reconnect_to_a_bad_address_keeps_the_old_controller(backend, kernel, monkeypatch):
    kernel.add_ctrl(0)
    log = writes(backend, monkeypatch)
    kernel.errors.append(OSError(errno.EHOSTUNREACH, "No route to host"))
    with pytest.raises(ConnectError):
        backend.reconnect("nvme0", params(traddr="10.0.9.9"))
    assert log == []


def test_reconnect_to_the_same_address_deletes_first(backend, kernel, monkeypatch):
    kernel.add_ctrl(0)
    monkeypatch.setattr(backend.sysfs, "write",
                        lambda n, a, v="1", w=backend.sysfs.write: (kernel.events.append(a), w(n, a, v)))
    backend.reconnect("nvme0", params())
    assert kernel.events == ["delete_controller", "create"]


def test_a_controller_being_deleted_does_not_count_as_connected(backend, kernel):
    kernel.add_ctrl(0, state="deleting")
    assert backend.find(params()) is None
    assert backend.connect(FakeAssoc(), params()).name == "nvme1"


def test_kernel_duplicate_found_afterwards_is_handed_back(backend, kernel, monkeypatch):
    """nvme-cli connected the same association between our find() and the write."""
    real_create = kernel.create

    def racing_create(options):
        real_create(options)  # the other tool's controller
        raise OSError(errno.EALREADY, "Operation already in progress")

    monkeypatch.setattr(kernel, "create", racing_create)
    assert backend.connect(FakeAssoc(), params()).name == "nvme0"


class PeerAssoc(FakeAssoc):
    """A pre-flight association whose admin socket reached ``peer``."""

    def __init__(self, peer):
        super().__init__()
        self.admin = type("Q", (), {"tq": type("T", (), {"peer": peer})()})()


def test_a_host_name_becomes_the_address_the_preflight_reached(backend, kernel):
    info = backend.connect(PeerAssoc(("10.0.2.2", 4420)), params(traddr="target.example"))
    assert "traddr=10.0.2.2," in kernel.written[0]
    assert info.traddr == "10.0.2.2"


def test_a_host_name_without_preflight_is_resolved(backend, kernel):
    backend.connect(None, params(traddr="localhost"))
    assert kernel.written[0].split(",")[1] in ("traddr=127.0.0.1", "traddr=::1")


def test_find_matches_a_host_name_by_its_addresses(backend, kernel):
    kernel.add_ctrl(0, traddr="127.0.0.1")
    kernel.add_ctrl(1, traddr="::1")
    assert backend.find(params(traddr="localhost")) is not None
    assert backend.find(params(traddr="127.0.0.1")).name == "nvme0"


SECRET = "DHHC-1:00:ZjRjYjQ4ZjQ2ZjNhYjQ2MzU4NjhmZjkzYjdlYmNmNGSmm1Bz:"


@pytest.mark.parametrize("given, want", [("<set>", SECRET), (None, SECRET),
                                         ("DHHC-1:00:bmV3bmV3bmV3bmV3bmV3bmV3bmV3bmV3mWmQ0w==:",
                                          "DHHC-1:00:bmV3bmV3bmV3bmV3bmV3bmV3bmV3bmV3mWmQ0w==:")])
def test_reconnect_to_a_new_address_keeps_the_dhchap_secret(backend, kernel, monkeypatch,
                                                            given, want):
    """The secret comes from sysfs (devlist shows only "<set>"), or a new one given."""
    kernel.add_ctrl(0)
    (kernel.root / FABRICS / "nvme0" / "dhchap_secret").write_text(SECRET + "\n")
    (kernel.root / FABRICS / "nvme0" / "dhchap_ctrl_secret").write_text("none\n")
    writes(backend, monkeypatch)
    backend.reconnect("nvme0", params(traddr="10.0.9.9", dhchap_secret=given))
    (line,) = kernel.written
    assert f"dhchap_secret={want}" in line.split(",")
    assert not any(o.startswith("dhchap_ctrl_secret=") for o in line.split(","))


def test_the_models_cntlid_dynamic_is_the_wire_ones():
    from nvmecontrol.backends import model
    from nvmecontrol.wire import fabrics
    assert model.CNTLID_DYNAMIC == fabrics.CNTLID_DYNAMIC
