"""``connect --backend kernel`` and friends inside the guest, on a real Linux 6.12 host driver.

Our nvmecontrol runs in the guest as root (the host's venv over 9p, see
``guest_cli``): the pre-flight association is ours, then the kernel dials
again from the options string written to /dev/nvme-fabrics, and devlist,
identify, reconnect and disconnect work on what sysfs shows.  Targets: the
guest's own nvmet on 127.0.0.1:4420, and nvmfd on the host (10.0.2.2).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import time
import uuid

import pytest

from nvmecontrol.cli import exitcodes as X
from nvmecontrol.target.config import NamespaceConfig, PortConfig, SubsystemConfig, TargetConfig

from .guest_cli import clear_guest_hosts, guest_controllers
from .nvmet import Namespace, NvmetConfig, Port, Subsystem

HOST_FROM_GUEST = "10.0.2.2"
NQN = "nqn.2014-08.org.nvmexpress.test:kbackend"
NQN_LOCKED = "nqn.2014-08.org.nvmexpress.test:kbackend-locked"
HOSTID = "3c9d2b1a-6e5f-4a7b-8c9d-0e1f2a3b4c5d"
HOSTNQN = f"nqn.2014-08.org.nvmexpress:uuid:{HOSTID}"
OTHER_HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-4333-8444-555555555555"
# -q/-I explicit: the guest sees the host's /etc/nvme, whatever it holds.
WHO = ("-q", HOSTNQN, "-I", HOSTID)
MIB = 1 << 20


@pytest.fixture
def clean_guest(linux_guest, guest_cli):
    """No controllers before; none after, whatever the test left (pass or fail)."""
    clear_guest_hosts(linux_guest)
    yield guest_cli
    # Kernel controllers only: this module starts no sessions in the guest.
    clear_guest_hosts(linux_guest)


@pytest.fixture
def kernel_nvmet(kernel_target, clean_guest):
    kernel_target.apply(NvmetConfig(
        subsystems=[
            Subsystem(NQN, [Namespace(1, size_mib=8), Namespace(2, size_mib=4)]),
            Subsystem(NQN_LOCKED, [Namespace(1, size_mib=4)], allow_any_host=False,
                      allowed_hosts=[OTHER_HOSTNQN]),
        ],
        ports=[Port(1, 4420, subsystems=[NQN, NQN_LOCKED])],
    ))
    return kernel_target


def kmsg_mark(guest) -> str:
    """Write a unique line to the guest's kernel log; ``kmsg_since`` reads what follows."""
    mark = f"interop-mark-{uuid.uuid4().hex[:12]}"
    guest.run(f"echo {mark} > /dev/kmsg", chroot=False, check=True)
    return mark


def kmsg_since(guest, mark: str) -> list[str]:
    out = guest.run("dmesg", chroot=False, check=True).stdout.splitlines()
    idx = max(i for i, line in enumerate(out) if mark in line)
    return [re.sub(r"^\[[ \d.]+\]\s*", "", line) for line in out[idx + 1:]]


def namespaces_by_nsid(devlist_json: dict, ctrl: str) -> dict[int, dict]:
    (c,) = [c for c in devlist_json["controllers"] if c["name"] == ctrl]
    return {ns["nsid"]: ns for ns in c["namespaces"]}


def dd_roundtrip(guest, dev: str, size: int, *, seed: str) -> str:
    """Write ``size`` pseudo-random bytes to ``dev`` (O_DIRECT), read them back; the md5."""
    res = guest.run(
        f"set -e; head -c {size} /dev/urandom > /tmp/{seed}\n"
        f"dd if=/tmp/{seed} of={dev} bs=1M oflag=direct status=none\n"
        f"dd if={dev} of=/tmp/{seed}.back bs=1M count={size // MIB} iflag=direct status=none\n"
        f"cmp /tmp/{seed} /tmp/{seed}.back\n"
        f"md5sum < /tmp/{seed}", timeout=120)
    assert res.ok, res.stderr
    return res.stdout.split()[0]


