"""Shared pieces of the userspace-session tests (test_sessions, test_nbd_clients,
test_session_faults): the CLI runners, an nvmfd with a file-backed namespace
that can be stopped and started again on the same port, a small NBD client
that keeps a known pattern of writes in flight, and the guard that no
session process outlives its test.

Import the fixtures you use by name (``from .sessionkit import session_guard,
...``): pytest finds fixtures in a test module's namespace, and
``session_guard`` is autouse there.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nvmecontrol.backends.userspace.backend import UserspaceBackend
from nvmecontrol.cli.app import main
from nvmecontrol.nbd import protocol as N
from nvmecontrol.target.config import (NamespaceConfig, PortConfig, SubsystemConfig,
                                       TargetConfig)

REPO = Path(__file__).resolve().parents[2]

HOSTID = "5b8c1f6e-2d4a-4c3b-9e7f-0a1b2c3d4e5f"
HOST = f"nqn.2014-08.org.nvmexpress:uuid:{HOSTID}"
OTHER_HOSTID = "9d0e1f2a-3b4c-4d5e-8f60-718293a4b5c6"
OTHER_HOST = f"nqn.2014-08.org.nvmexpress:uuid:{OTHER_HOSTID}"
SUBNQN = "nqn.2014-08.org.example:nvmfd-test"  # tests/conftest.py's DEFAULT_SUBNQN
MiB = 1 << 20
# The marker every session process has in its command line (daemon.spawn).
SESSION_MARK = b"nvmecontrol.backends.userspace"

TOOLS = {"nbdinfo": "libnbd-bin", "nbdcopy": "libnbd-bin", "nbdfuse": "libnbd-bin",
         "qemu-img": "qemu-utils", "fio": "fio", "fusermount3": "fuse3"}


# --- waiting, tools ------------------------------------------------------------------

def wait_for(predicate, what: str, timeout: float = 20.0, interval: float = 0.02):
    """Poll ``predicate`` until it returns something true; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def need(tool: str) -> str:
    """The tool's path; skip naming its Debian package (fail under CI=true)."""
    path = shutil.which(tool)
    if path is None:
        reason = f"{tool} is not installed (Debian package {TOOLS[tool]})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"test tool missing under CI: {reason}", pytrace=False)
        pytest.skip(reason)
    return path


def run(*cmd, cwd=None, timeout: float = 120) -> str:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stderr}"
    return proc.stdout


# --- the CLI -----------------------------------------------------------------------

def cli(*argv) -> tuple[int, str, str]:
    """``nvmecontrol ARGV`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def cli_ok(*argv) -> str:
    rc, out, err = cli(*argv)
    assert rc == 0, f"nvmecontrol {' '.join(map(str, argv))} exited {rc}: {err}"
    return out


def entry_point() -> list[str]:
    """The installed ``nvmecontrol`` script of this venv (``python -m nvmecontrol`` without one)."""
    script = Path(sys.executable).parent / "nvmecontrol"
    return [str(script)] if script.exists() else [sys.executable, "-m", "nvmecontrol"]


def cli_proc(*argv, timeout: float = 60) -> subprocess.CompletedProcess:
    """The real entry point in a subprocess (it inherits NVMECONTROL_RUNTIME_DIR)."""
    return subprocess.run(entry_point() + [str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, cwd=str(REPO))


def connect(target, *opts, host: str = HOST, hostid: str = HOSTID, subnqn: str | None = None,
            address: str | None = None) -> dict:
    """``connect --backend nbd`` as JSON; returns the one controller it reports."""
    out = cli_ok("connect", "--backend", "nbd", "-o", "json", "-q", host, "-I", hostid, *opts,
                 address or f"127.0.0.1:{target.port}", subnqn or target.subnqn)
    (ctrl,) = json.loads(out)["controllers"]
    return ctrl


def sessions() -> dict:
    """Sessions of this test's runtime directory by name (ControllerInfo)."""
    return {i.name: i for i in UserspaceBackend().list()}


def session(name: str = "nvmeu0"):
    return UserspaceBackend().get(name)


def nbd_socket(name: str = "nvmeu0") -> str:
    return str(UserspaceBackend().paths(name).nbd)


def uri(name: str = "nvmeu0", nsid: int = 1) -> str:
    return f"nbd+unix:///ns{nsid}?socket={nbd_socket(name)}"


# --- session processes -----------------------------------------------------------------

def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def pid_running(pid: int) -> bool:
    """Alive and not a zombie (an exited session nobody reaped is gone for our purposes)."""
    state = _proc_state(pid)
    return state is not None and state not in ("Z", "X")


def session_pids(rundir: Path) -> list[int]:
    """Running session processes serving ``rundir`` (found by command line and environment)."""
    found = []
    needle = f"NVMECONTROL_RUNTIME_DIR={rundir}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if SESSION_MARK not in cmdline:
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if needle in environ and pid_running(int(entry.name)):
            found.append(int(entry.name))
    return found


