"""``nvmecontrol`` inside the guest without paying Python's start-up each time.

Under TCG, starting the venv's python and importing the CLI (typer, rich,
the backends) costs 4-5 s of guest CPU per command, which would make a
dozen-step connect/devlist/disconnect scenario take a minute.  So the
tier starts one *warm* process per guest boot (the ``guest_cli`` fixture,
``GuestCli.ensure``): it imports ``nvmecontrol.cli.app`` once and then forks a child per command,
which runs ``main(argv)`` exactly as the console script does (its own
process, stdout/stderr to files, exit status = main's return value), so
backend state, locks and session daemons behave as for separate commands.
Only the console-script shim is skipped; ``test_kernel_target`` runs
``python -m nvmecontrol`` in the guest, and ``GuestCli.entry_point`` runs
``.venv/bin/nvmecontrol`` itself (a full start-up, ~5 s) where wanted.

Framing, one command per TCP connection on the guest's loopback, carried by
busybox ``nc`` through the agent (no new forwarded port needed)::

    request:  NVMC-CLI <base64 JSON {"argv": [...], "env": {...}}>\\n
    reply:    <JSON {"rc": N, "stdout": "...", "stderr": "..."}>\\n, then close

This file is both the host side (``GuestCli``) and, run as a script inside
the guest, the server (``serve``); it imports nothing from the test package
so that the guest's python can run it from any directory.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import sys
import time
from pathlib import Path

MAGIC = "NVMC-CLI"
# Guest-side TCP port on 127.0.0.1: inside the guest only, never forwarded.
DEFAULT_PORT = 7101
PID_FILE = "/run/nvmc-cli.pid"
LOG_FILE = "/run/nvmc-cli.log"
# Importing the CLI under TCG takes ~4 s; a loaded CI machine gets margin.
START_TIMEOUT_S = 90.0
PRELOAD = ("nvmecontrol.cli.app", "typer._adapters", "nvmecontrol.backends.linux",
           "nvmecontrol.backends.userspace.backend", "nvmecontrol.backends.userspace.daemon",
           "nvmecontrol.backends.freebsd.backend")
# A request is one line carrying an argv: anything bigger is not ours.
MAX_REQUEST_BYTES = 1 << 20


# --- the guest's side -----------------------------------------------------------

def _run_child(argv: list[str], env: dict[str, str], out_path: str, err_path: str) -> None:
    """In the forked child: become ``nvmecontrol argv`` and exit with its status."""
    rc = 70
    try:
        os.environ.update(env)
        fd_in = os.open(os.devnull, os.O_RDONLY)
        fd_out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        fd_err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        for fd, std in ((fd_in, 0), (fd_out, 1), (fd_err, 2)):
            os.dup2(fd, std)
            os.close(fd)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", closefd=False)
        sys.argv = ["nvmecontrol", *argv]
        from nvmecontrol.cli.app import main

        rc = main(argv)
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    except BaseException as e:  # noqa: BLE001 - report, then exit like a crashed CLI
        try:
            sys.stderr.write(f"guest_cli: {type(e).__name__}: {e}\n")
        except Exception:
            pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(rc if isinstance(rc, int) else 1)


def _handle(conn, workdir: str) -> None:
    f = conn.makefile("rb")
    line = f.readline(MAX_REQUEST_BYTES)
    magic, _, payload = line.decode("ascii", "replace").strip().partition(" ")
    if magic != MAGIC:
        conn.sendall(b'{"rc": 254, "stdout": "", "stderr": "guest_cli: bad request"}\n')
        return
    req = json.loads(base64.b64decode(payload))
    if req.get("argv") == ["--ping"]:
        conn.sendall(json.dumps({"rc": 0, "stdout": "pong\n", "stderr": ""}).encode() + b"\n")
        return
    out_path, err_path = f"{workdir}/out", f"{workdir}/err"
    pid = os.fork()
    if pid == 0:
        conn.close()
        _run_child(req["argv"], req.get("env") or {}, out_path, err_path)
    _, status = os.waitpid(pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    reply = {"rc": rc if rc >= 0 else 128 - rc,
             "stdout": Path(out_path).read_text(errors="replace"),
             "stderr": Path(err_path).read_text(errors="replace")}
    conn.sendall(json.dumps(reply).encode() + b"\n")


def serve(port: int, repo: str) -> None:
    import socket

    sys.path.insert(0, repo)
    os.chdir(repo)
    # The expensive part, once: every child inherits these modules (typer
    # imports its pydantic adapters only when it first parses a command).
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass

    workdir = f"/tmp/nvmc-cli.{os.getpid()}"
    os.makedirs(workdir, exist_ok=True)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(4)
    Path(PID_FILE).write_text(f"{os.getpid()}\n")
    while True:
        conn, _ = srv.accept()
        with conn:
            try:
                _handle(conn, workdir)
            except Exception as e:  # one bad request must not end the server
                try:
                    why = f"guest_cli: {type(e).__name__}: {e}"
                    reply = {"rc": 254, "stdout": "", "stderr": why}
                    conn.sendall(json.dumps(reply).encode() + b"\n")
                except OSError:
                    pass


# --- the host's side --------------------------------------------------------------

class GuestCli:
    """``nvmecontrol`` commands run in the guest (as root, on the guest kernel)."""

    def __init__(self, guest, *, port: int = DEFAULT_PORT):
        self.guest = guest
        self.port = port
        repo = Path(__file__).resolve().parents[2]
        exe = Path(sys.executable)
        # The venv's python is a symlink: map its directory, keep its name.
        self.python = f"{guest.guest_path(exe.parent)}/{exe.name}"
        self.repo = guest.guest_path(repo)
        self.here = guest.guest_path(Path(__file__).resolve())
        self._booted_as = None  # the guest's qemu process the server was started in

    def ensure(self) -> "GuestCli":
        """Started, and (re)started when the guest was rebooted since."""
        booted_as = getattr(self.guest, "_proc", None)
        if self._booted_as is not booted_as or booted_as is None:
            self.start()
            self._booted_as = booted_as
        return self

    def start(self) -> "GuestCli":
        self.stop()
        self.guest.run(
            f"cd {shlex.quote(self.repo)} && setsid {shlex.quote(self.python)} "
            f"{shlex.quote(self.here)} {self.port} {shlex.quote(self.repo)} "
            f"</dev/null >{LOG_FILE} 2>&1 &",
            check=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            res = self._request(["--ping"], {}, timeout=10)
            if res.ok and res.stdout == "pong\n":
                return self
            if time.monotonic() > deadline:
                log = self.guest.run(f"cat {LOG_FILE}").stdout
                raise RuntimeError(f"guest CLI server did not start: {res.stderr}\n{log}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.guest.alive:
            self.guest.run(f"[ -f {PID_FILE} ] && kill $(cat {PID_FILE}); rm -f {PID_FILE}; true")

    def _request(self, argv: list[str], env: dict[str, str], timeout: float):
        from .agent import Result

        payload = base64.b64encode(json.dumps({"argv": argv, "env": env}).encode()).decode()
        # busybox nc (the initramfs) half-closes after the request and prints the reply.
        res = self.guest.run(f"echo '{MAGIC} {payload}' | nc 127.0.0.1 {self.port}",
                             chroot=False, timeout=timeout)
        if not res.ok or not res.stdout.strip():
            return Result(255, "", f"guest_cli: no reply (nc rc={res.rc}): {res.stderr}",
                          res.elapsed_s, res.timed_out)
        reply = json.loads(res.stdout)
        return Result(reply["rc"], reply["stdout"], reply["stderr"], res.elapsed_s)

    def __call__(self, *argv: str, env: dict[str, str] | None = None, timeout: float = 120):
        """``nvmecontrol *argv`` in the guest; a ``Result`` (rc, stdout, stderr)."""
        return self._request([str(a) for a in argv], env or {}, timeout)

    def entry_point(self, *argv: str, timeout: float = 120):
        """The installed console script, a fresh process (slow: a full start-up)."""
        script = f"{self.python.rsplit('/', 1)[0]}/nvmecontrol"
        return self.guest.run(" ".join(shlex.quote(a) for a in (script, *argv)), timeout=timeout)


# Every NVMe-oF controller the guest kernel holds, every attached /dev/nbdX.
CLEAR_HOSTS_SCRIPT = """\
for c in /sys/class/nvme-fabrics/ctl/nvme*; do
    [ -e "$c/delete_controller" ] && echo 1 > "$c/delete_controller"
done
for d in /sys/block/nbd*; do
    [ -e "$d/pid" ] && nbd-client -d "/dev/${d##*/}" >/dev/null 2>&1
done
for i in $(seq 50); do
    set -- /sys/class/nvme/nvme*
    [ -e "$1" ] || exit 0
    sleep 0.1
done
echo "left behind: $(ls /sys/class/nvme)" >&2
exit 1
"""


def guest_controllers(guest) -> list[str]:
    """The names under the guest's /sys/class/nvme."""
    return guest.run("ls /sys/class/nvme", check=True).stdout.split()


def clear_guest_hosts(guest, cli: GuestCli | None = None) -> None:
    """Leave the guest without sessions, NVMe-oF controllers or NBD attachments."""
    if not guest.alive:
        return
    if cli is not None:
        cli("disconnect-all")
    guest.run(CLEAR_HOSTS_SCRIPT, check=True, timeout=60)


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2])
