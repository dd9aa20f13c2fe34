"""Where the data path's CPU goes, layer by layer: ``python -m bench.layers``.

Runs nvmfd and a userspace session as the suite does (``bench.servers``),
both with every thread under ``cProfile`` (``bench/profile_site``), drives
the session with fio (4 KiB random reads, then writes, QD32 by default),
and attributes the Python time of each data-path thread to the layers of
issue 10: NBD decode, the bridge's request-to-command step, SQE encode,
PDU header check and decode, completion matching, the bridge's
bookkeeping, NBD reply encode, nvmfd's dispatch with its namespace copy
and C2HData/CapsuleResp encode.  Time in C functions (``struct``,
``list.append``...) counts for the Python function that called them;
time blocked in ``recv_into``/``sendmsg`` is not Python time and is shown
apart (it is wall time: it includes waiting and being preempted).

The figures are µs of profiled wall time per I/O: cProfile slows Python
code by a roughly even factor (2-3x here), so read the shares, and compare
runs of two trees with each other, not with the unprofiled suite.

    python -m bench.layers [--seconds S] [--qd N] [--size MIB] [--json PATH]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import fio
from bench.servers import REPO, Servers

SITE = REPO / "bench" / "profile_site"
SUBNQN = "nqn.2014-08.org.nvmexpress:bench-layers"
SIZE = 256 << 20
# Threads of the data path, by the name prefix their code gives them.
THREADS = {"nbd-conn": "session: NBD intake", "nvme-ioq": "session: I/O queue receiver",
           "nvmfd-conn": "nvmfd: connection"}
# C functions that block: system-call time, not Python time.
BLOCKING = ("recv_into", "sendmsg", "recv'", "acquire", "wait", "sleep", "select", "poll")
# (file suffix, function or "*") -> layer; the first match wins.
LAYERS = [
    ("nbd/protocol.py", "decode", "NBD request decode"),
    ("backends/userspace/nbd_server.py", "_transmission", "request -> NVMe command (bridge)"),
    ("backends/userspace/request.py", "*", "request -> NVMe command (bridge)"),
    ("backends/userspace/nbd_server.py", "_submit", "request -> NVMe command (bridge)"),
    ("backends/userspace/router.py", "*", "request -> NVMe command (bridge)"),
    ("backends/userspace/bridge.py", "submit", "SQE encode and queueing"),
    ("wire/qpair.py", "queue_records", "SQE encode and queueing"),
    ("wire/qpair.py", "room", "SQE encode and queueing"),
    ("wire/qpair.py", "take_outgoing", "SQE encode and queueing"),
    ("wire/pdu.py", "*", "PDU header check and decode"),
    ("wire/qpair.py", "receive", "completion matching (CID, data offsets)"),
    ("wire/qpair.py", "receive_raw", "command matching"),
    ("backends/userspace/bridge.py", "*", "bridge completion bookkeeping"),
    ("backends/userspace/nbd_server.py", "reply", "NBD reply encode and send"),
    ("backends/userspace/nbd_server.py", "_send", "NBD reply encode and send"),
    ("target/io.py", "*", "dispatch, namespace copy, C2HData/CapsuleResp encode"),
    ("target/namespace.py", "*", "dispatch, namespace copy, C2HData/CapsuleResp encode"),
    ("target/connection.py", "flush", "flush and send"),
    ("target/connection.py", "_send_lent", "flush and send"),
    ("target/connection.py", "give_back", "flush and send"),
    ("transport/tcp.py", "send", "flush and send"),
    ("transport/tcp.py", "sendmsg_all", "flush and send"),
    ("transport/tcp.py", "*", "receive loop"),
    ("recvbuf.py", "*", "receive loop"),
    ("target/connection.py", "_on_batch", "receive loop"),
    ("wire/timers.py", "*", "receive loop"),
    ("*", "*", "the rest"),
]


def _layer(filename: str, func: str) -> str:
    for suffix, name, layer in LAYERS:
        if (suffix == "*" or filename.endswith(suffix)) and name in ("*", func):
            return layer
    raise AssertionError("the last entry matches everything")


def _thread_kind(path: Path) -> str | None:
    name = path.name.split(".")[1]
    for prefix, kind in THREADS.items():
        if name.startswith(prefix):
            return kind
    return None


def attribute(paths: list[Path]) -> dict:
    """{thread kind: {"layers": {layer: seconds}, "blocked": seconds}}."""
    out: dict = {}
    for path in paths:
        kind = _thread_kind(path)
        if kind is None:
            continue
        entry = out.setdefault(kind, {"layers": collections.Counter(), "blocked": 0.0})
        for (filename, _line, func), (_cc, _nc, tottime, _ct, callers) in \
                pstats.Stats(str(path)).stats.items():
            if filename == "~":  # a C function: its time is its callers'
                if any(b in func for b in BLOCKING):
                    entry["blocked"] += tottime
                    continue
                total_calls = sum(c[1] for c in callers.values()) or 1
                for (cfile, _cl, cfunc), c in callers.items():
                    entry["layers"][_layer(cfile, cfunc)] += tottime * c[1] / total_calls
            else:
                entry["layers"][_layer(filename, func)] += tottime
    return out


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _fio(uri: str, rw: str, qd: int, seconds: float, size: int) -> int:
    p = subprocess.run(["fio", "--name=layers", "--ioengine=nbd", f"--uri={uri}", f"--rw={rw}",
                        "--bs=4k", f"--iodepth={qd}", f"--runtime={seconds}", "--time_based",
                        f"--size={size}", "--norandommap", "--randrepeat=0",
                        "--output-format=json"], capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"fio failed: {(p.stderr or p.stdout).strip()[-300:]}")
    job = json.loads(p.stdout[p.stdout.index("{"):])["jobs"][0]
    return job["read"]["total_ios"] + job["write"]["total_ios"]


def _disconnect(servers: Servers, name: str) -> None:
    subprocess.run([servers.python, "-m", "nvmecontrol", "disconnect", name],
                   env=servers.env, capture_output=True, timeout=60)


def _wait_for_profiles(profiles: Path, io_queue_connections: int) -> None:
    """Until the I/O queue's threads on both sides have left their profiles."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (
            len(list(profiles.glob("*.nvmfd-conn*"))) >= io_queue_connections
            and list(profiles.glob("*.nvme-ioq*"))):
        time.sleep(0.1)
    time.sleep(0.5)  # the admin queue's threads, which end last