@pytest.fixture(autouse=True)
def session_guard(_private_runtime_dir):
    """No session process may outlive its test: find them, kill them, fail the test."""
    rundir = _private_runtime_dir
    yield rundir
    left = session_pids(rundir)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    logs = ""
    if left:
        for log in sorted((rundir / "log").glob("*.log")):
            logs += f"\n--- {log.name} ---\n{log.read_text()[-4000:]}"
    shutil.rmtree(rundir, ignore_errors=True)
    assert not left, f"session processes left running: {left}{logs}"


def session_log(name: str = "nvmeu0") -> str:
    try:
        return UserspaceBackend().paths(name).log.read_text()
    except OSError:
        return ""


# --- the target ----------------------------------------------------------------------

def backing_file(path: Path, size: int = 8 * MiB) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def start_target(nvmfd_factory, namespaces, *, port: int = 0, subnqn: str = SUBNQN,
                 allow_hosts=None, **server_opts):
    """An in-process nvmfd on 127.0.0.1:``port`` (0: any) serving ``namespaces``."""
    cfg = target_config(namespaces, port=port, subnqn=subnqn, allow_hosts=allow_hosts)
    return nvmfd_factory(config=cfg, **server_opts)


def target_config(namespaces, *, port: int = 0, subnqn: str = SUBNQN, allow_hosts=None,
                  extra_subsystems=()) -> TargetConfig:
    """One port; ``namespaces`` are paths, ``mem:SIZE`` or (path, block_size) pairs."""
    nss = []
    for nsid, n in enumerate(namespaces, 1):
        path, bs = (n, 512) if not isinstance(n, tuple) else n
        nss.append(NamespaceConfig(nsid=nsid, path=str(path), block_size=bs))
    subs = [SubsystemConfig(nqn=subnqn, namespaces=nss, allow_any_host=allow_hosts is None,
                            allowed_hosts=list(allow_hosts or []))]
    subs += list(extra_subsystems)
    return TargetConfig(hosts=list(allow_hosts or []),
                        ports=[PortConfig(portid=1, traddr="127.0.0.1", trsvcid=str(port),
                                          subsystems=[s.nqn for s in subs])],
                        subsystems=subs)


def io_associations(target) -> list[dict]:
    """The target's live I/O associations (not discovery ones)."""
    return [a for a in target.server.associations() if not a["discovery"]]


class Gate:
    """Hold the target's ``op`` ("write" or "read_into") on namespace ``nsid`` while
    closed: a command the host sent is then really in flight (executing on the
    controller) when the test acts.  ``let_through`` commands pass a closed gate
    first (to have part of a request done)."""

    def __init__(self, target, op: str = "write", nsid: int = 1, subnqn: str = SUBNQN):
        self.backend = target.server.subsystems[subnqn].namespaces[nsid].backend
        self.op = op
        self._real = getattr(self.backend, op)
        self.open = threading.Event()
        self.open.set()
        self.entered = threading.Event()
        self._lock = threading.Lock()
        self._pass = 0
        setattr(self.backend, op, self._gated)

    def _gated(self, buf, offset):
        with self._lock:
            held = not self.open.is_set() and self._pass <= 0
            self._pass -= 1
        if held:
            self.entered.set()
            self.open.wait(30)
        self._real(buf, offset)

    def close(self, let_through: int = 0) -> None:
        with self._lock:
            self.entered.clear()
            self._pass = let_through
            self.open.clear()


# --- an NBD client that shows what is acknowledged -------------------------------------------

class NbdError(Exception):
    pass


