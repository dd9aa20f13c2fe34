"""One benchmark run: start the servers, interleaved rounds, the RSS measures.

Servers for the whole run (``bench.servers``): nvmfd with one RAM namespace
(``--size``), four sessions on it (plain, ``-g -G``, ``-i 2``,
``-i 4 -Q 128``), nbdkit memory of the same size, the reference loop.  Both
NBD disks are written once so reads move real data.  Then ``rounds`` rounds
of every run of ``measures.round_groups``, the order reversed every other
round; then the two RSS measures (once).
"""

from __future__ import annotations

import os
import resource
import socket
import statistics
import sys
import time

from bench import fio, refloop, startup
from bench.measures import (FIO_JOBS, MEASURES, NVMF_TESTS, RSS_IDLE_ASSOCIATIONS,
                            RSS_IDLE_TCP, RSS_LOAD, round_groups)
from bench.servers import Servers, cpu_seconds, rss_mib

SUBNQN = "nqn.2014-08.org.example:bench"
# The runs whose CPU per I/O the result sums up (report.cpu_table), bridge
# against nbdkit.
CPU_JOBS = ("4k_randread_qd32", "4k_randwrite_qd32", "4k_randread_qd1", "128k_randread_qd32",
            "1m_seqread_qd8")
CPU_SIDES = ("bridge", "nbdkit")
SESSIONS = {"bridge": [], "digests": ["-g", "-G"], "bridge2q": ["-i", "2"],
            "rss": ["-i", "4", "-Q", "128"]}
IDLE_NS_SIZE = 16 << 20


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _mib(b: int) -> str:
    return f"{b >> 20} MiB"


