"""A qemu guest running a Debian kernel, driven through the command agent.

Why a guest at all: the host kernel has no nvme/nvmet and cannot load
modules (``linux-peer-facts.md``).  Why TCG: ``/dev/kvm`` here is kvm_pvm and
either aborts or hits emulation failures; set ``NVMECONTROL_INTEROP_KVM=1`` to
try KVM first (with a fallback to TCG) on machines where it works.

Networking is qemu user mode (slirp): the guest is 10.0.2.15, the host's
loopback is 10.0.2.2 from inside, and selected guest ports (nvmet's 4420,
the agent) are forwarded to free ports on the host's 127.0.0.1.

The host root is shared read-only over virtio-9p and prepared by the guest's
init as a chroot (see ``initramfs.INIT_SCRIPT``), so ``run(..., chroot=True)``
executes the host's nvme-cli, fio, python3 and the project's code on the
guest kernel.  The host's /tmp is at ``/run/host-tmp`` there (``guest_path``).
"""

from __future__ import annotations

import atexit
import base64
import ctypes
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from typing import Iterable, Mapping

from . import agent
from .agent import AgentError, Result
from .initramfs import build_initramfs, check_busybox
from .kernel import Kernel, PrerequisiteMissing, fetch_kernel

NVMET_PORT = 4420
ENV_KVM = "NVMECONTROL_INTEROP_KVM"
ENV_SMP = "NVMECONTROL_INTEROP_SMP"
ENV_KEEP = "NVMECONTROL_INTEROP_KEEP_LOGS"
ENV_9P_CACHE = "NVMECONTROL_INTEROP_9P_CACHE"
# 9p cache mode for the host root.  "loose" caches metadata and pages in the
# guest, which makes python start-up several times faster than "none"; the
# price is that host files changed after the guest read them may look stale,
# which is fine for a test session's code and tools.  (/run/host-tmp is
# always uncached.)
DEFAULT_9P_CACHE = "loose"

# TCG boots in 6-11 s here; the margin covers a loaded CI machine.
BOOT_TIMEOUT_S = 120.0
# A KVM attempt that has not answered by then is treated as broken.
KVM_TRY_TIMEOUT_S = 30.0
# 64 MiB does not boot; 128 MiB is enough for small namespaces.
MIN_MEMORY_MIB = 128
DEFAULT_MEMORY_MIB = 256
# Extra time the host waits beyond a command's own timeout for the reply.
REPLY_MARGIN_S = 30.0
# Tries at picking free host ports (another process may take one first).
PORT_TRIES = 3

KERNEL_CMDLINE = " ".join(
    (
        "console=ttyS0",
        "rdinit=/init",
        "panic=-1",  # with -no-reboot, a panic ends qemu instead of hanging
        "loglevel=4",
        "mitigations=off",  # speculative-execution mitigations only cost time under TCG
        "random.trust_cpu=on",  # crng ready at once (nvme auth wants random bytes)
    )
)

_live: "weakref.WeakSet[LinuxGuest]" = weakref.WeakSet()


def _stop_all() -> None:
    for g in list(_live):
        g.stop()


atexit.register(_stop_all)


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL qemu if the test process dies without cleaning up."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_qemu() -> str:
    path = shutil.which("qemu-system-x86_64")
    if path is None:
        raise PrerequisiteMissing("qemu-system-x86_64 not found (Debian package qemu-system-x86)")
    return path


class GuestError(RuntimeError):
    """The guest failed to boot or died; the message carries the console tail."""


