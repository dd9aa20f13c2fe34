"""Pieces the fault scenarios share: a verified writer that keeps writing
until told to stop, the data check every scenario ends with, and nvmfd as a
process that can be SIGKILLed and started again on the same port and file.

The writer goes over the area in passes; pass ``g`` writes
``block_pattern(seed, g, i)`` into block ``i``, in requests of a seeded mix
of sizes (one block up to 32, so writes go in-capsule and by R2T/H2CData),
``depth`` requests in flight.  It records, per block, the generation of the
last write acknowledged without error and the generation of any write
acknowledged with an error.  A request in pass g+1 covering block i is sent
only after pass g's request for i was answered (the area is larger than the
in-flight window), so the last acknowledged generation is what the block
must hold.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from nvmecontrol.nbd import protocol as N
from nvmecontrol.transport.address import Address

from ..backends.sessionkit import NbdClient, NbdError, wait_for

REPO = Path(__file__).resolve().parents[2]
BLOCK = 4096
SPANS = (1, 1, 2, 4, 16, 32)  # request sizes in blocks; 16 and 32 exceed in-capsule data


def block_pattern(seed: int, gen: int, index: int) -> bytes:
    """4 KiB that name their seed, generation and block (a torn or misplaced
    block cannot match another one), the rest a hash stream."""
    head = f"s{seed} g{gen} b{index} ".encode()
    body = hashlib.shake_128(head).digest(BLOCK - len(head))
    return head + body


class VerifiedWriter(threading.Thread):
    def __init__(self, nbd_path: str, blocks: int, *, seed: int = 1, depth: int = 8,
                 export: str = "ns1", timeout: float = 30.0):
        super().__init__(daemon=True, name="verified-writer")
        assert blocks > depth * max(SPANS), "passes must not overlap in flight"
        self.path, self.export, self.timeout = nbd_path, export, timeout
        self.longest_wait_s = 0.0  # the longest time without any answer
        self.blocks, self.seed, self.depth = blocks, seed, depth
        self.rng = random.Random(seed)
        self.acked: dict[int, int] = {}  # block -> generation acknowledged with success
        self.failed: dict[int, int] = {}  # block -> generation acknowledged with an error
        self.errors: dict[int, int] = {}  # NBD errno -> count
        self.requests = 0  # acknowledged, any status
        self.bytes_acked = 0
        self.passes = 0
        self.closed_by_server = False
        self.unanswered = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        try:
            self._run(NbdClient(self.path, self.export, timeout=self.timeout))
        except BaseException as e:  # reported by finish()
            self.error = e

    def _requests(self):
        """(generation, first block, count) forever, pass after pass."""
        gen = 0
        while True:
            gen += 1
            i = 0
            while i < self.blocks:
                n = min(self.rng.choice(SPANS), self.blocks - i)
                yield gen, i, n
                i += n
            self.passes = gen

    def _run(self, c: NbdClient) -> None:
        inflight: dict[int, tuple[int, int, int]] = {}
        source = self._requests()
        try:
            while True:
                try:
                    while not self._halt.is_set() and len(inflight) < self.depth:
                        gen, first, n = next(source)
                        data = b"".join(block_pattern(self.seed, gen, first + k)
                                        for k in range(n))
                        cookie = c.send(N.CMD_WRITE, first * BLOCK, data=data)
                        inflight[cookie] = (gen, first, n)
                    if not inflight:
                        break
                    waited = time.monotonic()
                    cookie, error, _ = c.reply()
                    self.longest_wait_s = max(self.longest_wait_s, time.monotonic() - waited)
                except (NbdError, OSError):
                    # The session ended (ctrl-loss-tmo): what was in flight has no answer.
                    self.closed_by_server = True
                    break
                gen, first, n = inflight.pop(cookie)
                self.requests += 1
                for b in range(first, first + n):
                    if error:
                        self.failed[b] = gen
                    else:
                        self.acked[b] = gen
                        self.failed.pop(b, None)
                if error:
                    self.errors[error] = self.errors.get(error, 0) + 1
                else:
                    self.bytes_acked += n * BLOCK
        finally:
            # Sent, never answered: the block may hold it or what was there before.
            self.unanswered = len(inflight)
            for gen, first, n in inflight.values():
                for b in range(first, first + n):
                    self.failed[b] = gen
            c.close()

    def finish(self, timeout: float = 120.0) -> "VerifiedWriter":
        self.stop()
        self.join(timeout)
        assert not self.is_alive(), "the writer did not finish"
        if self.error is not None:
            raise self.error
        return self

    def mismatches(self, image: bytes) -> list[str]:
        """Blocks of ``image`` that do not hold what the writer's answers say
        they must: the last acknowledged generation (or, for a block whose
        last write failed, that generation or the one acknowledged before)."""
        bad = []
        for b in range(self.blocks):
            got = image[b * BLOCK:(b + 1) * BLOCK]
            allowed = []
            if b in self.acked:
                allowed.append(block_pattern(self.seed, self.acked[b], b))
            else:
                allowed.append(bytes(BLOCK))
            if b in self.failed:
                allowed.append(block_pattern(self.seed, self.failed[b], b))
            if got not in allowed:
                bad.append(f"block {b}: holds {got[:24]!r}, acknowledged "
                           f"g{self.acked.get(b)} failed g{self.failed.get(b)}")
        return bad


# --- nvmfd as a process ----------------------------------------------------------------

class NvmfdProcess:
    """``python -m nvmecontrol.target.main -F`` on 127.0.0.1 serving one file;
    ``kill()`` SIGKILLs it, ``start()`` brings it back on the same port."""

    def __init__(self, workdir: Path, image: Path, subnqn: str, *extra: str):
        self.workdir, self.image, self.subnqn, self.extra = workdir, image, subnqn, extra
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.socket_path = str(workdir / "nvmfd.sock")

    def start(self) -> "NvmfdProcess":
        port_file = self.workdir / "nvmfd.port"
        port_file.unlink(missing_ok=True)
        log = open(self.workdir / "nvmfd.log", "ab")
        cmd = [sys.executable, "-m", "nvmecontrol.target.main", "-F", "-a", "127.0.0.1",
               "-p", str(self.port), "--port-file", str(port_file), "-S", self.socket_path,
               "-n", self.subnqn, *self.extra, str(self.image)]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     cwd=str(REPO))
        log.close()

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError(f"nvmfd exited {self.proc.returncode}:\n{self.log()}")
            return port_file.exists() and port_file.read_text().strip()

        self.port = int(wait_for(listening, "nvmfd to listen", timeout=30).split()[0])
        wait_for(lambda: os.path.exists(self.socket_path), "nvmfd's control socket")
        self.starts += 1
        return self

    @property
    def address(self) -> Address:
        return Address("127.0.0.1", self.port, f"127.0.0.1:{self.port}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        try:
            return (self.workdir / "nvmfd.log").read_text(errors="replace")
        except OSError:
            return ""

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/task"))

