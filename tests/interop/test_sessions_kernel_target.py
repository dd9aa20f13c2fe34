"""Userspace sessions (``--backend nbd``) on the host against the guest kernel's nvmet.

The session's NVMe/TCP queues go to nvmet-tcp through the forwarded port
(the discovery log's 10.0.2.15 is not reachable from the host, so the
forwarded address is given directly); its NBD exports are read and written
with nbdcopy and fio's nbd engine, and what they wrote is checked on the
target's own backing device in the guest.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import time

import pytest

from nvmecontrol.backends.runtime import runtime_dir
from nvmecontrol.backends.userspace.backend import UserspaceBackend, process_alive
from nvmecontrol.cli import exitcodes as X
from nvmecontrol.cli.app import main

from .nvmet import Namespace, NvmetConfig, Port, Subsystem
from .sessions import end_sessions, need
from .tshark import Capture, have_tshark

NQN = "nqn.2014-08.org.nvmexpress.test:sessions"
HOSTID = "7d3e1f20-4b5a-4c6d-8e7f-901a2b3c4d5e"
HOSTNQN = f"nqn.2014-08.org.nvmexpress:uuid:{HOSTID}"
WHO = ("-q", HOSTNQN, "-I", HOSTID)
MIB = 1 << 20


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def sessions():
    """Sessions started by the test end with it, passed or failed."""
    yield
    end_sessions()


@pytest.fixture
def nvmet_target(kernel_target):
    host, port = kernel_target.apply(NvmetConfig(
        subsystems=[Subsystem(NQN, [Namespace(1, size_mib=8), Namespace(2, size_mib=4)])],
        ports=[Port(1, 4420, subsystems=[NQN])],
    ))
    return f"{host}:{port}"


def nvmet_controllers(guest) -> int:
    """How many controllers nvmet created for NQN so far (its kernel log)."""
    log = guest.run("dmesg", chroot=False, check=True).stdout
    return sum("nvmet: creating nvm controller" in line and NQN in line
               for line in log.splitlines())


@pytest.mark.parametrize("digests", [(), ("-g", "-G")], ids=["plain", "digests"])
def test_session_to_kernel_nvmet(capsys, linux_guest, kernel_target, nvmet_target, sessions,
                                 tmp_path, request, digests):
    need("nbdcopy", "fio")
    before = nvmet_controllers(linux_guest)
    # With digests, the wire is checked too: Wireshark's dissector verifies every CRC32C.
    cap = None
    if digests and have_tshark():
        cap = Capture(int(nvmet_target.split(":")[1]), check_digests=True).__enter__()
        # Finalizers run last-in first-out: dumpcap stops (a no-op if it did), then the files go.
        request.addfinalizer(cap.cleanup)
        request.addfinalizer(lambda: cap.__exit__(None, None, None))
    rc, out, err = cli(capsys, "connect", "--backend", "nbd", "--no-attach", *digests, *WHO,
                       nvmet_target, NQN)
    assert rc == 0, err
    assert out.startswith(f"nvmeu0: connected to {NQN} at {nvmet_target}\n"), out
    uris = dict(re.findall(r"^  (nvmeu0ns\d): (nbd\+unix:///ns\d\?socket=\S+)$", out, re.M))
    assert sorted(uris) == ["nvmeu0ns1", "nvmeu0ns2"], out
    assert nvmet_controllers(linux_guest) == before + 1

    rc, out, err = cli(capsys, "devlist")
    assert rc == 0, err
    assert out == (f"nvmeu0: Linux (connected via TCP {nvmet_target})\n"
                   f"   nvmeu0ns1 (8MB) {uris['nvmeu0ns1']}\n"
                   f"   nvmeu0ns2 (4MB) {uris['nvmeu0ns2']}\n")
    rc, out, err = cli(capsys, "devlist", "-o", "json")
    (c,) = json.loads(out)["controllers"]
    host, port = nvmet_target.split(":")
    assert (c["name"], c["backend"], c["model"], c["subnqn"], c["traddr"], c["trsvcid"],
            c["hostnqn"], c["state"], c["connected"]) == \
        ("nvmeu0", "nbd", "Linux", NQN, host, port, HOSTNQN, "live", True)
    assert process_alive(c["pid"]) and c["cntlid"] > 0
    assert (c["params"]["hdgst"], c["params"]["ddgst"]) == (bool(digests), bool(digests))
    assert [(ns["nsid"], ns["size_bytes"], ns["lba_size"], ns["path"])
            for ns in c["namespaces"]] == [(1, 8 * MIB, 512, None), (2, 4 * MIB, 512, None)]

    # nbdcopy in and out, byte-identical; and the same bytes on nvmet's backing device.
    data = os.urandom(4 * MIB)
    (tmp_path / "in").write_bytes(data)
    subprocess.run(["nbdcopy", str(tmp_path / "in"), uris["nvmeu0ns1"]], check=True, timeout=120)
    subprocess.run(["nbdcopy", uris["nvmeu0ns1"], str(tmp_path / "out")], check=True, timeout=120)
    assert (tmp_path / "out").read_bytes()[:len(data)] == data
    if cap is not None:
        cap.__exit__(None, None, None)
        # ICResp of the pre-flight's and the session's queues: both digests on.
        assert {r[0] for r in cap.fields("nvme-tcp.type == 1", "nvme-tcp.icresp.digest")} == {"3"}
        status = cap.fields("nvme-tcp.type == 7 && nvme-tcp.ddgst",
                            "nvme-tcp.hdgst.status", "nvme-tcp.ddgst.status")
        assert status and all(s == ["1", "1"] for s in status), status[:5]
        assert cap.problems() == []
    backing = kernel_target.applied.devices[(NQN, 1)]
    res = linux_guest.run(f"head -c {len(data)} {backing} | md5sum", chroot=False, check=True)
    assert res.stdout.split()[0] == hashlib.md5(data).hexdigest()

    # fio's nbd engine: random writes of mixed sizes, then verify every block.
    res = subprocess.run(
        ["fio", "--name=verify", "--ioengine=nbd", f"--uri={uris['nvmeu0ns2']}", "--rw=randwrite",
         "--bsrange=4k-64k", "--size=4M", "--iodepth=8", "--verify=crc32c", "--do_verify=1",
         "--verify_fatal=1", "--output-format=json"],
        capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    job = json.loads(res.stdout[res.stdout.index("{"):])["jobs"][0]
    assert job["error"] == 0 and job["write"]["io_bytes"] >= 4 * MIB and job["read"]["io_bytes"] > 0

    # Admin commands through the session's own association.
    rc, out, err = cli(capsys, "identify", "nvmeu0")
    assert rc == 0, err
    assert re.search(r"^Model Number:\s+Linux$", out, re.M)
    release = linux_guest.run("uname -r", chroot=False, check=True).stdout.strip()
    fw = re.search(r"^Firmware Version:\s+(\S+)$", out, re.M).group(1)
    assert release.startswith(fw), (fw, release)
    rc, out, err = cli(capsys, "identify", "-o", "json", "nvmeu0ns2")
    assert rc == 0, err
    assert json.loads(out)["nsze"] == 4 * MIB // 512

    if not digests:
        # reconnect: a new association to nvmet, the exports stay where they are.
        rc, out, err = cli(capsys, "reconnect", "nvmeu0")
        assert rc == 0, err
        assert out == f"nvmeu0: reconnected to {NQN} at {nvmet_target}\n"
        assert nvmet_controllers(linux_guest) == before + 2
        res = subprocess.run(["nbdcopy", uris["nvmeu0ns1"], "-"], capture_output=True, timeout=120)
        assert res.returncode == 0 and res.stdout[:len(data)] == data

    pid = c["pid"]
    rc, out, err = cli(capsys, "disconnect", "nvmeu0")
    assert rc == 0 and out == "nvmeu0: disconnected\n", err
    assert not process_alive(pid)
    assert not (runtime_dir() / "nvmeu0").exists()
    rc, out, err = cli(capsys, "devlist")
    assert rc == X.EX_UNAVAILABLE


def test_session_refused_and_unreachable(capsys, kernel_target, sessions):
    """A host outside allowed_hosts gets the decoded status; a closed port EX_NOHOST."""
    other = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-4333-8444-555555555555"
    host, port = kernel_target.apply(NvmetConfig(
        subsystems=[Subsystem(NQN, [Namespace(1, size_mib=4)], allow_any_host=False,
                              allowed_hosts=[other])],
        ports=[Port(1, 4420, subsystems=[NQN])],
    ))
    rc, out, err = cli(capsys, "connect", "--backend", "nbd", "--no-attach", *WHO,
                       f"{host}:{port}", NQN)
    assert rc == X.EX_NOPERM, err
    assert "Connect Invalid Host (sct 0x1, sc 0x84, dnr)" in err
    assert not list(runtime_dir().glob("nvmeu*"))
    rc, out, err = cli(capsys, "connect", "--backend", "nbd", "--no-attach", "-q", other,
                       f"{host}:{port}", NQN)
    assert rc == 0, err
    assert [c.name for c in UserspaceBackend().list()] == ["nvmeu0"]
    # Nothing listens there (the port was free a moment ago): refused before any NVMe.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    rc, out, err = cli(capsys, "connect", "--backend", "nbd", "--no-attach", *WHO,
                       f"127.0.0.1:{closed}", NQN)
    assert rc == X.EX_NOHOST and "refused" in err.lower(), err


def test_session_follows_namespace_changes_at_kernel_nvmet(capsys, linux_guest, kernel_target,
                                                           nvmet_target, sessions):
    """nvmet's Namespace Attribute Notice (a namespace disabled, then enabled
    again) reaches the session: the export goes and comes back without a
    reconnect, and the association stays the one nvmet created."""
    rc, out, err = cli(capsys, "connect", "--backend", "nbd", "--no-attach", *WHO,
                       nvmet_target, NQN)
    assert rc == 0, err
    before = nvmet_controllers(linux_guest)

    def nsids() -> list[int]:
        return [ns.nsid for ns in UserspaceBackend().get("nvmeu0").namespaces]

    def wait_for(predicate, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.1)

    assert nsids() == [1, 2]
    enable = f"/sys/kernel/config/nvmet/subsystems/{NQN}/namespaces/2/enable"
    linux_guest.run(f"echo 0 > {enable}", chroot=False, check=True)
    wait_for(lambda: nsids() == [1], "namespace 2 gone from the session", timeout=30)
    linux_guest.run(f"echo 1 > {enable}", chroot=False, check=True)
    wait_for(lambda: nsids() == [1, 2], "namespace 2 back in the session", timeout=30)
    rc, out, err = cli(capsys, "devlist")
    assert "nvmeu0ns2 (4MB)" in out, out
    assert nvmet_controllers(linux_guest) == before  # no new association was needed
    log = (runtime_dir() / "log" / "nvmeu0.log").read_text()
    assert "namespace attributes changed (2)" in log, log
    assert "connection lost" not in log, log