class LinuxGuest:
    """One qemu guest; ``start()`` returns once the agent answers."""

    def __init__(
        self,
        kernel: Kernel | None = None,
        *,
        memory_mib: int = DEFAULT_MEMORY_MIB,
        smp: int | None = None,
        guest_ports: Iterable[int] = (NVMET_PORT,),
        share_host_root: bool = True,
        p9_cache: str | None = None,
        boot_timeout_s: float = BOOT_TIMEOUT_S,
        workdir: Path | None = None,
    ) -> None:
        if memory_mib < MIN_MEMORY_MIB:
            raise ValueError(f"memory_mib={memory_mib}: the guest needs at least {MIN_MEMORY_MIB}")
        self.kernel = kernel
        self.memory_mib = memory_mib
        self.smp = smp or int(os.environ.get(ENV_SMP, "1"))
        self.guest_ports = sorted({*guest_ports, agent.AGENT_PORT})
        self.share_host_root = share_host_root
        self.p9_cache = p9_cache or os.environ.get(ENV_9P_CACHE, DEFAULT_9P_CACHE)
        self.boot_timeout_s = boot_timeout_s
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="nvmecontrol-interop-"))
        self.console_log = self.workdir / "console.log"
        self.qemu_log = self.workdir / "qemu.log"
        self.accel: str | None = None
        self.boot_time_s: float | None = None
        self._ports: dict[int, int] = {}
        self._proc: subprocess.Popen[bytes] | None = None

    # --- lifecycle ------------------------------------------------------

    def __enter__(self) -> "LinuxGuest":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> "LinuxGuest":
        qemu = check_qemu()
        check_busybox()
        if self.kernel is None:
            self.kernel = fetch_kernel()
        initrd = build_initramfs(self.kernel)
        self.workdir.mkdir(parents=True, exist_ok=True)
        want_kvm = os.environ.get(ENV_KVM) == "1" and os.access("/dev/kvm", os.W_OK)
        accels = ["kvm", "tcg"] if want_kvm else ["tcg"]
        _live.add(self)
        last: Exception | None = None
        for accel in accels:
            timeout = KVM_TRY_TIMEOUT_S if accel == "kvm" else self.boot_timeout_s
            for _ in range(PORT_TRIES):
                try:
                    self._boot(qemu, initrd, accel, timeout)
                    return self
                except GuestError as exc:
                    last = exc
                    self._kill()
                    if "host forwarding rule" not in str(exc):
                        break
        self.stop()
        assert last is not None
        raise last

    def restart(self) -> "LinuxGuest":
        """Boot afresh (after a guest panic, say); forwarded ports change."""
        self._kill()
        return self.start()

    def _argv(self, qemu: str, initrd: Path, accel: str) -> list[str]:
        assert self.kernel is not None
        fwd = ",".join(f"hostfwd=tcp:127.0.0.1:{h}-:{g}" for g, h in self._ports.items())
        argv = [
            qemu,
            "-accel", accel,
            "-cpu", "host" if accel == "kvm" else "max",
            "-m", str(self.memory_mib),
            "-smp", str(self.smp),
            "-nographic", "-nodefaults", "-no-reboot",
            "-monitor", "none",
            "-serial", f"file:{self.console_log}",
            "-kernel", str(self.kernel.vmlinuz),
            "-initrd", str(initrd),
            "-append", f"{KERNEL_CMDLINE} interop.p9cache={self.p9_cache}",
            "-netdev", f"user,id=net0,{fwd}",
            # romfile=: no PXE option ROM, the kernel is loaded directly.
            "-device", "virtio-net-pci,netdev=net0,romfile=",
        ]  # fmt: skip
        if self.share_host_root:
            opts = "security_model=none,readonly=on,multidevs=remap"
            argv += [
                "-virtfs", f"local,path=/,mount_tag=hostroot,{opts}",
                "-virtfs", f"local,path=/tmp,mount_tag=hosttmp,{opts}",
            ]  # fmt: skip
        return argv

    def _boot(self, qemu: str, initrd: Path, accel: str, timeout_s: float) -> None:
        self._ports = {g: _free_port() for g in self.guest_ports}
        self.accel = accel
        t0 = time.monotonic()
        with open(self.qemu_log, "wb") as log:
            self._proc = subprocess.Popen(
                self._argv(qemu, initrd, accel),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        deadline = t0 + timeout_s
        while True:
            if self._proc.poll() is not None:
                raise GuestError(f"qemu ({accel}) exited with {self._proc.returncode}\n{self.diagnostics()}")
            try:
                self._request("true", chroot=False, timeout=5, connect_timeout=2, reply_timeout=5)
                break
            except (OSError, AgentError):
                pass
            if time.monotonic() > deadline:
                raise GuestError(
                    f"guest ({accel}) did not answer within {timeout_s:.0f}s\n{self.diagnostics()}"
                )
            time.sleep(0.25)
        self.boot_time_s = time.monotonic() - t0
        if self.share_host_root:
            probe = f"test -x /bin/sh && test -d {agent.HOST_TMP_IN_GUEST}"
            res = self._request(probe, chroot=True, timeout=30)
            if not res.ok:
                raise GuestError(f"host root chroot unusable: {res.stderr}\n{self.diagnostics()}")

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        """Stop qemu (idempotent); the work directory goes unless ENV_KEEP is set."""
        self._kill()
        _live.discard(self)
        if self._own_workdir and not os.environ.get(ENV_KEEP) and self.workdir.exists():
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # --- introspection --------------------------------------------------

    def host_port(self, guest_port: int) -> int:
        """Host port on 127.0.0.1 forwarded to *guest_port* (see ``guest_ports``)."""
        try:
            return self._ports[guest_port]
        except KeyError:
            raise KeyError(f"guest port {guest_port} is not forwarded; pass it in guest_ports") from None

    def console_text(self) -> str:
        try:
            return self.console_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def diagnostics(self, lines: int = 40) -> str:
        """Tails of the serial console and qemu's own output, for error messages."""
        console = "\n".join(self.console_text().splitlines()[-lines:])
        try:
            qlog = self.qemu_log.read_text(errors="replace").strip()
        except FileNotFoundError:
            qlog = ""
        return f"--- console ({self.console_log})\n{console}\n--- qemu\n{qlog}"

    @staticmethod
    def guest_path(host_path: str | os.PathLike[str]) -> str:
        """Where a host path appears inside the chroot (host /tmp is relocated)."""
        p = Path(host_path).resolve()
        if p == Path("/tmp") or Path("/tmp") in p.parents:
            return agent.HOST_TMP_IN_GUEST + str(p)[len("/tmp") :]
        return str(p)

    # --- commands -------------------------------------------------------

    def run(
        self,
        cmd: str,
        *,
        chroot: bool = True,
        timeout: float = 60,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        check: bool = False,
    ) -> Result:
        """Run shell *cmd* in the guest; return its status, stdout and stderr.

        ``chroot=True`` runs ``/bin/sh`` of the host root (dash, host tools);
        ``chroot=False`` runs busybox sh in the initramfs.  A command still
        running after *timeout* seconds is killed (``Result.timed_out``).
        """
        if not self.alive:
            raise GuestError(f"guest is not running\n{self.diagnostics()}")
        res = self._request(agent.build_script(cmd, env=env, cwd=cwd), chroot=chroot, timeout=timeout)
        return res.check() if check else res

    def write_file(self, path: str, data: bytes | str, *, chroot: bool = True, mode: int = 0o644) -> None:
        """Create a small file in the guest (its /tmp or /run; the host root is read-only)."""
        raw = data.encode() if isinstance(data, str) else data
        b64 = base64.b64encode(raw).decode()
        q = shlex.quote(path)
        self.run(f"echo {b64} | base64 -d > {q} && chmod {mode:o} {q}", chroot=chroot, check=True)

    def _request(
        self,
        script: str,
        *,
        chroot: bool,
        timeout: float,
        connect_timeout: float = 10,
        reply_timeout: float | None = None,
    ) -> Result:
        t0 = time.monotonic()
        request = agent.encode_request(script, chroot=chroot, timeout_s=int(timeout + 0.999))
        address = ("127.0.0.1", self._ports[agent.AGENT_PORT])
        with socket.create_connection(address, timeout=connect_timeout) as s:
            s.settimeout(reply_timeout if reply_timeout is not None else timeout + REPLY_MARGIN_S)
            s.sendall(request)
            chunks: list[bytes] = []
            size = 0
            while chunk := s.recv(65536):
                chunks.append(chunk)
                size += len(chunk)
                if size > agent.MAX_RESPONSE_BYTES:
                    raise AgentError(f"agent reply exceeds {agent.MAX_RESPONSE_BYTES} bytes")
        elapsed = time.monotonic() - t0
        rc, out, err = agent.decode_response(b"".join(chunks))
        timed_out = rc == agent.KILLED_RC and elapsed >= timeout
        return Result(rc, out.decode(errors="replace"), err.decode(errors="replace"), elapsed, timed_out)
