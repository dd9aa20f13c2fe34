"""Scenario 4: digest corruption in both directions, header and data digests
negotiated (connect -g -G).

The proxy flips a byte in the data of C2HData (reads), of in-capsule write
data and of H2CData (writes after R2T), in a data digest itself, and in the
header digest of CapsuleCmd and CapsuleResp.  A data digest error must end
in the command completed with Transient Transport Error and retried by the
session; a header digest error in a TermReq and a new association.  Either
way corrupt data is never returned to the NBD client nor written to the
file: a reader checks every block it gets while the writes go on, and at the
end every block holds its last acknowledged write.
"""

from __future__ import annotations

import threading
import time

from ..backends.sessionkit import (MiB, NbdClient, backing_file, cli_ok, connect, nbd_socket,
                                   read_all, session, session_guard, session_log, start_target,
                                   wait_for)
from .conftest import figures, scale
from .kit import BLOCK, VerifiedWriter, block_pattern
from .proxy import C2H, H2C, Fault

assert session_guard  # autouse, imported for this module

SIZE = 2 * MiB
BLOCKS = SIZE // BLOCK
SEED = 1504


def valid_block(data: bytes, index: int) -> bool:
    """Zeros (never written) or the writer's block ``index`` of some generation."""
    if data == bytes(BLOCK):
        return True
    head = f"s{SEED} g".encode()
    if not data.startswith(head):
        return False
    gen = data[len(head):].split(b" ", 1)[0]
    return gen.isdigit() and data == block_pattern(SEED, int(gen), index)


class CheckingReader(threading.Thread):
    """Reads 64 KiB pieces in a loop and checks every block it is given."""

    def __init__(self):
        super().__init__(daemon=True, name="checking-reader")
        self.client = NbdClient(nbd_socket())
        self.reads = self.bad = self.errors = 0
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self):
        span = 16 * BLOCK
        try:
            off = 0
            while not self.halt.is_set():
                try:
                    data = self.client.read(off, span)
                except Exception:
                    self.errors += 1
                    raise
                self.reads += 1
                first = off // BLOCK
                self.bad += sum(not valid_block(data[k * BLOCK:(k + 1) * BLOCK], first + k)
                                for k in range(16))
                off = (off + span) % SIZE
        except BaseException as e:
            self.error = e
        finally:
            self.client.close()


def test_digest_corruption_both_ways(nvmfd_factory, proxy_factory, tmp_path):
    n = scale(40, 400)
    disk = backing_file(tmp_path / "ns1.img", SIZE)
    target = start_target(nvmfd_factory, [disk])
    # Seeded, independent per PDU and rare enough that all four tries of one
    # command are hit (the session retries a Transient Transport Error 3
    # times) with a chance of about (3 %)^4 = 1e-6 per command, 0.03 in a
    # long run: an EIO here is a finding, not bad luck.  (At 9 % per PDU the
    # long run exhausted a read's retries in 4 of 7 runs.)
    faults = [
        Fault("corrupt", C2H, pdu="C2HData", queue="io", spot="data", probability=0.02,
              limit=n),
        Fault("corrupt", C2H, pdu="C2HData", queue="io", spot="ddgst", probability=0.01,
              limit=n // 2),
        Fault("corrupt", H2C, pdu="CapsuleCmd", queue="io", spot="data", probability=0.02,
              limit=n),
        Fault("corrupt", H2C, pdu="H2CData", queue="io", spot="data", probability=0.02,
              limit=n),
        Fault("corrupt", H2C, pdu="H2CData", queue="io", spot="ddgst", probability=0.01,
              limit=n // 2),
        # Header digests: fatal to the connection, so once per few hundred PDUs.
        Fault("corrupt", C2H, pdu="CapsuleResp", queue="io", spot="hdgst", nth=(150, 400),
              limit=n // 8),
        Fault("corrupt", H2C, pdu="CapsuleCmd", queue="io", spot="hdgst", nth=(150, 400),
              limit=n // 8),
    ]
    proxy = proxy_factory(target.port, faults, seed=SEED)
    t0 = time.monotonic()
    info = connect(target, "-g", "-G", "-r", "1", "-l", "60", address=f"127.0.0.1:{proxy.port}")
    assert info.get("hdgst", True) and info.get("ddgst", True), info
    writer = VerifiedWriter(nbd_socket(), BLOCKS, seed=SEED)
    writer.start()
    reader = CheckingReader()
    reader.start()
    wanted = sum(f.limit for f in faults)
    wait_for(lambda: proxy.fired() >= wanted or not (writer.is_alive() and reader.is_alive()),
             f"{wanted} corruptions", timeout=scale(300, 3000))
    reader.halt.set()
    reader.join(60)
    fired = {f.describe(): f.fired for f in proxy.faults}
    proxy.clear()
    writer.finish()
    assert reader.error is None, f"{reader.error}\n" + "\n".join(
        line for line in session_log().splitlines()
        if "connection lost" not in line and "replaying" not in line
        and "established" not in line)[-3000:]
    assert reader.bad == 0, f"{reader.bad} corrupt blocks delivered to the NBD client"
    assert writer.errors == {}, f"writes acknowledged with an error: {writer.errors}"
    assert writer.mismatches(read_all(nbd_socket(), SIZE)) == []
    assert writer.mismatches(disk.read_bytes()) == []
    figures("4 digest corruption", injected=proxy.fired(), **{
        "c2h_data": fired[faults[0].describe()], "c2h_ddgst": fired[faults[1].describe()],
        "h2c_capsule_data": fired[faults[2].describe()],
        "h2c_data": fired[faults[3].describe()], "h2c_ddgst": fired[faults[4].describe()],
        "hdgst_resp": fired[faults[5].describe()], "hdgst_cmd": fired[faults[6].describe()]},
        associations=proxy.connections // 2, losses_logged=session_log().count("connection lost"),
        reads_checked=reader.reads, writes_acked=writer.requests, corrupt_delivered=0,
        mismatches=0, seconds=f"{time.monotonic() - t0:.1f}")
    print(proxy.report())
    assert proxy.fired() >= wanted
    assert session().state == "live"
    cli_ok("disconnect", "nvmeu0")