def test_connect_lifecycle_against_kernel_nvmet(linux_guest, kernel_nvmet, clean_guest):
    cli = clean_guest
    mark = kmsg_mark(linux_guest)

    def nvmet_ctrls() -> int:
        """Controllers nvmet created for NQN since the mark (one per association)."""
        return sum("nvmet: creating nvm controller" in line and NQN in line
                   for line in kmsg_since(linux_guest, mark))

    # connect: the controller and its namespace nodes, by name.
    res = cli("connect", "--backend", "kernel", *WHO, "127.0.0.1:4420", NQN)
    assert res.ok, res.stderr
    m = re.fullmatch(rf"(nvme\d+): connected to {re.escape(NQN)} at 127\.0\.0\.1:4420 "
                     r"\((nvme\d+n\d+), (nvme\d+n\d+)\)\n", res.stdout)
    assert m, res.stdout
    ctrl, ns_names = m.group(1), [m.group(2), m.group(3)]
    assert res.stderr == ""
    assert guest_controllers(linux_guest) == [ctrl]
    # Pre-flight plus the kernel's own association.
    assert nvmet_ctrls() == 2

    # devlist -o json: what sysfs says, in spec-mnemonic keys.
    res = cli("devlist", "-o", "json")
    assert res.ok, res.stderr
    listed = json.loads(res.stdout)
    (c,) = listed["controllers"]
    assert (c["name"], c["backend"], c["model"], c["subnqn"], c["transport"], c["traddr"],
            c["trsvcid"], c["hostnqn"], c["state"], c["connected"]) == \
        (ctrl, "kernel", "Linux", NQN, "tcp", "127.0.0.1", "4420", HOSTNQN, "live", True)
    assert c["cntlid"] > 0 and c["pid"] is None
    p = c["params"]
    assert (p["hostid"], p["num_io_queues"], p["kato_s"], p["reconnect_delay_s"],
            p["ctrl_loss_tmo_s"]) == (HOSTID, 1, 120, 10, 600)
    assert 16 <= p["queue_size"] <= 1024
    nss = namespaces_by_nsid(listed, ctrl)
    assert sorted(nss) == [1, 2]
    assert sorted(ns["name"] for ns in nss.values()) == sorted(ns_names)
    assert (nss[1]["size_bytes"], nss[2]["size_bytes"]) == (8 * MIB, 4 * MIB)
    for ns in nss.values():
        assert ns["lba_size"] == 512 and ns["path"] == f"/dev/{ns['name']}" and ns["uri"] is None
    dev1, dev2 = nss[1]["path"], nss[2]["path"]

    # devlist text: FreeBSD's lines.
    res = cli("devlist")
    assert res.ok, res.stderr
    assert res.stdout == (f"{ctrl:>6s}: Linux (connected via TCP 127.0.0.1:4420)\n"
                          f"  {nss[1]['name']:>10s} (8MB)\n"
                          f"  {nss[2]['name']:>10s} (4MB)\n")

    # A second connect finds it and says so: nothing new in sysfs or at the target.
    res = cli("connect", "--backend", "kernel", *WHO, "127.0.0.1:4420", NQN)
    assert res.ok, res.stderr
    assert res.stdout.startswith(
        f"{ctrl}: already connected to {NQN} at 127.0.0.1:4420 ("), res.stdout
    assert guest_controllers(linux_guest) == [ctrl]
    assert nvmet_ctrls() == 2

    # Data through the kernel's namespace node lands on nvmet's backing device.
    digest = dd_roundtrip(linux_guest, dev1, 2 * MIB, seed="kb1")
    backing = kernel_nvmet.applied.devices[(NQN, 1)]
    res = linux_guest.run(f"head -c {2 * MIB} {backing} | md5sum", check=True)
    assert res.stdout.split()[0] == digest

    # identify through the passthrough ioctl on the kernel's device nodes.
    res = cli("identify", ctrl)
    assert res.ok, res.stderr
    assert re.search(r"^Model Number:\s+Linux$", res.stdout, re.M)
    assert re.search(rf"^NVM Subsystem Name:\s+{re.escape(NQN)}$", res.stdout, re.M), res.stdout
    res = cli("identify", "-o", "json", nss[2]["name"])
    assert res.ok, res.stderr
    assert json.loads(res.stdout)["nsze"] == 4 * MIB // 512

    # reconnect: reset_controller; the kernel dials a new association and is live again.
    res = cli("reconnect", ctrl)
    assert res.ok, res.stderr
    assert res.stdout == f"{ctrl}: reconnected to {NQN} at 127.0.0.1:4420\n"
    assert linux_guest.run(f"cat /sys/class/nvme/{ctrl}/state", check=True).stdout == "live\n"
    assert nvmet_ctrls() == 3
    res = linux_guest.run(f"dd if={dev1} bs=1M count=2 iflag=direct status=none | md5sum",
                          check=True)
    assert res.stdout.split()[0] == digest

    # disconnect by name.
    res = cli("disconnect", ctrl)
    assert res.ok, res.stderr
    assert res.stdout == f"{ctrl}: disconnected\n"
    assert guest_controllers(linux_guest) == []
    assert not linux_guest.run(f"test -e {dev1} || test -e {dev2}").ok

    # disconnect by subsystem NQN.
    res = cli("connect", "--backend", "kernel", "-o", "json", *WHO, "127.0.0.1:4420", NQN)
    assert res.ok, res.stderr
    (c,) = json.loads(res.stdout)["controllers"]
    assert c["created"] is True and c["state"] == "live" and len(c["namespaces"]) == 2
    res = cli("disconnect", NQN)
    assert res.ok and res.stdout == f"{c['name']}: disconnected\n", res.stdout + res.stderr
    assert guest_controllers(linux_guest) == []

    # disconnect-all.
    res = cli("connect", "--backend", "kernel", *WHO, "127.0.0.1:4420", NQN)
    assert res.ok, res.stderr
    name = res.stdout.split(":")[0]
    res = cli("disconnect-all")
    assert res.ok and res.stdout == f"{name}: disconnected\n", res.stdout + res.stderr
    assert guest_controllers(linux_guest) == []


