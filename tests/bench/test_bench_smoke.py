"""The benchmark suite runs end to end (``python -m bench --quick``).

Only the shape of the result is checked (every measure with a number and
its target, the plots are PNG files) and that nothing is left behind:
never the figures, which depend on the machine and the minute.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
KEYS = {
    "bridge_4k_randread_qd32": 0.90,
    "bridge_4k_randwrite_qd32": 0.85,
    "bridge_4k_randread_qd1": 0.45,
    "bridge_128k_randread_qd32": 0.80,
    "bridge_1m_seqread": 0.80,
    "bridge_1m_seqread_vs_tcp": 0.70,
    "nvmfd_4k_read_qd32": 0.50,
    "nvmfd_4k_read_qd1": 0.80,
    "bridge_digests_4k_qd32": 0.90,
    "bridge_digests_1m": 0.85,
    "bridge_4k_randread_qd32_2q": None,
    "session_rss_mib": 64,
    "nvmfd_rss_16_idle_mib": 96,
    "nvmfd_rss_idle_tcp_mib": 256,
    "api_4k_read_qd32": None,
    "api_4k_read_qd32_vs_client": None,
    "api_4k_read_qd1": None,
    "startup_help": 4.0,
    "startup_devlist": 4.0,
    "startup_nvmfd_help": 4.0,
}
PACKAGES = {"fio": "fio", "nbdkit": "nbdkit"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def need_tools() -> None:
    """Skip without fio/nbdkit (with the reason printed), fail under CI."""
    missing = [f"{t} ({p})" for t, p in PACKAGES.items() if shutil.which(t) is None]
    if not missing:
        return
    msg = "bench smoke: not installed: " + ", ".join(missing) + \
        " (apt-get install -y fio nbdkit libnbd-bin)"
    if os.environ.get("CI") == "true":
        pytest.fail(msg, pytrace=False)
    print(msg)
    pytest.skip(msg)


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes whose command line or environment has ``text``."""
    found = []
    needle = text.encode()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmdline = (d / "cmdline").read_bytes()
            try:
                environ = (d / "environ").read_bytes()
            except PermissionError:
                environ = b""
        except OSError:
            continue
        if needle in cmdline or needle in environ:
            cmd = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{d.name}: {cmd}")
    return found


def test_quick_run(tmp_path):
    need_tools()
    # The suite's temporary directory goes under this one (TMPDIR), short
    # because sessions put Unix sockets there; everything must be gone after.
    scratch = Path(tempfile.mkdtemp(prefix="nvbt-", dir="/tmp"))
    try:
        out = tmp_path / "results" / "quick.json"
        env = dict(os.environ, TMPDIR=str(scratch))
        env.pop("NVMECONTROL_RUNTIME_DIR", None)
        p = subprocess.run([sys.executable, "-m", "bench", "--quick", "--no-install", "-q",
                            "--out", str(out)], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=600)
        assert p.returncode == 0, f"stdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}"

        data = json.loads(out.read_text())
        assert data["mode"] == "quick"
        for key, target in KEYS.items():
            m = data["measures"][key]
            for field in ("median", "min", "max"):
                assert isinstance(m[field], (int, float)), (key, field, m[field])
            assert m["values"] and all(isinstance(v, (int, float)) for v in m["values"]), key
            assert m["target"] == target, key
            assert m["met"] in ((None,) if target is None else (True, False)), key
            assert key in p.stdout  # the table has a row for it
            if "numerator" in m:
                for side in ("numerator", "denominator"):
                    assert isinstance(m[side][m["metric"]]["median"], (int, float)), (key, side)

        # CPU per I/O of every process of the summed-up runs: fio's own and
        # each server's, bridge (session + nvmfd) against nbdkit.
        from bench.suite import CPU_JOBS
        assert set(data["cpu_per_io"]) == set(CPU_JOBS)
        for job, sides in data["cpu_per_io"].items():
            assert set(sides["bridge"]) == {"fio", "session", "nvmfd", "total"}, (job, sides)
            assert set(sides["nbdkit"]) == {"fio", "nbdkit", "total"}, (job, sides)
            for side, cpu in sides.items():
                assert cpu["fio"] > 0 and cpu["total"] == sum(
                    v for k, v in cpu.items() if k != "total"), (job, side, cpu)
        assert "CPU per I/O" in p.stdout and "CPUs busy" in p.stdout

        try:
            import matplotlib  # noqa: F401
        except ImportError:
            assert data["plots"] == []
            assert "matplotlib" in p.stderr
        else:
            assert len(data["plots"]) >= 2
            for name in data["plots"]:
                png = out.parent / name
                assert png.read_bytes()[:8] == PNG_MAGIC, png

        assert processes_mentioning(str(scratch)) == []
        assert list(scratch.iterdir()) == []
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def test_layers_profile_runs(tmp_path):
    """``python -m bench.layers``: every data-path thread of both processes is
    profiled and its Python time attributed to the issue's layers."""
    need_tools()
    scratch = Path(tempfile.mkdtemp(prefix="nvbt-", dir="/tmp"))
    try:
        out = tmp_path / "layers.json"
        env = dict(os.environ, TMPDIR=str(scratch))
        env.pop("NVMECONTROL_RUNTIME_DIR", None)
        p = subprocess.run([sys.executable, "-m", "bench.layers", "--seconds", "0.5",
                            "--size", "16", "--json", str(out)], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, f"stdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}"
        jobs = json.loads(out.read_text())
        assert [j["rw"] for j in jobs] == ["randread", "randwrite"]
        for job in jobs:
            assert job["ios"] > 0
            threads = job["threads"]
            assert set(threads) == {"session: NBD intake", "session: I/O queue receiver",
                                    "nvmfd: connection"}, threads
            intake = threads["session: NBD intake"]["layers_us_per_io"]
            receiver = threads["session: I/O queue receiver"]["layers_us_per_io"]
            target = threads["nvmfd: connection"]["layers_us_per_io"]
            assert intake["NBD request decode"] > 0 and intake["SQE encode and queueing"] > 0
            assert receiver["PDU header check and decode"] > 0
            assert receiver["NBD reply encode and send"] > 0
            assert target["dispatch, namespace copy, C2HData/CapsuleResp encode"] > 0
            assert f"4 KiB {job['rw']} QD32" in p.stdout
        assert processes_mentioning(str(scratch)) == []
        assert list(scratch.iterdir()) == []
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
