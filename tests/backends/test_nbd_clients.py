"""Real NBD clients against a userspace session on nvmfd: nbdinfo, nbdcopy,
qemu-img, fio's nbd engine, nbdfuse, several clients at once, several I/O
queues.

What a client wrote is checked on the target's side too: the data are read
back through a second, fresh session (disconnect, connect again) or from
the namespace's backing file.

A missing tool skips naming its Debian package, except under CI=true,
where it fails (as tests/nbd/test_clients.py does).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess

import pytest

from nvmecontrol.nbd import protocol as N

from .sessionkit import (MiB, NbdClient, backing_file, cli_ok, connect, io_associations,
                         nbd_socket, need, read_all, run, session_guard, session_log,
                         start_target, uri, wait_for)

assert session_guard  # autouse, imported for this module

SIZE = 16 * MiB


@pytest.fixture
def target(nvmfd_factory):
    """nvmfd serving one 16 MiB RAM namespace (it outlives the sessions)."""
    return start_target(nvmfd_factory, ["mem:16M"])


def reconnect_fresh(target, *opts) -> None:
    """End the session and start another: what it reads next comes from the controller."""
    cli_ok("disconnect-all")
    connect(target, *opts)


# --- nbdinfo -------------------------------------------------------------------------

def test_nbdinfo(target):
    need("nbdinfo")
    connect(target)
    info = json.loads(run("nbdinfo", "--json", uri()))
    (export,) = info["exports"]
    assert export["export-name"] == "ns1"
    assert export["export-size"] == SIZE
    assert export["description"] == f"{target.subnqn} namespace 1"
    assert (export["block_size_minimum"], export["block_size_preferred"]) == (512, 4096)
    assert export["is_read_only"] is False and export["can_flush"] and export["can_multi_conn"]
    assert run("nbdinfo", "--size", uri()).strip() == str(SIZE)
    listed = json.loads(run("nbdinfo", "--list", "--json", uri()))
    assert [e["export-name"] for e in listed["exports"]] == ["ns1"]
    cli_ok("disconnect", "nvmeu0")


def test_nbdinfo_two_namespaces(nvmfd_factory):
    need("nbdinfo")
    target = start_target(nvmfd_factory, ["mem:2M", ("mem:4M", 4096)])
    connect(target)
    listed = {e["export-name"]: e for e in
              json.loads(run("nbdinfo", "--list", "--json", uri()))["exports"]}
    assert set(listed) == {"ns1", "ns2"}
    assert listed["ns2"]["export-size"] == 4 * MiB
    assert listed["ns2"]["block_size_minimum"] == 4096
    # The URI devlist prints for the second namespace is the one that works.
    assert run("nbdinfo", "--size", uri(nsid=2)).strip() == str(4 * MiB)
    cli_ok("disconnect", "nvmeu0")


def test_nbd_listen_on_tcp(target, tmp_path):
    need("nbdinfo")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    ctrl = connect(target, "--nbd-listen", f"127.0.0.1:{port}")
    # connect and devlist show the TCP URI (it was never shown: issue 15 item 5).
    tcp_uri = f"nbd://127.0.0.1:{port}/ns1"
    assert ctrl["namespaces"][0]["tcp_uris"] == [tcp_uri]
    assert tcp_uri in cli_ok("devlist")
    assert run("nbdinfo", "--size", tcp_uri).strip() == str(SIZE)
    # Written over the unix socket, read over TCP.
    c = NbdClient(nbd_socket())
    try:
        assert c.write(0, b"\x42" * 4096) == 0
    finally:
        c.close()
    if shutil.which("nbdcopy"):
        back = tmp_path / "back"
        run("nbdcopy", f"nbd://127.0.0.1:{port}/ns1", back)
        assert back.read_bytes()[:4097] == b"\x42" * 4096 + b"\0"
    cli_ok("disconnect", "nvmeu0")
    # The state is written once more after the listeners closed: no EBADF there.
    log = session_log()
    assert "Traceback" not in log and "Bad file descriptor" not in log, log


def test_nbd_listen_on_any_free_port(target):
    """Port 0 takes a free port: the URIs connect and devlist print name it."""
    need("nbdinfo")
    ctrl = connect(target, "--nbd-listen", "127.0.0.1:0")
    (tcp_uri,) = ctrl["namespaces"][0]["tcp_uris"]
    assert tcp_uri.startswith("nbd://127.0.0.1:") and tcp_uri.endswith("/ns1")
    port = int(tcp_uri.split(":")[2].split("/")[0])
    assert port != 0
    assert tcp_uri in cli_ok("devlist")
    assert run("nbdinfo", "--size", tcp_uri).strip() == str(SIZE)
    cli_ok("disconnect", "nvmeu0")


# --- nbdcopy -------------------------------------------------------------------------

def test_nbdcopy_round_trip_and_on_the_target(target, tmp_path):
    need("nbdcopy")
    connect(target)
    src, back, again = tmp_path / "src", tmp_path / "back", tmp_path / "again"
    data = os.urandom(SIZE)
    src.write_bytes(data)
    run("nbdcopy", src, uri())
    run("nbdcopy", uri(), back)
    assert back.read_bytes() == data
    reconnect_fresh(target)
    run("nbdcopy", uri(), again)
    assert again.read_bytes() == data
    cli_ok("disconnect", "nvmeu0")


def test_two_io_queues_and_many_connections(target, tmp_path):
    need("nbdcopy")
    connect(target, "-i", "2")
    (assoc,) = io_associations(target)
    assert assoc["queues"] == 3  # admin + 2 I/O
    src, back = tmp_path / "src", tmp_path / "back"
    data = os.urandom(SIZE)
    src.write_bytes(data)
    run("nbdcopy", "--connections=4", "--requests=16", src, uri())
    # Each NBD connection is logged when it picks its export; CAN_MULTI_CONN is
    # advertised, so nbdcopy spread the copy over several.
    assert session_log().count("export 'ns1'") >= 2
    run("nbdcopy", "--connections=4", uri(), back)
    assert back.read_bytes() == data
    reconnect_fresh(target, "-i", "2")
    assert read_all(nbd_socket(), SIZE) == data
    cli_ok("disconnect", "nvmeu0")


# --- qemu-img ------------------------------------------------------------------------

def test_qemu_img_convert_round_trip(target, tmp_path):
    need("qemu-img")
    connect(target)
    info = json.loads(run("qemu-img", "info", "--output=json", uri()))
    assert info["virtual-size"] == SIZE
    src, back = tmp_path / "src.img", tmp_path / "back.img"
    data = os.urandom(SIZE)
    src.write_bytes(data)
    run("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, uri())
    run("qemu-img", "convert", "-f", "raw", "-O", "raw", uri(), back)
    assert back.read_bytes() == data
    reconnect_fresh(target)
    assert read_all(nbd_socket(), SIZE) == data
    cli_ok("disconnect", "nvmeu0")


# --- fio -----------------------------------------------------------------------------

def test_fio_random_write_verify(target, tmp_path):
    need("fio")
    connect(target, "-i", "2")
    run("fio", "--name=session", "--ioengine=nbd", f"--uri={uri()}", "--rw=randwrite",
        "--bs=4k", "--iodepth=32", "--size=4M", "--verify=crc32c", "--do_verify=1",
        "--verify_fatal=1", "--randrepeat=0", "--verify_state_save=0", "--output-format=terse",
        cwd=tmp_path)
    cli_ok("disconnect", "nvmeu0")


# --- nbdfuse -------------------------------------------------------------------------

def test_nbdfuse_file_written_with_dd(target, tmp_path):
    need("nbdfuse")
    fusermount = shutil.which("fusermount") if not shutil.which("fusermount3") else None
    fusermount = fusermount or need("fusermount3")
    need("nbdcopy")
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        pytest.skip("/dev/fuse is not usable here")
    connect(target)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    pidfile = tmp_path / "nbdfuse.pid"
    proc = subprocess.Popen(["nbdfuse", "-P", str(pidfile), str(mnt / "disk"), uri()],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    mounted = False
    try:
        def ready():
            if proc.poll() is not None:
                pytest.fail(f"nbdfuse exited {proc.returncode}: {proc.stderr.read()}")
            return pidfile.exists() and pidfile.read_text().strip()
        wait_for(ready, "nbdfuse to mount")
        mounted = True
        disk = mnt / "disk"
        assert disk.stat().st_size == SIZE
        src = tmp_path / "src"
        data = os.urandom(4 * MiB)
        src.write_bytes(data)
        run("dd", f"if={src}", f"of={disk}", "bs=64k", "seek=16", "conv=notrunc,fsync",
            "status=none")
        with open(disk, "rb") as f:
            f.seek(1 * MiB)
            assert f.read(len(data)) == data
    finally:
        if mounted:
            subprocess.run([fusermount, "-u", str(mnt)], capture_output=True, timeout=30)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    back = tmp_path / "back"
    run("nbdcopy", uri(), back)
    assert back.read_bytes()[1 * MiB:5 * MiB] == data
    reconnect_fresh(target)
    assert read_all(nbd_socket(), 5 * MiB)[1 * MiB:] == data
    cli_ok("disconnect", "nvmeu0")


# --- several clients -------------------------------------------------------------------

def test_two_clients_see_each_others_data(target, tmp_path):
    connect(target)
    a, b = NbdClient(nbd_socket()), NbdClient(nbd_socket())
    try:
        blocks = {i: os.urandom(4096) for i in range(0, 256, 7)}
        for i, block in blocks.items():
            assert a.write(i * 4096, block) == 0
        assert a.flush() == 0
        for i, block in blocks.items():
            assert b.read(i * 4096, 4096) == block
        # And the other way round, interleaved, with requests in flight on both.
        for i in range(8):
            b.send(N.CMD_WRITE, i * 65536, data=bytes([i]) * 65536)
        assert sorted(b.reply()[1] for _ in range(8)) == [0] * 8
        assert a.read(0, 8 * 65536) == b"".join(bytes([i]) * 65536 for i in range(8))
    finally:
        a.close()
        b.close()
    # One tool writes, another reads.
    need("nbdcopy")
    need("qemu-img")
    src, back = tmp_path / "src", tmp_path / "back.img"
    data = os.urandom(SIZE)
    src.write_bytes(data)
    run("nbdcopy", src, uri())
    run("qemu-img", "convert", "-f", "raw", "-O", "raw", uri(), back)
    assert back.read_bytes() == data
    cli_ok("disconnect", "nvmeu0")


def test_file_namespace_holds_what_clients_wrote(nvmfd_factory, tmp_path):
    need("nbdcopy")
    path = backing_file(tmp_path / "ns1.img", 8 * MiB)
    target = start_target(nvmfd_factory, [path])
    connect(target, "-i", "2")
    src = tmp_path / "src"
    data = os.urandom(8 * MiB)
    src.write_bytes(data)
    run("nbdcopy", "--flush", src, uri())
    # Acknowledged writes are on the controller's medium, not in the session.
    assert path.read_bytes() == data
    cli_ok("disconnect", "nvmeu0")
    wait_for(lambda: not io_associations(target), "the association to end")
    assert path.read_bytes() == data


def test_write_zeroes_trim_flush_and_fua(nvmfd_factory, tmp_path):
    path = backing_file(tmp_path / "ns1.img", 4 * MiB)
    target = start_target(nvmfd_factory, [path])
    connect(target)
    c = NbdClient(nbd_socket())
    try:
        assert c.flags & N.TransmissionFlag.SEND_WRITE_ZEROES
        assert c.flags & N.TransmissionFlag.SEND_TRIM
        data = os.urandom(4 * MiB)
        assert c.write(0, data) == 0
        for cmd, offset, length in ((N.CMD_WRITE_ZEROES, 64 * 1024, 192 * 1024),
                                    (N.CMD_TRIM, 1 * MiB, 1 * MiB)):
            c.send(cmd, offset, length)
            assert c.reply()[1] == 0
        c.send(N.CMD_WRITE, 3 * MiB, data=b"\x77" * 4096, flags=N.CMD_FLAG_FUA)
        assert c.reply()[1] == 0
        assert c.flush() == 0
        expected = bytearray(data)
        expected[64 * 1024:256 * 1024] = bytes(192 * 1024)
        expected[1 * MiB:2 * MiB] = bytes(1 * MiB)  # nvmfd: deallocated blocks read as zeros
        expected[3 * MiB:3 * MiB + 4096] = b"\x77" * 4096
        assert c.read(0, 4 * MiB) == expected
        # What the controller refuses comes back as an NBD error, nothing dropped.
        c.send(N.CMD_READ, 4 * MiB - 512, 1024)  # past the end
        assert c.reply()[1] == N.EINVAL
        c.send(N.CMD_WRITE, 100, data=b"x" * 512)  # not block-aligned
        assert c.reply()[1] == N.EINVAL
        assert c.read(0, 4096) == expected[:4096]
    finally:
        c.close()
    assert path.read_bytes() == expected
    cli_ok("disconnect", "nvmeu0")