def profile_job(rw: str, qd: int, seconds: float, size: int = SIZE) -> dict:
    """One nvmfd, one session, one fio job; the layer table of each data-path thread."""
    profiles = Path(tempfile.mkdtemp(prefix="nvb-prof-"))
    servers = Servers()
    try:
        servers.env["PYTHONPATH"] = f"{REPO}{os.pathsep}{SITE}"
        servers.env["NVMECONTROL_BENCH_PROFILE"] = str(profiles)
        nvmfd, port = servers.nvmfd("nvmfd", SUBNQN, size)
        sessions = servers.sessions_connect(port, SUBNQN, {"fill": [], "layers": []})
        # The namespace written once through another session (reads move real
        # data, writes take no first-touch page faults); its threads' profiles
        # are dropped before the measured job starts.
        fio.fill(sessions["fill"]["uri"], size)
        _disconnect(servers, sessions["fill"]["name"])
        _wait_for_profiles(profiles, 2)
        for stale in profiles.glob("*.prof"):
            stale.unlink()
        session = sessions["layers"]
        cpu0 = _cpu_s(session["pid"]), _cpu_s(nvmfd.pid)
        ios = _fio(session["uri"], rw, qd, seconds, size)
        cpu1 = _cpu_s(session["pid"]), _cpu_s(nvmfd.pid)
        # The receiver and nvmfd's connection thread write their profiles
        # when the association ends.
        _disconnect(servers, session["name"])
        _wait_for_profiles(profiles, 2)
        threads = attribute(sorted(profiles.glob("*.prof")))
    finally:
        servers.close()
        shutil.rmtree(profiles, ignore_errors=True)
    return {"rw": rw, "qd": qd, "ios": ios,
            "process_cpu_us_per_io": {"session": (cpu1[0] - cpu0[0]) / ios * 1e6,
                                      "nvmfd": (cpu1[1] - cpu0[1]) / ios * 1e6},
            "threads": {kind: {"layers_us_per_io": {k: v / ios * 1e6 for k, v in
                                                    sorted(t["layers"].items(),
                                                           key=lambda kv: -kv[1])},
                               "blocked_us_per_io": t["blocked"] / ios * 1e6}
                        for kind, t in threads.items()}}


def render(job: dict) -> str:
    lines = [f"4 KiB {job['rw']} QD{job['qd']}: {job['ios']} I/Os; process CPU while profiled: "
             + ", ".join(f"{k} {v:.1f} µs/IO" for k, v in job["process_cpu_us_per_io"].items())]
    for kind, t in job["threads"].items():
        total = sum(t["layers_us_per_io"].values())
        lines.append(f"  {kind}: Python {total:.2f} µs/IO (profiled), blocked in system calls "
                     f"{t['blocked_us_per_io']:.1f} µs/IO (wall)")
        for layer, us in t["layers_us_per_io"].items():
            lines.append(f"    {us:6.2f}  {us / total * 100:5.1f}%  {layer}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.layers", description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="seconds per fio job (4)")
    ap.add_argument("--qd", type=int, default=32, help="fio iodepth (32)")
    ap.add_argument("--size", type=int, default=SIZE >> 20,
                    help=f"MiB of the RAM namespace ({SIZE >> 20})")
    ap.add_argument("--json", type=Path, help="also write the figures there")
    args = ap.parse_args(argv)
    jobs = [profile_job(rw, args.qd, args.seconds, args.size << 20)
            for rw in ("randread", "randwrite")]
    for job in jobs:
        print(render(job))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(jobs, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
