#!/usr/bin/env python3
"""nvmfd read throughput as ratios to a bare socket request/response loop.

Two servers run as subprocesses on 127.0.0.1 for the whole run:

* nvmfd (``python -m nvmecontrol.target.main``) with one RAM namespace,
  driven by our host library: one association, one I/O queue, SQ flow
  control disabled (reads complete with C2HData SUCCESS), the host queue
  pair driven directly (submit up to QD commands into preallocated
  buffers, poll completions, resubmit, one sendmsg per poll);
* the reference: the same shape with no NVMe at all, a blocking thread
  that answers each 72-byte request with a fixed-size response (24 bytes
  like a CapsuleResp, 4128 like a 4 KiB C2HData PDU with its header, or
  1 MiB + 24), batched (one recv_into, one sendmsg per wakeup), and a client
  that keeps QD requests in flight the same way.

Each test runs for ``--seconds`` against each server, alternately, for
``--rounds`` rounds; the ratio nvmfd/reference is taken per round and the
median, min and max are reported (``performance-limits.md`` §4: only
same-run ratios mean anything on a noisy machine).

    .venv/bin/python bench/bench_target.py [--rounds 5] [--seconds 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nvmecontrol.host.association import AssociationParams, connect_association  # noqa: E402
from nvmecontrol.hostid import HostIdentity  # noqa: E402
from nvmecontrol.nqn import nqn_from_uuid  # noqa: E402
from nvmecontrol.transport.address import Address  # noqa: E402
from nvmecontrol.transport.tcp import sendmsg_all  # noqa: E402
from nvmecontrol.wire import nvm  # noqa: E402
from nvmecontrol.wire.qpair import Completion  # noqa: E402

SUBNQN = "nqn.2014-08.org.example:bench"
REQUEST = 72
NS_SIZE = 256 << 20
# (name, read size in bytes (0: Flush), queue depth, reference response size)
TESTS = [
    ("flush QD1", 0, 1, 24),
    ("4K read QD1", 4096, 1, 4128),
    ("4K read QD32", 4096, 32, 4128),
    ("1M read QD1", 1 << 20, 1, (1 << 20) + 24),
    ("1M read QD4", 1 << 20, 4, (1 << 20) + 24),
]


# --- the reference server (run as a subprocess: --ref-server) --------------------

def _ref_serve(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    pending = 0
    size = None
    resp = None
    try:
        while True:
            n = conn.recv_into(view[pending:])
            if not n:
                return
            pending += n
            if size is None:  # the first 4 bytes of the first request: response size
                if pending < REQUEST:
                    continue
                size = int.from_bytes(buf[:4], "little")
                resp = memoryview(bytearray(size))
            count, rest = divmod(pending, REQUEST)
            if rest:
                view[:rest] = view[pending - rest:pending]
            pending = rest
            if count:
                sendmsg_all(conn, [resp] * count)
    except OSError:
        pass
    finally:
        conn.close()


def ref_server_main(port_file: str) -> None:
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    Path(port_file).write_text(f"{ls.getsockname()[1]}\n")
    while True:
        c, _ = ls.accept()
        threading.Thread(target=_ref_serve, args=(c,), daemon=True).start()


# --- clients --------------------------------------------------------------------

def ref_run(port: int, resp_size: int, qd: int, seconds: float) -> float:
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    req = bytearray(REQUEST)
    req[:4] = resp_size.to_bytes(4, "little")
    buf = bytearray(max(resp_size * qd, 1 << 20))
    view = memoryview(buf)
    try:
        s.sendall(bytes(req) * qd)
        done = 0
        got = 0
        end = time.perf_counter() + seconds
        start = time.perf_counter()
        while True:
            n = s.recv_into(view)
            if not n:
                raise ConnectionError("reference server closed")
            got += n
            completed, got = divmod(got, resp_size)
            done += completed
            if completed:
                if time.perf_counter() >= end:
                    break
                s.sendall(bytes(req) * completed)
        elapsed = time.perf_counter() - start
        return done / elapsed
    finally:
        s.close()


class NvmfdClient:
    def __init__(self, port: int):
        u = uuid.uuid4()
        host = HostIdentity(nqn_from_uuid(u), u, "bench", "bench")
        self.assoc = connect_association(Address("127.0.0.1", port, "bench"), SUBNQN, host,
                                         AssociationParams(num_io_queues=1, kato_s=60))
        q = self.assoc.io[0]
        chunk = bytes(range(256)) * 4096  # 1 MiB
        for off in range(0, 64 << 20, 1 << 20):  # real data, not the zero page
            q.execute(nvm.build_write(1, off // 512, (1 << 20) // 512), "fill", write_data=chunk)

    def run(self, size: int, qd: int, seconds: float) -> float:
        q = self.assoc.io[0]
        tq, qp = q.tq, q.qp
        blocks = max(size // 512, 1)
        span = (64 << 20) // 512 - blocks
        bufs = [memoryview(bytearray(size)) for _ in range(qd)] if size else [None] * qd
        slba = [0]

        def submit(buf):
            lba = slba[0]
            slba[0] = (lba + blocks) % span
            sqe = nvm.build_read(1, lba, blocks) if size else nvm.build_flush(1)
            return qp.submit(sqe, read_into=buf)

        owner = {}
        for b in bufs:
            owner[submit(b)] = b
        tq.flush()
        done = 0
        start = time.perf_counter()
        end = start + seconds
        stopping = False
        while owner:
            # Every completion of the batch first: the queue pair has already
            # freed their CIDs, so a resubmission may reuse one of them.
            free = []
            for ev in tq.poll():
                if type(ev) is not Completion:
                    continue
                if ev.cqe.status:
                    raise RuntimeError(f"command failed: status {ev.cqe.status:#x}")
                free.append(owner.pop(ev.cid))
            done += len(free)
            if not stopping:
                for b in free:
                    owner[submit(b)] = b
            if not stopping and time.perf_counter() >= end:
                stopping = True
                elapsed = time.perf_counter() - start
                counted = done
            tq.flush()
        return counted / elapsed

    def close(self):
        self.assoc.shutdown()


# --- orchestration ----------------------------------------------------------------

def _wait_port(path: Path, proc: subprocess.Popen, what: str) -> int:
    deadline = time.monotonic() + 30
    while not (path.exists() and path.read_text().strip()):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{what} did not start")
        time.sleep(0.05)
    return int(path.read_text().split()[0])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--ref-server", metavar="PORT_FILE", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ref_server:
        ref_server_main(args.ref_server)
        return 0
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")

    tmp = Path(tempfile.mkdtemp(prefix="bench-nvmfd-"))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    nvmfd = subprocess.Popen(
        [sys.executable, "-m", "nvmecontrol.target.main", "-F", "-a", "127.0.0.1", "-p", "0",
         "--port-file", str(tmp / "nvmfd.port"), "-S", str(tmp / "nvmfd.sock"), "-n", SUBNQN,
         f"mem:{NS_SIZE}"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ref = subprocess.Popen([sys.executable, __file__, "--ref-server", str(tmp / "ref.port")],
                           env=env)
    client = None
    try:
        nvmfd_port = _wait_port(tmp / "nvmfd.port", nvmfd, "nvmfd")
        ref_port = _wait_port(tmp / "ref.port", ref, "reference server")
        client = NvmfdClient(nvmfd_port)
        results = {name: {"nvmfd": [], "reference": [], "ratio": []} for name, *_ in TESTS}
        for rnd in range(args.rounds):
            for name, size, qd, resp in TESTS:
                order = ("nvmfd", "reference") if rnd % 2 == 0 else ("reference", "nvmfd")
                got = {}
                for which in order:
                    if which == "nvmfd":
                        got[which] = client.run(size, qd, args.seconds)
                    else:
                        got[which] = ref_run(ref_port, resp, qd, args.seconds)
                r = results[name]
                r["nvmfd"].append(got["nvmfd"])
                r["reference"].append(got["reference"])
                r["ratio"].append(got["nvmfd"] / got["reference"])
    finally:
        if client is not None:
            client.close()
        for p in (nvmfd, ref):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()

    summary = []
    for name, size, qd, resp in TESTS:
        r = results[name]
        summary.append({
            "test": name, "bytes": size, "qd": qd, "reference_response_bytes": resp,
            "nvmfd_ops_median": statistics.median(r["nvmfd"]),
            "reference_ops_median": statistics.median(r["reference"]),
            "ratio_median": statistics.median(r["ratio"]),
            "ratio_min": min(r["ratio"]), "ratio_max": max(r["ratio"]),
            "nvmfd_ops": r["nvmfd"], "reference_ops": r["reference"], "ratios": r["ratio"],
        })
    if args.json:
        print(json.dumps({"rounds": args.rounds, "seconds": args.seconds, "results": summary},
                         indent=2))
        return 0
    print(f"nvmfd vs bare socket request/response, {args.rounds} rounds x {args.seconds:g} s "
          "(ratio per round: nvmfd / reference)")
    print(f"{'test':<14} {'nvmfd ops/s':>12} {'ref ops/s':>12} {'MB/s':>8} "
          f"{'ratio med':>9} {'min':>6} {'max':>6}")
    for s in summary:
        mbps = s["nvmfd_ops_median"] * s["bytes"] / 1e6
        print(f"{s['test']:<14} {s['nvmfd_ops_median']:>12,.0f} {s['reference_ops_median']:>12,.0f} "
              f"{mbps:>8,.0f} {s['ratio_median']:>9.2f} {s['ratio_min']:>6.2f} "
              f"{s['ratio_max']:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