def test_refused_host_and_wrong_port_fail_before_the_kernel_is_asked(linux_guest, kernel_nvmet,
                                                                     clean_guest):
    """The pre-flight's verdict with its exit status; nothing reaches the host driver."""
    cli = clean_guest
    mark = kmsg_mark(linux_guest)
    res = cli("connect", "--backend", "kernel", *WHO, "127.0.0.1:4420", NQN_LOCKED)
    assert res.rc == X.EX_NOPERM, res.stdout + res.stderr
    assert res.stdout == ""
    assert "Connect Invalid Host (sct 0x1, sc 0x84, dnr)" in res.stderr
    res = cli("connect", "--backend", "kernel", *WHO, "127.0.0.1:4421", NQN)
    assert res.rc == X.EX_NOHOST, res.stdout + res.stderr
    assert "127.0.0.1:4421" in res.stderr and "refused" in res.stderr.lower()
    assert guest_controllers(linux_guest) == []
    log = kmsg_since(linux_guest, mark)
    # nvmet refused exactly one Connect (ours); the host driver logged nothing.
    assert sum("not allowed" in line for line in log) == 1, log
    assert not [line for line in log if line.startswith("nvme ")], log


def test_kernel_backend_to_nvmfd_with_digests(linux_guest, nvmfd_factory, clean_guest, tmp_path):
    """Against nvmfd on the host: digests reach the kernel's queues; data lands in nvmfd."""
    cli = clean_guest
    srv = nvmfd_factory(namespaces=["mem:8M"])
    addr = f"{HOST_FROM_GUEST}:{srv.port}"
    res = cli("connect", "--backend", "kernel", "-g", "-G", *WHO, addr, srv.subnqn)
    assert res.ok, res.stderr
    m = re.fullmatch(rf"(nvme\d+): connected to {re.escape(srv.subnqn)} at "
                     rf"{re.escape(addr)} \((nvme\d+n\d+)\)\n", res.stdout)
    assert m, res.stdout
    ctrl, ns = m.groups()
    # Every queue the kernel opened negotiated both digests (the pre-flight's are gone).
    conns = list(srv.server.connections)
    assert len(conns) >= 2 and all(c.qp.hdgst and c.qp.ddgst for c in conns), \
        [(c.qid, c.qp.hdgst, c.qp.ddgst) for c in conns]

    pattern = tmp_path / "pattern"
    pattern.write_bytes(os.urandom(2 * MIB))
    res = linux_guest.run(f"dd if={shlex.quote(linux_guest.guest_path(pattern))} of=/dev/{ns} "
                          f"bs=1M oflag=direct status=none && "
                          f"dd if=/dev/{ns} bs=1M count=2 iflag=direct status=none | md5sum",
                          timeout=120)
    assert res.ok, res.stderr
    want = hashlib.md5(pattern.read_bytes()).hexdigest()
    assert res.stdout.split()[0] == want
    stored = bytearray(2 * MIB)
    srv.server.subsystems[srv.subnqn].namespaces[1].backend.read_into(memoryview(stored), 0)
    assert hashlib.md5(stored).hexdigest() == want

    res = cli("devlist")
    assert res.ok, res.stderr
    assert res.stdout == (f"{ctrl:>6s}: nvmfd (connected via TCP {addr})\n"
                          f"  {ns:>10s} (8MB)\n")

    res = cli("disconnect", ctrl)
    assert res.ok and res.stdout == f"{ctrl}: disconnected\n", res.stderr
    assert guest_controllers(linux_guest) == []
    deadline = time.monotonic() + 10
    while srv.server.connections and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not srv.server.connections


