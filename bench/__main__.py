"""The benchmark suite in one command: ``bench/run`` or ``python -m bench``.

    bench/run                 # full: 5 interleaved rounds (about 8 minutes)
    bench/run --quick         # 1 round, 0.3 s per run, fewer sweep points (about 30 s)
    bench/run --out PATH      # JSON there (default bench/results/latest.json),
                              # plots beside it (PATH stem + -iops-qd.png, -mbps-bs.png)

Exit status: 0 when the run completed (targets met or not; --strict: 1 when
one is missed), 1 on an error, 130 on Ctrl-C.  See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench import report, tools
from bench.servers import REPO
from bench.suite import Suite

DEFAULT_OUT = REPO / "bench" / "results" / "latest.json"


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


def _version(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.split("\n")[0]
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _git_head() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _interrupt(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="bench", description="nvmecontrol benchmark suite: ratios against references "
        "measured in the same interleaved rounds (bench/README.md)")
    ap.add_argument("--quick", action="store_true",
                    help="1 round, 0.3 s per run, 256 MiB disks, fewer sweep points")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 5; --quick 1)")
    ap.add_argument("--seconds", type=float,
                    help="seconds per fio run (default 2; --quick 0.3)")
    ap.add_argument("--nvmfd-seconds", type=float,
                    help="seconds per nvmfd / bare-loop run (default 1; --quick 0.3)")
    ap.add_argument("--size", type=_size,
                    help="size of the nvmfd and nbdkit disks (default 1G; --quick 256M)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help=f"JSON result (default {DEFAULT_OUT.relative_to(REPO)}); the plots "
                    "go beside it")
    ap.add_argument("--no-plot", action="store_true", help="skip the PNG plots")
    ap.add_argument("--no-install", action="store_true",
                    help="fail instead of apt-get installing missing fio/nbdkit")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("-q", "--quiet", action="store_true", help="no line per run on stderr")
    args = ap.parse_args(argv)
    q = args.quick
    args.rounds = args.rounds if args.rounds is not None else (1 if q else 5)
    args.seconds = args.seconds if args.seconds is not None else (0.3 if q else 2.0)
    args.nvmfd_seconds = args.nvmfd_seconds if args.nvmfd_seconds is not None else \
        (0.3 if q else 1.0)
    args.size = args.size if args.size is not None else ((256 << 20) if q else (1 << 30))
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    if args.seconds <= 0 or args.nvmfd_seconds <= 0:
        ap.error("--seconds and --nvmfd-seconds must be positive")
    if args.size < (64 << 20):
        ap.error("--size must be at least 64M")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    started = time.monotonic()
    try:
        tools.ensure(install=not args.no_install)
        suite = Suite(rounds=args.rounds, fio_seconds=args.seconds,
                      nvmfd_seconds=args.nvmfd_seconds, size=args.size, quick=args.quick,
                      verbose=not args.quiet)
        data = suite.run()
    except KeyboardInterrupt:
        print("bench: interrupted; everything started was stopped", file=sys.stderr)
        return 130
    except Exception as e:
        if os.environ.get("BENCH_DEBUG"):
            raise
        print(f"bench: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    data = {
        "mode": "quick" if args.quick else "full",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git": _git_head(),
        "rounds": args.rounds,
        "fio_seconds": args.seconds,
        "nvmfd_seconds": args.nvmfd_seconds,
        "size": args.size,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "kernel": platform.release(), "fio": _version(["fio", "--version"]),
                    "nbdkit": _version(["nbdkit", "--version"])},
        **data,
    }
    out = args.out
    plots = [] if args.no_plot else report.plots(data, out.with_suffix(""))
    data["plots"] = [os.path.relpath(p, out.parent) for p in plots]
    data["duration_s"] = round(time.monotonic() - started, 1)
    report.write_json(data, out)
    print(report.table(data))
    cpu = report.cpu_table(data)
    if cpu:
        print(cpu)
    print(f"JSON: {out}" + "".join(f"\nplot: {p}" for p in plots))
    print(f"took {data['duration_s']:.0f} s")
    if args.strict and any(m["met"] is False for m in data["measures"].values()):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
