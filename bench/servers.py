"""Everything the benchmark starts, and stopping all of it.

``Servers`` owns one temporary directory and every process started in it:
nvmfd instances, nbdkit, the reference loop (``bench.refloop``), userspace
sessions (``nvmecontrol connect --backend nbd --no-attach`` with
``NVMECONTROL_RUNTIME_DIR`` inside the temporary directory) and background
fio loads.  ``close()`` disconnects the sessions, kills what is left, stops
the servers and removes the directory; it runs on errors, Ctrl-C and
SIGTERM too (``__main__`` turns SIGTERM/SIGHUP into KeyboardInterrupt).

Servers run in their own process session (``start_new_session``) so that a
Ctrl-C in the terminal reaches only the benchmark, which then stops them in
order (sessions first, while nvmfd still answers their disconnect).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 60


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """``field`` (VmRSS, VmHWM) of /proc/PID/status in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Servers:
    def __init__(self, python: str = sys.executable):
        self.python = python
        # Short: the sessions' Unix sockets live under it (108-byte limit).
        self.tmp = Path(tempfile.mkdtemp(prefix="nvb-"))
        self.rundir = self.tmp / "run"
        self.env = dict(os.environ, PYTHONPATH=str(REPO), NVMECONTROL_RUNTIME_DIR=str(self.rundir))
        self.env.pop("NVMECONTROL_DEBUG", None)
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.sessions: list[dict] = []
        self._n = 0

    # -- starting --
    def _popen(self, name: str, cmd: list[str], **kw) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "wb")
        try:
            p = subprocess.Popen(cmd, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True, **kw)
        finally:
            log.close()
        self.procs.append((name, p))
        return p

    def _wait_file(self, path: Path, proc: subprocess.Popen, what: str) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (path.exists() and path.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start: {self.log_tail(what)}")
            time.sleep(0.05)
        return path.read_text().split()[0]

    def log_tail(self, name: str, n: int = 600) -> str:
        try:
            return (self.tmp / f"{name}.log").read_text(errors="replace").strip()[-n:]
        except OSError:
            return "(no log)"

    def nvmfd(self, name: str, subnqn: str, size: int) -> tuple[subprocess.Popen, int]:
        """nvmfd on 127.0.0.1 with one RAM namespace of ``size`` bytes."""
        port_file = self.tmp / f"{name}.port"
        p = self._popen(name, [self.python, "-m", "nvmecontrol.target.main", "-F",
                               "-a", "127.0.0.1", "-p", "0", "--port-file", str(port_file),
                               "-S", str(self.tmp / f"{name}.sock"), "-n", subnqn,
                               f"mem:{size}"])
        return p, int(self._wait_file(port_file, p, name))

    def nbdkit(self, size: int) -> str:
        """nbdkit's memory plugin on a Unix socket; returns its NBD URI."""
        sock = self.tmp / "nbdkit.sock"
        p = self._popen("nbdkit", ["nbdkit", "-f", "-U", str(sock), "memory", str(size)])
        deadline = time.monotonic() + START_TIMEOUT_S
        while not sock.exists():
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nbdkit did not start: {self.log_tail('nbdkit')}")
            time.sleep(0.05)
        return f"nbd+unix:///?socket={sock}"

    def refloop(self) -> int:
        port_file = self.tmp / "refloop.port"
        p = self._popen("refloop", [self.python, "-m", "bench.refloop", str(port_file)],
                        cwd=str(REPO))
        return int(self._wait_file(port_file, p, "refloop"))

    def sessions_connect(self, port: int, subnqn: str, options: dict[str, list[str]]) -> dict:
        """Start one session per entry of ``options`` (label -> extra connect
        options), all at once; returns label -> {"name", "uri", "pid"}.

        Each gets its own host NQN: connect refuses a second association of
        the same host to the same subsystem.
        """
        started = {}
        for label, extra in options.items():
            u = uuid.uuid4()
            cmd = [self.python, "-m", "nvmecontrol", "connect", "--backend", "nbd",
                   "--no-attach", "-o", "json", "-q", f"nqn.2014-08.org.nvmexpress:uuid:{u}",
                   "-I", str(u), *extra, f"127.0.0.1:{port}", subnqn]
            started[label] = self.track(f"connect-{label}", subprocess.Popen(
                cmd, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, start_new_session=True))
        got, errors = {}, []
        for label, p in started.items():
            try:
                out, err = p.communicate(timeout=START_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate()
            if p.returncode:
                errors.append(f"{label}: {err.strip()[-400:]}")
                continue
            ctrl = json.loads(out)["controllers"][0]
            state = json.loads((self.rundir / ctrl["name"] / "session.json").read_text())
            info = {"name": ctrl["name"], "uri": ctrl["namespaces"][0]["uri"],
                    "pid": int(state["pid"])}
            self.sessions.append(info)
            got[label] = info
        if errors:
            raise RuntimeError("connect failed: " + "; ".join(errors))
        return got

    def pid(self, name: str) -> int:
        """The process started as ``name`` (nbdkit, refloop, an nvmfd)."""
        return next(p.pid for n, p in self.procs if n == name)

    def track(self, name: str, proc: subprocess.Popen) -> subprocess.Popen:
        """Stop ``proc`` in close() too (a background fio, say)."""
        self.procs.append((name, proc))
        return proc

    # -- stopping --
    def _session_pids(self) -> list[int]:
        """Session processes by their state files (also those whose connect was cut short)."""
        pids = []
        for state in self.rundir.glob("*/session.json"):
            try:
                pids.append(int(json.loads(state.read_text())["pid"]))
            except (OSError, ValueError, KeyError, TypeError):
                pass
        return pids

    def close(self) -> None:
        """Stop everything and remove the directory; never raises.

        Ctrl-C (or SIGTERM) again while this runs is ignored: a half-done cleanup
        is what leaves processes behind.
        """
        sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in sigs}
        try:
            self._close()
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)

    def _close(self) -> None:
        # Background loads and unfinished connects first (loads hold NBD
        # connections to sessions; a connect may be about to start one).
        for name, p in reversed(self.procs):
            if name.startswith(("load", "connect")) and p.poll() is None:
                p.kill()
                p.wait()
        pids = {s["pid"] for s in self.sessions} | set(self._session_pids())
        if pids or self.rundir.exists():
            # Only our runtime directory: disconnect-all cannot touch other sessions.
            try:
                subprocess.run([self.python, "-m", "nvmecontrol", "disconnect-all"],
                               env=self.env, capture_output=True, timeout=60)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + 10
        for pid in pids:
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        self.sessions.clear()
        for _name, p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for _name, p in reversed(self.procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)
