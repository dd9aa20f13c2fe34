"""Scenario 1: connection resets injected during verified writes through an
NBD session.

The session reaches nvmfd through the fault proxy, which resets the I/O
queue's connection (RST both ways) at a seeded PDU of either direction of
every association, and now and then the admin queue's in the middle of the
connect sequence.  A verified writer keeps several writes in flight over the
NBD export the whole time.  Afterwards every block must hold the last write
acknowledged for it, read through the session and straight from nvmfd's
file: nothing acknowledged is lost, no block is torn.
"""

from __future__ import annotations

import time

from ..backends.sessionkit import (MiB, backing_file, cli_ok, connect, nbd_socket, read_all,
                                   session, session_guard, session_log, start_target, wait_for)
from .conftest import figures, scale
from .kit import VerifiedWriter
from .proxy import C2H, H2C, Fault

assert session_guard  # autouse, imported for this module

SIZE = 4 * MiB
BLOCKS = SIZE // 4096


def test_resets_during_verified_writes(nvmfd_factory, proxy_factory, tmp_path):
    resets = scale(100, 1000)
    disk = backing_file(tmp_path / "ns1.img", SIZE)
    target = start_target(nvmfd_factory, [disk])
    # Each I/O connection lives for 4..80 PDUs of one direction, then is reset
    # before that PDU is passed on; a few admin connections are reset while
    # the association is being built (their retry waits reconnect-delay).
    admin_resets = scale(3, 20)
    faults = [Fault("reset", C2H, queue="io", nth=(4, 80), limit=resets // 2),
              Fault("reset", H2C, queue="io", nth=(4, 80), limit=resets - resets // 2),
              Fault("reset", C2H, queue="admin", nth=(2, 12), limit=admin_resets,
                    connections=range(1, 10**9, 7))]
    proxy = proxy_factory(target.port, faults, seed=15)
    t0 = time.monotonic()
    connect(target, "-r", "1", "-l", "60", address=f"127.0.0.1:{proxy.port}")
    # The NBD client waits up to 90 s for an answer: what is asserted here is
    # the data; how long an outage lasted is a figure (longest_wait_s).
    writer = VerifiedWriter(nbd_socket(), BLOCKS, seed=1501, timeout=90)
    writer.start()
    wait_for(lambda: proxy.fired() >= resets + admin_resets or not writer.is_alive(),
             f"{resets + admin_resets} injected resets", timeout=scale(300, 3000))
    assert writer.is_alive(), f"the writer stopped: {writer.error!r}, " \
        f"closed by the session: {writer.closed_by_server}\n{session_log()[-5000:]}"
    proxy.clear()  # the last writes go through undisturbed
    time.sleep(0.5)
    writer.finish()
    elapsed = time.monotonic() - t0
    assert writer.errors == {}, f"writes acknowledged with an error: {writer.errors}"
    image = read_all(nbd_socket(), SIZE)
    assert writer.mismatches(image) == []
    assert writer.mismatches(disk.read_bytes()) == []
    log = session_log()
    figures("1 resets during verified writes",
            resets_injected=proxy.fired(), connections=proxy.connections,
            losses_logged=log.count("connection lost"), writes_acked=writer.requests,
            mib_acked=writer.bytes_acked // MiB, passes=writer.passes,
            blocks_checked=BLOCKS, mismatches=0, seconds=f"{elapsed:.1f}",
            longest_wait_s=f"{writer.longest_wait_s:.1f}")
    print(proxy.report())
    assert proxy.fired() >= resets + admin_resets
    assert session().state == "live"
    cli_ok("disconnect", "nvmeu0")
