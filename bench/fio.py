"""fio with its nbd engine: the one NBD client every NBD server is measured with."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass


def _ms(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"  # fio's --runtime=0.3 would mean 0 s


@dataclass(frozen=True)
class Job:
    """One fio job shape (``rw``, block size, iodepth per job, number of jobs)."""

    name: str
    rw: str
    bs: str
    qd: int
    numjobs: int = 1

    def args(self) -> list[str]:
        a = [f"--rw={self.rw}", f"--bs={self.bs}", f"--iodepth={self.qd}"]
        if self.numjobs > 1:
            a += [f"--numjobs={self.numjobs}", "--group_reporting"]
        return a


def run(uri: str, job: Job, seconds: float, size: int) -> dict:
    """Run ``job`` against the NBD ``uri`` for ``seconds``; returns iops and MB/s."""
    cmd = ["fio", "--name=bench", "--ioengine=nbd", f"--uri={uri}", *job.args(),
           f"--runtime={_ms(seconds)}", "--time_based", f"--size={size}", "--output-format=json",
           "--randrepeat=0", "--norandommap"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"fio {job.name} on {uri} failed ({p.returncode}): "
                           f"{(p.stderr or p.stdout).strip()[-400:]}")
    out = p.stdout
    data = json.loads(out[out.index("{"):])
    j = data["jobs"][0]  # with --group_reporting, every job's figures together
    side = j["write" if "write" in job.rw else "read"]
    ios = side["total_ios"]
    # usr_cpu/sys_cpu: percent of one CPU over job_runtime (ms; with
    # --group_reporting the jobs' runtimes summed), start-up excluded.
    fio_cpu_s = (j["usr_cpu"] + j["sys_cpu"]) / 100 * j["job_runtime"] / 1000
    # fio's bw_bytes is bytes/s; MB/s here is 10^6 bytes/s throughout.
    return {"iops": side["iops"], "mbps": side["bw_bytes"] / 1e6, "ios": ios,
            "cpu_fio": fio_cpu_s * 1e6 / ios if ios else 0.0}


def fill(uri: str, size: int) -> None:
    """Write the whole export once, so reads move real data (nbdkit's memory
    plugin answers reads of never-written areas without touching memory)."""
    p = subprocess.run(["fio", "--name=fill", "--ioengine=nbd", f"--uri={uri}", "--rw=write",
                        "--bs=1m", "--iodepth=8", f"--size={size}", "--output-format=json"],
                       capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"fio fill of {uri} failed: {(p.stderr or p.stdout).strip()[-400:]}")


def start(uri: str, job: Job, seconds: float, size: int) -> subprocess.Popen:
    """The same job in the background (load while something else is sampled)."""
    return subprocess.Popen(
        ["fio", "--name=load", "--ioengine=nbd", f"--uri={uri}", *job.args(),
         f"--runtime={_ms(seconds)}", "--time_based", f"--size={size}", "--output-format=json",
         "--randrepeat=0", "--norandommap"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