def _nvmfd_config(port: int) -> TargetConfig:
    nqn = "nqn.2014-08.org.nvmexpress.test:kbackend-outage"
    return TargetConfig(
        ports=[PortConfig(portid=1, traddr="127.0.0.1", trsvcid=str(port), subsystems=[nqn])],
        subsystems=[SubsystemConfig(nqn, [NamespaceConfig(1, "mem:4M")], allow_any_host=True)])


def wait_state(guest, ctrl: str, want: str, timeout_s: float = 20) -> None:
    state = f"/sys/class/nvme/{ctrl}/state"
    res = guest.run(f"for i in $(seq {int(timeout_s * 10)}); do "
                    f"[ \"$(cat {state} 2>&1)\" = {want} ] && exit 0; sleep 0.1; done; "
                    f"cat {state}; exit 1", timeout=timeout_s + 30)
    assert res.ok, f"{ctrl} not {want}: {res.stdout}{res.stderr}"


def test_target_outage_and_reconnect(linux_guest, nvmfd_factory, clean_guest):
    """-l 0 keeps the controller through an outage; reconnect waits for it, then resets it."""
    cli = clean_guest
    first = nvmfd_factory(config=_nvmfd_config(0))
    nqn, addr = first.subnqn, f"{HOST_FROM_GUEST}:{first.port}"
    res = cli("connect", "--backend", "kernel", "-r", "1", "-l", "0", "-k", "0", *WHO, addr, nqn)
    assert res.ok, res.stderr
    ctrl = res.stdout.split(":")[0]
    # -k 0 cannot be had from the kernel (it keeps its default KATO): said, not hidden.
    assert (f"nvmecontrol: {ctrl}: the kernel does not run I/O controllers without keep-alive"
            in res.stderr), res.stderr
    # -l 0: the kernel's spelling of "for ever" (its 0 would mean "never reconnect").
    res = linux_guest.run(f"cd /sys/class/nvme/{ctrl} && cat ctrl_loss_tmo reconnect_delay kato")
    ctrl_loss_tmo, reconnect_delay, kato = res.stdout.split()
    assert (ctrl_loss_tmo, reconnect_delay) == ("off", "1") and kato != "0", res.stdout

    first.stop()
    wait_state(linux_guest, ctrl, "connecting")
    res = cli("devlist")
    assert res.ok and f"{ctrl}: nvmfd (connecting)\n" in res.stdout, res.stdout
    # Still re-dialling, so no reset: reconnect waits for it, then reports the state.
    res = cli("reconnect", ctrl)
    assert res.rc == X.EX_NOHOST, res.stdout + res.stderr
    assert (f"{ctrl}: not live again (connecting); the kernel retries every 1 s for ever"
            in res.stderr), res.stderr
    assert guest_controllers(linux_guest) == [ctrl]

    # The target comes back on the same port: the kernel gets there by itself.
    nvmfd_factory(config=_nvmfd_config(first.port))
    wait_state(linux_guest, ctrl, "live")
    res = cli("reconnect", ctrl)
    assert res.ok and res.stdout == f"{ctrl}: reconnected to {nqn} at {addr}\n", res.stderr
    res = cli("disconnect", ctrl)
    assert res.ok, res.stderr
    assert guest_controllers(linux_guest) == []
