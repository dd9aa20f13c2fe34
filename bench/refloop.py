"""The bare socket references: a request/response loop and raw TCP bandwidth.

No NVMe and no nvmecontrol import here: these are the ceilings Python
itself reaches on this machine's loopback, measured in the same rounds as
the code under test (performance-limits.md §3a-§3c).

The server runs as its own process (``python -m bench.refloop PORT_FILE``)
and serves each accepted connection on a blocking thread.  The client's
first 72-byte request says what the connection is:

* bytes 0-3: the response size; bytes 4-7: the mode.
* mode 0 (request/response): every 72-byte request is answered with a
  response of that size, batched (one ``recv_into``, one ``sendmsg`` for all
  the requests it completed), like the former ``bench_target.py``;
* mode 1 (bandwidth): the server ``sendall``s a 128 KiB buffer until the
  client closes, and the client ``recv_into``s a 128 KiB buffer
  (``py_bw.py tcp`` of the research note).
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path

REQUEST = 72
MODE_RR, MODE_BW = 0, 1
BW_CHUNK = 128 << 10
_IOV_MAX = 1024


def _nodelay(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _sendmsg_all(sock: socket.socket, buffers: list) -> None:
    views = [memoryview(b) for b in buffers]
    while views:
        sent = sock.sendmsg(views[:_IOV_MAX])
        while sent:
            n = len(views[0])
            if sent >= n:
                sent -= n
                views.pop(0)
            else:
                views[0] = views[0][sent:]
                sent = 0


# --- server ------------------------------------------------------------------------

def _serve(conn: socket.socket) -> None:
    _nodelay(conn)
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    pending = 0
    resp = None
    try:
        while True:
            n = conn.recv_into(view[pending:])
            if not n:
                return
            pending += n
            if resp is None:
                if pending < REQUEST:
                    continue
                size = int.from_bytes(buf[:4], "little")
                if int.from_bytes(buf[4:8], "little") == MODE_BW:
                    chunk = bytes(BW_CHUNK)
                    while True:
                        conn.sendall(chunk)
                resp = memoryview(bytearray(size))
            count, rest = divmod(pending, REQUEST)
            if rest:
                view[:rest] = view[pending - rest:pending]
            pending = rest
            if count:
                _sendmsg_all(conn, [resp] * count)
    except OSError:
        pass
    finally:
        conn.close()


def serve(port_file: str) -> None:
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    tmp = Path(port_file + ".tmp")
    tmp.write_text(f"{ls.getsockname()[1]}\n")
    tmp.replace(port_file)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=_serve, args=(c,), daemon=True).start()


# --- clients -----------------------------------------------------------------------

def _request(resp_size: int, mode: int) -> bytes:
    req = bytearray(REQUEST)
    req[:4] = resp_size.to_bytes(4, "little")
    req[4:8] = mode.to_bytes(4, "little")
    return bytes(req)


def rr_run(port: int, resp_size: int, qd: int, seconds: float) -> float:
    """Keep ``qd`` requests in flight for ``seconds``; returns responses per second."""
    s = socket.create_connection(("127.0.0.1", port))
    _nodelay(s)
    req = _request(resp_size, MODE_RR)
    view = memoryview(bytearray(max(resp_size * qd, 1 << 20)))
    try:
        s.sendall(req * qd)
        done = got = 0
        start = time.perf_counter()
        end = start + seconds
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
                s.sendall(req * completed)
        return done / (time.perf_counter() - start)
    finally:
        s.close()


def bw_run(port: int, seconds: float) -> float:
    """Receive for ``seconds`` into a 128 KiB buffer; returns MB/s (10^6 bytes)."""
    s = socket.create_connection(("127.0.0.1", port))
    _nodelay(s)
    view = memoryview(bytearray(BW_CHUNK))
    try:
        s.sendall(_request(BW_CHUNK, MODE_BW))
        got = 0
        start = time.perf_counter()
        end = start + seconds
        while True:
            for _ in range(64):
                n = s.recv_into(view)
                if not n:
                    raise ConnectionError("reference server closed")
                got += n
            now = time.perf_counter()
            if now >= end:
                return got / (now - start) / 1e6
    finally:
        s.close()


if __name__ == "__main__":
    try:
        serve(sys.argv[1])
    except KeyboardInterrupt:
        pass
