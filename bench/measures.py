"""What is measured: the runs of a round, the ratios built from them, their targets.

A *run* is one measurement of one side, named ``side:job``:

===========  ==============================================================
side         what answers
===========  ==============================================================
bridge       a session (``connect --backend nbd``, 1 I/O queue) on nvmfd
digests      the same with header and data digests (``-g -G``)
bridge2q     the same with two I/O queues (``-i 2``)
nbdkit       ``nbdkit memory`` on a Unix socket (the NBD reference)
tcp          raw Python loopback TCP bandwidth (``bench.refloop``)
nvmfd        nvmfd driven by our host library (``bench.nvmfd_client``)
loop         the bare batched request/response loop (``bench.refloop``)
===========  ==============================================================

Every NBD side is measured with the same client: fio's nbd engine.
A *measure* is a ratio numerator/denominator of two runs of the same round
(median over rounds of the per-round ratios), or an absolute value (RSS).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.fio import Job

MIB = 1 << 20

# fio jobs, by name.
FIO_JOBS = {j.name: j for j in [
    Job("4k_randread_qd1", "randread", "4k", 1),
    Job("4k_randread_qd4", "randread", "4k", 4),
    Job("4k_randread_qd16", "randread", "4k", 16),
    Job("4k_randread_qd32", "randread", "4k", 32),
    Job("4k_randwrite_qd32", "randwrite", "4k", 32),
    Job("16k_randread_qd32", "randread", "16k", 32),
    Job("64k_randread_qd32", "randread", "64k", 32),
    Job("128k_randread_qd32", "randread", "128k", 32),
    Job("256k_randread_qd32", "randread", "256k", 32),
    Job("1m_randread_qd32", "randread", "1m", 32),
    Job("1m_seqread_qd8", "read", "1m", 8),
    # Two NBD connections (fio jobs) of QD16: 32 in flight, as the 1-queue QD32.
    Job("4k_randread_qd16x2", "randread", "4k", 16, numjobs=2),
]}

# nvmfd / bare loop tests: name -> (read bytes (0: Flush), queue depth,
# response bytes of the bare loop: CapsuleResp 24, C2HData header 24 + data + 8 digest room)
NVMF_TESTS = {
    "flush_qd1": (0, 1, 24),
    "4k_read_qd1": (4096, 1, 4128),
    "4k_read_qd32": (4096, 32, 4128),
    "1m_read_qd1": (MIB, 1, MIB + 24),
    "1m_read_qd4": (MIB, 4, MIB + 24),
}

# Session load for the RSS measure: 4 NBD connections (one per I/O queue),
# reads and writes of 128 KiB, 32 in flight each.
RSS_LOAD = Job("rss_load", "randrw", "128k", 32, numjobs=4)
RSS_IDLE_ASSOCIATIONS = 16
# TCP connections that never send an ICReq, held against the same nvmfd.
RSS_IDLE_TCP = 1000


@dataclass(frozen=True)
class Measure:
    key: str
    what: str
    why: str  # why that reference
    num: str  # run id, or "rss:..." for absolute values
    den: str | None = None
    metric: str = "iops"  # iops | mbps | ops | mib
    op: str = ">="  # how the target compares
    target: float | None = None
    unit: str = "x"

    def met(self, value: float) -> bool | None:
        if self.target is None:
            return None
        return value >= self.target if self.op == ">=" else value <= self.target


MEASURES = [
    Measure("bridge_4k_randread_qd32", "bridge 4 KiB randread QD32 / nbdkit memory",
            "nbdkit memory is the best NBD server here; same client (fio nbd), same socket kind",
            "bridge:4k_randread_qd32", "nbdkit:4k_randread_qd32", target=0.90),
    Measure("bridge_4k_randwrite_qd32", "bridge 4 KiB randwrite QD32 / nbdkit memory",
            "as above, the write path (H2CData or in-capsule data)",
            "bridge:4k_randwrite_qd32", "nbdkit:4k_randwrite_qd32", target=0.85),
    Measure("bridge_4k_randread_qd1", "bridge 4 KiB randread QD1 / nbdkit memory",
            "latency: the bridge chain has one more process hop each way than nbdkit",
            "bridge:4k_randread_qd1", "nbdkit:4k_randread_qd1", target=0.45),
    Measure("bridge_128k_randread_qd32", "bridge 128 KiB randread QD32 / nbdkit memory",
            "mid-size transfers: copies and buffer handling",
            "bridge:128k_randread_qd32", "nbdkit:128k_randread_qd32", "mbps", target=0.80),
    Measure("bridge_1m_seqread", "bridge 1 MiB seq read QD8 / nbdkit memory",
            "bandwidth: nbdkit reaches the loopback limit here",
            "bridge:1m_seqread_qd8", "nbdkit:1m_seqread_qd8", "mbps", target=0.80),
    Measure("bridge_1m_seqread_vs_tcp",
            "bridge 1 MiB seq read QD8 / raw Python loopback TCP (sendall/recv_into 128 KiB)",
            "the physical ceiling of one Python TCP stream on this machine",
            "bridge:1m_seqread_qd8", "tcp:bw", "mbps", target=0.70),
    Measure("nvmfd_4k_read_qd32", "nvmfd 4 KiB read QD32 / bare batched socket loop",
            "the loop is the same request/response shape with no NVMe logic at all",
            "nvmfd:4k_read_qd32", "loop:4k_read_qd32", "ops", target=0.50),
    Measure("nvmfd_4k_read_qd1", "nvmfd 4 KiB read QD1 / bare loop",
            "round-trip latency of the target + host library against a bare round trip",
            "nvmfd:4k_read_qd1", "loop:4k_read_qd1", "ops", target=0.80),
    Measure("bridge_digests_4k_qd32", "bridge with -g -G / without, 4 KiB randread QD32",
            "the cost of CRC32C header and data digests on small I/O",
            "digests:4k_randread_qd32", "bridge:4k_randread_qd32", target=0.90),
    Measure("bridge_digests_1m", "bridge with -g -G / without, 1 MiB seq read QD8",
            "the cost of data digests per byte",
            "digests:1m_seqread_qd8", "bridge:1m_seqread_qd8", "mbps", target=0.85),
    Measure("bridge_4k_randread_qd32_2q",
            "bridge -i 2, 2 NBD connections x QD16 / nbdkit (same fio job), 4 KiB randread",
            "whether a second I/O queue helps or hurts on 2 vCPUs (report only)",
            "bridge2q:4k_randread_qd16x2", "nbdkit:4k_randread_qd16x2"),
    Measure("session_rss_mib",
            "session RSS (VmRSS peak), -i 4 -Q 128, 4 NBD connections 128K randrw QD32 each",
            "a session must stay small however deep its queues",
            "rss:session", metric="mib", op="<=", target=64, unit="MiB"),
    Measure("nvmfd_rss_16_idle_mib",
            f"nvmfd RSS with {RSS_IDLE_ASSOCIATIONS} idle associations (1 I/O queue each)",
            "per-association memory of the target (16 MiB namespace, untouched)",
            "rss:nvmfd_idle", metric="mib", op="<=", target=96, unit="MiB"),
    Measure("nvmfd_rss_idle_tcp_mib",
            f"nvmfd RSS with {RSS_IDLE_TCP} idle TCP connections (no ICReq) on top",
            "connections that never speak must cost a descriptor, not a thread and buffers",
            "rss:nvmfd_idle_tcp", metric="mib", op="<=", target=256, unit="MiB"),
    # Continuity with the former bench_target.py (report only).
    Measure("nvmfd_flush_qd1", "nvmfd Flush QD1 / bare loop (24-byte responses)",
            "command round trip with no data", "nvmfd:flush_qd1", "loop:flush_qd1", "ops"),
    Measure("nvmfd_1m_read_qd1", "nvmfd 1 MiB read QD1 / bare loop",
            "large C2HData transfers, one at a time", "nvmfd:1m_read_qd1", "loop:1m_read_qd1",
            "ops"),
    Measure("nvmfd_1m_read_qd4", "nvmfd 1 MiB read QD4 / bare loop",
            "large C2HData transfers, pipelined", "nvmfd:1m_read_qd4", "loop:1m_read_qd4",
            "ops"),
    # The public API (nvmecontrol.api, bench/api_client.py): report only.
    Measure("api_4k_read_qd32", "API submit_read QD32 / bare loop, 4 KiB",
            "what a program gets from nvmecontrol.api, against no NVMe logic at all",
            "api:4k_read_qd32", "loop:4k_read_qd32", "ops"),
    Measure("api_4k_read_qd32_vs_client", "API submit_read QD32 / host library records, 4 KiB",
            "the API's convenience (futures, receiver thread) against the bare host library",
            "api:4k_read_qd32", "nvmfd:4k_read_qd32", "ops"),
    Measure("api_4k_read_qd1", "API read QD1 / bare loop, 4 KiB",
            "one command's round trip through the API", "api:4k_read_qd1", "loop:4k_read_qd1",
            "ops"),
]

BY_KEY = {m.key: m for m in MEASURES}

# Plots: IOPS against queue depth, MB/s against block size (sides bridge, nbdkit).
QD_SWEEP = [(1, "4k_randread_qd1"), (4, "4k_randread_qd4"), (16, "4k_randread_qd16"),
            (32, "4k_randread_qd32")]
BS_SWEEP = [(4, "4k_randread_qd32"), (16, "16k_randread_qd32"), (64, "64k_randread_qd32"),
            (128, "128k_randread_qd32"), (256, "256k_randread_qd32"),
            (1024, "1m_randread_qd32")]
PLOT_SIDES = ("bridge", "nbdkit")
# Sweep points --quick leaves out (their neighbours are measured anyway).
QUICK_SKIP = {"4k_randread_qd4", "4k_randread_qd16", "16k_randread_qd32", "64k_randread_qd32",
              "256k_randread_qd32"}


def round_groups(quick: bool) -> list[list[str]]:
    """The runs of one round, in groups measured back to back (the sides of a
    ratio next to each other).  Rounds alternate the whole order."""
    groups: dict[str, list[str]] = {}

    def add(run: str) -> None:
        side, job = run.split(":", 1)
        if side == "tcp":
            job = "1m_seqread_qd8"  # beside the bridge's bandwidth run
        g = groups.setdefault(job, [])
        if run not in g:
            g.append(run)

    for m in MEASURES:
        for run in (m.num, m.den):
            if run and not run.startswith("rss:"):
                add(run)
    for _, job in QD_SWEEP + BS_SWEEP:
        if quick and job in QUICK_SKIP:
            continue
        for side in PLOT_SIDES:
            add(f"{side}:{job}")
    return list(groups.values())