class NbdClient:
    """Fixed newstyle, NBD_OPT_GO, simple replies only; requests may be pipelined."""

    def __init__(self, path: str, export: str = "ns1", timeout: float = 30.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        magic, opt_magic, _flags = struct.unpack(">QQH", self._recv(18))
        if (magic, opt_magic) != (N.NBDMAGIC, N.IHAVEOPT):
            raise NbdError("not an NBD fixed newstyle server")
        self.sock.sendall(struct.pack(">I", N.ClientFlag.FIXED_NEWSTYLE | N.ClientFlag.NO_ZEROES))
        name = export.encode()
        data = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
        self.sock.sendall(struct.pack(">QII", N.IHAVEOPT, N.Opt.GO, len(data)) + data)
        self.size = self.flags = None
        while True:
            _magic, _opt, rtype, length = struct.unpack(">QIII", self._recv(20))
            payload = self._recv(length)
            if rtype == N.Rep.ACK:
                break
            if rtype == N.Rep.INFO and struct.unpack(">H", payload[:2])[0] == N.Info.EXPORT:
                self.size, self.flags = struct.unpack(">QH", payload[2:12])
            elif rtype & (1 << 31):
                raise NbdError(f"export {export!r} refused: reply {rtype:#x} {payload!r}")
        self._cookies = itertools.count(1)
        self._reads: dict[int, int] = {}

    def _recv(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise NbdError("the server closed the connection")
            buf += chunk
        return bytes(buf)

    def send(self, cmd: int, offset: int = 0, length: int = 0, data: bytes = b"",
             flags: int = 0) -> int:
        cookie = next(self._cookies)
        if cmd == N.CMD_WRITE:
            length = len(data)
        if cmd == N.CMD_READ:
            self._reads[cookie] = length
        self.sock.sendall(struct.pack(">IHHQQI", N.REQUEST_MAGIC, flags, cmd, cookie, offset,
                                      length) + data)
        return cookie

    def reply(self) -> tuple[int, int, bytes]:
        """(cookie, NBD errno, read data)"""
        magic, error, cookie = struct.unpack(">IIQ", self._recv(16))
        if magic != N.SIMPLE_REPLY_MAGIC:
            raise NbdError(f"bad reply magic {magic:#x}")
        length = self._reads.pop(cookie, 0)
        return cookie, error, self._recv(length) if length and not error else b""

    def write(self, offset: int, data: bytes) -> int:
        self.send(N.CMD_WRITE, offset, data=data)
        return self.reply()[1]

    def read(self, offset: int, length: int) -> bytes:
        self.send(N.CMD_READ, offset, length)
        _cookie, error, data = self.reply()
        if error:
            raise NbdError(f"read at {offset} failed with errno {error}")
        return data

    def flush(self) -> int:
        self.send(N.CMD_FLUSH)
        return self.reply()[1]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(struct.pack(">IHHQQI", N.REQUEST_MAGIC, 0, N.CMD_DISC, 0, 0, 0))
        self.sock.close()


def pattern(seed: int, index: int, size: int = 4096) -> bytes:
    return random.Random(seed * 1_000_003 + index).randbytes(size)


class PatternWriter(threading.Thread):
    """Writes block i = pattern(seed, i) for every block, ``depth`` requests in flight.

    ``pause_after`` acknowledged writes it stops submitting (what is in flight
    stays in flight) and sets ``paused``; ``resume()`` lets it go on.  Every
    acknowledgement is recorded with its errno.
    """

    def __init__(self, path: str, blocks: int, *, seed: int = 1, block: int = 4096,
                 depth: int = 8, pause_after: int | None = None, export: str = "ns1"):
        super().__init__(daemon=True, name="pattern-writer")
        self.client = NbdClient(path, export)
        self.blocks, self.seed, self.block, self.depth = blocks, seed, block, depth
        self.pause_after = pause_after
        self.paused = threading.Event()
        self._resume = threading.Event()
        self.acked: dict[int, int] = {}  # block -> errno
        self.inflight_at_pause = 0
        self.error: BaseException | None = None

    def resume(self) -> None:
        self._resume.set()

    def run(self) -> None:
        try:
            c = self.client
            by_cookie: dict[int, int] = {}
            nxt = 0
            while len(self.acked) < self.blocks:
                may_submit = self.pause_after is None or self._resume.is_set() \
                    or nxt < self.pause_after + self.depth
                while may_submit and nxt < self.blocks and len(by_cookie) < self.depth:
                    cookie = c.send(N.CMD_WRITE, nxt * self.block,
                                    data=pattern(self.seed, nxt, self.block))
                    by_cookie[cookie] = nxt
                    nxt += 1
                    may_submit = self.pause_after is None or self._resume.is_set() \
                        or nxt < self.pause_after + self.depth
                if self.pause_after is not None and not self.paused.is_set() \
                        and len(self.acked) >= self.pause_after:
                    self.inflight_at_pause = len(by_cookie)
                    self.paused.set()
                    self._resume.wait(60)
                    continue
                cookie, error, _ = c.reply()
                self.acked[by_cookie.pop(cookie)] = error
        except BaseException as e:  # reported by finish()
            self.error = e
            self.paused.set()

    def finish(self, timeout: float = 60.0) -> dict[int, int]:
        self.resume()
        self.join(timeout)
        assert not self.is_alive(), "the writer did not finish"
        if self.error is not None:
            raise self.error
        self.client.close()
        return self.acked

    def expected(self) -> bytes:
        return b"".join(pattern(self.seed, i, self.block) for i in range(self.blocks))


def read_all(path: str, length: int, export: str = "ns1", chunk: int = 1 * MiB) -> bytes:
    c = NbdClient(path, export)
    try:
        return b"".join(c.read(off, min(chunk, length - off)) for off in range(0, length, chunk))
    finally:
        c.close()
