#!/usr/bin/env python3
"""The NBD bridge against nbdkit's memory plugin, with fio's nbd engine.

Two NBD servers on Unix sockets for the whole run:

* a userspace session (``nvmecontrol connect --backend nbd``) on an nvmfd
  memory namespace on 127.0.0.1: fio → NBD → session → NVMe/TCP → nvmfd;
* the reference: ``nbdkit memory`` of the same size (Debian package nbdkit).

Every job runs against each server in turn (the order alternating per
round) for ``--rounds`` rounds; the ratio bridge/nbdkit is taken per round
and the median, min and max are reported (shared/reference/performance-
limits.md §4: only same-run ratios mean anything on this noisy machine).

    .venv/bin/python bench/bench_bridge.py [--rounds 5] [--seconds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUBNQN = "nqn.2014-08.org.example:bench-bridge"
SIZE = 1 << 30
# (name, fio --rw, block size, iodepth)
JOBS = [
    ("4K randread QD1", "randread", "4k", 1),
    ("4K randread QD32", "randread", "4k", 32),
    ("128K randread QD32", "randread", "128k", 32),
    ("1M seq read QD8", "read", "1m", 8),
    ("4K randwrite QD32", "randwrite", "4k", 32),
]


def need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise SystemExit(f"bench_bridge: {tool} not found (Debian package {package})")
    return path


def fio(uri: str, rw: str, bs: str, qd: int, seconds: float) -> float:
    """One fio job; returns operations per second."""
    out = subprocess.run(
        [need("fio", "fio"), "--name=bench", "--ioengine=nbd", f"--uri={uri}", f"--rw={rw}",
         f"--bs={bs}", f"--iodepth={qd}", f"--runtime={seconds}", "--time_based",
         f"--size={SIZE}", "--output-format=json", "--randrepeat=0", "--norandommap"],
        capture_output=True, text=True, check=True).stdout
    job = json.loads(out[out.index("{"):])["jobs"][0]
    side = job["write"] if "write" in rw else job["read"]
    return side["iops"]


def wait_for(path: Path, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 30
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"bench_bridge: {what} did not start")
        time.sleep(0.05)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--queues", type=int, default=1, help="I/O queues of the session (-i)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-bridge-"))
    env = dict(os.environ, PYTHONPATH=str(REPO), NVMECONTROL_RUNTIME_DIR=str(tmp / "run"))
    py = sys.executable
    nvmfd = subprocess.Popen(
        [py, "-m", "nvmecontrol.target.main", "-F", "-a", "127.0.0.1", "-p", "0",
         "--port-file", str(tmp / "nvmfd.port"), "-S", str(tmp / "nvmfd.sock"), "-n", SUBNQN,
         f"mem:{SIZE}"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    nbdkit_sock = tmp / "nbdkit.sock"
    nbdkit = subprocess.Popen([need("nbdkit", "nbdkit"), "-f", "-U", str(nbdkit_sock), "memory",
                               str(SIZE)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    session = None
    try:
        wait_for(tmp / "nvmfd.port", nvmfd, "nvmfd")
        wait_for(nbdkit_sock, nbdkit, "nbdkit")
        port = (tmp / "nvmfd.port").read_text().split()[0]
        connect = subprocess.run(
            [py, "-m", "nvmecontrol", "connect", "--backend", "nbd", "--no-attach",
             "-i", str(args.queues), "-o", "json", f"127.0.0.1:{port}", SUBNQN],
            env=env, capture_output=True, text=True)
        if connect.returncode:
            raise SystemExit(f"bench_bridge: connect failed: {connect.stderr.strip()}")
        session = json.loads(connect.stdout)["controllers"][0]
        servers = {"bridge": session["namespaces"][0]["uri"],
                   "nbdkit": f"nbd+unix:///?socket={nbdkit_sock}"}
        # Fill both disks so reads move real data (nbdkit's sparse memory
        # would otherwise answer reads of zeros for free).
        for uri in servers.values():
            subprocess.run([need("fio", "fio"), "--name=fill", "--ioengine=nbd", f"--uri={uri}",
                            "--rw=write", "--bs=1m", "--iodepth=8", f"--size={SIZE}",
                            "--output-format=json"], capture_output=True, check=True)
        results = {name: {"bridge": [], "nbdkit": [], "ratio": []} for name, *_ in JOBS}
        for rnd in range(args.rounds):
            for name, rw, bs, qd in JOBS:
                order = ("bridge", "nbdkit") if rnd % 2 == 0 else ("nbdkit", "bridge")
                got = {which: fio(servers[which], rw, bs, qd, args.seconds) for which in order}
                r = results[name]
                r["bridge"].append(got["bridge"])
                r["nbdkit"].append(got["nbdkit"])
                r["ratio"].append(got["bridge"] / got["nbdkit"])
    finally:
        if session is not None:
            subprocess.run([py, "-m", "nvmecontrol", "disconnect", session["name"]], env=env,
                           capture_output=True)
        for p in (nvmfd, nbdkit):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    summary = []
    for name, rw, bs, qd in JOBS:
        r = results[name]
        summary.append({"job": name, "rw": rw, "bs": bs, "iodepth": qd,
                        "bridge_iops_median": statistics.median(r["bridge"]),
                        "nbdkit_iops_median": statistics.median(r["nbdkit"]),
                        "ratio_median": statistics.median(r["ratio"]),
                        "ratio_min": min(r["ratio"]), "ratio_max": max(r["ratio"]),
                        "ratios": r["ratio"]})
    if args.json:
        print(json.dumps({"rounds": args.rounds, "seconds": args.seconds,
                          "queues": args.queues, "results": summary}, indent=2))
        return 0
    print(f"NBD bridge (session -> nvmfd) vs nbdkit memory, fio nbd engine, {args.rounds} rounds "
          f"x {args.seconds:g} s, {args.queues} I/O queue(s); ratio per round bridge/nbdkit")
    print(f"{'job':<20} {'bridge IOPS':>12} {'nbdkit IOPS':>12} {'ratio med':>9} {'min':>6} {'max':>6}")
    for s in summary:
        print(f"{s['job']:<20} {s['bridge_iops_median']:>12,.0f} {s['nbdkit_iops_median']:>12,.0f} "
              f"{s['ratio_median']:>9.2f} {s['ratio_min']:>6.2f} {s['ratio_max']:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