class Suite:
    def __init__(self, *, rounds: int, fio_seconds: float, nvmfd_seconds: float, size: int,
                 quick: bool, verbose: bool = True):
        self.rounds = rounds
        self.fio_seconds = fio_seconds
        self.nvmfd_seconds = nvmfd_seconds
        self.size = size
        self.quick = quick
        self.verbose = verbose
        self.runs: dict[str, list[dict]] = {}
        self.extra: dict[str, dict] = {}

    # -- one run --
    def _one(self, run: str) -> dict:
        side, job = run.split(":", 1)
        if side in self.uris:
            return self._fio(side, job)
        if side == "tcp":
            return {"mbps": refloop.bw_run(self.ref_port, self.fio_seconds)}
        nbytes, qd, resp = NVMF_TESTS[job]
        if side == "nvmfd":
            ops = self.client.run(nbytes, qd, self.nvmfd_seconds)
        elif side == "api":
            ops = self.api_client.run(nbytes, qd, self.nvmfd_seconds)
        elif side == "loop":
            ops = refloop.rr_run(self.ref_port, resp, qd, self.nvmfd_seconds)
        else:
            raise ValueError(f"unknown run {run}")
        return {"ops": ops, "mbps": ops * nbytes / 1e6}

    def _fio(self, side: str, job: str) -> dict:
        """One fio run, with the CPU each server process of ``side`` spent per I/O."""
        pids = self.cpu_pids[side]
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        got = fio.run(self.uris[side], FIO_JOBS[job], self.fio_seconds, self.size)
        ios = got["ios"]
        for name, pid in pids.items():
            got[f"cpu_{name}"] = (cpu_seconds(pid) - before[name]) * 1e6 / ios if ios else 0.0
        return got

    def _rounds(self) -> None:
        groups = round_groups(self.quick)
        order = [run for g in groups for run in g]
        for r in range(self.rounds):
            t0 = time.monotonic()
            for run in (order if r % 2 == 0 else order[::-1]):
                got = self._one(run)
                self.runs.setdefault(run, []).append(got)
                if self.verbose:
                    vals = "  ".join(f"{k} {v:,.0f}" for k, v in got.items())
                    log(f"  round {r + 1}/{self.rounds}  {run:<32} {vals}")
            log(f"bench: round {r + 1}/{self.rounds} done in {time.monotonic() - t0:.1f} s")

    # -- RSS --
    def _session_rss(self, servers: Servers) -> dict:
        info = self.sessions["rss"]
        seconds = max(1.0, self.fio_seconds)
        load = servers.track("load-rss", fio.start(info["uri"], RSS_LOAD, seconds, self.size))
        samples = []
        while load.poll() is None:
            try:
                samples.append(rss_mib(info["pid"]))
            except (OSError, RuntimeError):
                break
            time.sleep(0.05)
        out, err = load.communicate()
        if load.returncode:
            raise RuntimeError(f"fio load on the -i 4 session failed: {err.strip()[-400:]}")
        hwm = rss_mib(info["pid"], "VmHWM")
        after = rss_mib(info["pid"])
        peak = max(samples + [after])
        return {"value": peak, "samples": len(samples), "vmhwm_mib": hwm, "after_mib": after,
                "load": f"fio {' '.join(RSS_LOAD.args())} for {seconds:g} s"}

    def _nvmfd_idle_rss(self, servers: Servers) -> tuple[dict, dict]:
        """RSS with RSS_IDLE_ASSOCIATIONS idle associations, then with RSS_IDLE_TCP
        idle TCP connections more."""
        from bench.nvmfd_client import NvmfdClient

        proc, port = servers.nvmfd("nvmfd-idle", SUBNQN, IDLE_NS_SIZE)
        before = rss_mib(proc.pid)
        clients, socks = [], []
        try:
            for _ in range(RSS_IDLE_ASSOCIATIONS):
                clients.append(NvmfdClient(port, SUBNQN))
            time.sleep(0.5)
            value = rss_mib(proc.pid)
            fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            want = RSS_IDLE_TCP + 256
            if soft < want and (hard == resource.RLIM_INFINITY or hard >= want):
                resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            for _ in range(RSS_IDLE_TCP):
                socks.append(socket.create_connection(("127.0.0.1", port)))
            deadline = time.monotonic() + 5
            while len(os.listdir(f"/proc/{proc.pid}/fd")) < fds + RSS_IDLE_TCP \
                    and time.monotonic() < deadline:
                time.sleep(0.05)
            held = len(os.listdir(f"/proc/{proc.pid}/fd")) - fds
            tcp_value = rss_mib(proc.pid)
        finally:
            for s in socks:
                s.close()
            for c in clients:
                try:
                    c.close()
                except Exception:
                    pass
        return ({"value": value, "before_mib": before, "associations": RSS_IDLE_ASSOCIATIONS,
                 "namespace": f"mem:{IDLE_NS_SIZE}"},
                {"value": tcp_value, "before_mib": value, "connections": RSS_IDLE_TCP,
                 "held": held})

    # -- the whole run --
    def run(self) -> dict:
        from bench.api_client import ApiClient
        from bench.nvmfd_client import NvmfdClient

        log("bench: command start-up")  # first, before the servers load the machine
        self.extra.update(startup.measure(self.rounds, 2 if self.quick else 5))
        servers = Servers()
        self.client = self.api_client = None
        t0 = time.monotonic()
        try:
            log(f"bench: starting nvmfd (mem {_mib(self.size)}), nbdkit, reference loop, "
                f"{len(SESSIONS)} sessions in {servers.tmp}")
            nvmfd, port = servers.nvmfd("nvmfd", SUBNQN, self.size)
            nbdkit_uri = servers.nbdkit(self.size)
            self.ref_port = servers.refloop()
            self.sessions = servers.sessions_connect(port, SUBNQN, SESSIONS)
            self.uris = {k: v["uri"] for k, v in self.sessions.items() if k != "rss"}
            self.uris["nbdkit"] = nbdkit_uri
            # Whose CPU time a run of each NBD side costs, besides fio's own.
            self.cpu_pids = {side: {"session": info["pid"], "nvmfd": nvmfd.pid}
                             for side, info in self.sessions.items()}
            self.cpu_pids["nbdkit"] = {"nbdkit": servers.pid("nbdkit")}
            log(f"bench: filling both disks ({_mib(self.size)} each)")
            fio.fill(self.uris["bridge"], self.size)
            fio.fill(nbdkit_uri, self.size)
            self.client = NvmfdClient(port, SUBNQN)
            self.api_client = ApiClient(port, SUBNQN)
            log(f"bench: ready after {time.monotonic() - t0:.1f} s; {self.rounds} round(s)")
            self._rounds()
            log("bench: RSS measures")
            self.extra["rss:session"] = self._session_rss(servers)
            self.extra["rss:nvmfd_idle"], self.extra["rss:nvmfd_idle_tcp"] = \
                self._nvmfd_idle_rss(servers)
        finally:
            try:
                for c in (self.api_client, self.client):
                    if c is not None:
                        c.close()
            except Exception as e:  # the servers go anyway
                log(f"bench: closing the nvmfd clients: {e}")
            finally:
                servers.close()
        return self.results()

    def results(self) -> dict:
        measures = {}
        for m in MEASURES + startup.MEASURES:
            if m.den is None:
                x = self.extra[m.num]
                values = [x["value"]]
                entry = {"detail": {k: v for k, v in x.items() if k != "value"}}
            else:
                num, den = self.runs[m.num], self.runs[m.den]
                values = [a[m.metric] / b[m.metric] for a, b in zip(num, den)]
                entry = {"numerator": _side(m.num, num), "denominator": _side(m.den, den)}
            med = statistics.median(values)
            measures[m.key] = {
                "what": m.what, "why": m.why, "metric": m.metric, "unit": m.unit,
                "target": m.target, "op": m.op, "median": med, "min": min(values),
                "max": max(values), "values": values, "met": m.met(med), **entry}
        runs = {run: {k: [r[k] for r in rs] for k in rs[0]} for run, rs in self.runs.items()}
        return {"measures": measures, "runs": runs, "cpu_per_io": cpu_per_io(runs)}


def cpu_per_io(runs: dict) -> dict:
    """job -> side -> {process: median CPU µs per I/O} for the CPU_JOBS runs.

    On this machine every process of a run shares two vCPUs, so a run is
    CPU-bound once their sum per I/O reaches 2 / IOPS: these figures say
    where each side's I/Os go, and what a ratio can be at most while the
    server side spends what it does.
    """
    out = {}
    for job in CPU_JOBS:
        for side in CPU_SIDES:
            r = runs.get(f"{side}:{job}")
            if not r:
                continue
            cpu = {k[4:]: statistics.median(v) for k, v in r.items() if k.startswith("cpu_")}
            cpu["total"] = sum(cpu.values())
            out.setdefault(job, {})[side] = cpu
    return out


def _side(run: str, rs: list[dict]) -> dict:
    out = {"run": run}
    for k in rs[0]:
        vals = [r[k] for r in rs]
        out[k] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
                  "values": vals}
    return out
