"""Scenario 2: nvmfd SIGKILLed and started again on the same file and port
while a session writes through it; then killed for good.

While nvmfd is away the session parks what the NBD client sends and retries
every reconnect-delay; once it is back the session reconnects by itself and
replays.  Every block then holds its last acknowledged write.  When nvmfd
stays away past ctrl-loss-tmo, the parked requests fail with EIO and the
session ends on its own.
"""

from __future__ import annotations

import random
import time

from nvmecontrol.nbd import protocol as N

from ..backends.sessionkit import (SUBNQN, MiB, backing_file, connect, nbd_socket, pid_running,
                                   session_guard, session_log, sessions, wait_for)
from .conftest import figures, scale
from .kit import NvmfdProcess, VerifiedWriter

assert session_guard  # autouse, imported for this module

SIZE = 4 * MiB
BLOCKS = SIZE // 4096
CTRL_LOSS_TMO_S = 5


def test_nvmfd_killed_and_restarted_during_writes(tmp_path, session_guard):
    kills = scale(10, 100)
    rng = random.Random(1502)
    disk = backing_file(tmp_path / "ns1.img", SIZE)
    nvmfd = NvmfdProcess(tmp_path, disk, SUBNQN).start()
    t0 = time.monotonic()
    try:
        info = connect(nvmfd, "-r", "1", "-l", str(CTRL_LOSS_TMO_S))
        writer = VerifiedWriter(nbd_socket(), BLOCKS, seed=1502)
        writer.start()
        for k in range(kills):
            want = writer.requests + rng.randint(20, 200)
            wait_for(lambda: writer.requests >= want or not writer.is_alive(),
                     f"writes to flow after restart {k}\n{session_log()[-3000:]}")
            assert writer.is_alive(), writer.error
            nvmfd.kill()
            time.sleep(rng.uniform(0, 0.5))
            nvmfd.start()
        acked = writer.requests
        wait_for(lambda: writer.requests >= acked + 50, "writes to flow after the last restart")
        assert writer.errors == {}, f"writes failed while nvmfd came back: {writer.errors}"
        restarts_done = time.monotonic() - t0
        # For good this time: past ctrl-loss-tmo what is parked fails with EIO.
        nvmfd.kill()
        killed = time.monotonic()
        wait_for(lambda: not writer.is_alive(), "the session to end the writer's connection",
                 timeout=CTRL_LOSS_TMO_S + 30)
        gave_up = time.monotonic() - killed
        writer.finish()
    finally:
        nvmfd.stop()
    assert writer.closed_by_server
    assert set(writer.errors) == {N.EIO}, writer.errors
    assert f"giving up after ctrl-loss-tmo ({CTRL_LOSS_TMO_S} s)" in session_log()
    wait_for(lambda: not pid_running(info["pid"]), "the session process to exit")
    wait_for(lambda: "nvmeu0" not in sessions(), "the session to leave devlist")
    assert writer.mismatches(disk.read_bytes()) == []
    figures("2 nvmfd SIGKILLed and restarted",
            kills=kills + 1, restarts=nvmfd.starts - 1,
            losses_logged=session_log().count("connection lost"),
            writes_acked=writer.requests - sum(writer.errors.values()),
            eio_after_ctrl_loss_tmo=writer.errors[N.EIO],
            blocks_checked=BLOCKS, mismatches=0,
            restart_phase_s=f"{restarts_done:.1f}",
            session_ended_after_s=f"{gave_up:.1f} (ctrl-loss-tmo {CTRL_LOSS_TMO_S})")
