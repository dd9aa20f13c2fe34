"""Capture loopback traffic with tshark and check it with the NVMe/TCP dissector.

Wireshark's dissector is an independent reading of the NVMe/TCP spec: a PDU
it calls malformed, or an expert error it raises, is a bug on one side of
the capture.  ``Capture`` records one TCP port on ``lo`` while a block runs;
``problems()`` decodes the file forcing that port to NVMe/TCP and lists
every malformed packet and expert error.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

# dumpcap needs a moment before it really captures; this many seconds of
# waiting for the file header is plenty on a loaded 2-core machine.
_START_TIMEOUT_S = 15.0
# A pcap file's global header is 24 bytes; pcapng's first block is larger.
_HEADER_BYTES = 24


def have_tshark() -> bool:
    return shutil.which("tshark") is not None and shutil.which("dumpcap") is not None


class Capture:
    """``with Capture(port) as cap: ...`` then ``cap.problems()``."""

    def __init__(self, port: int, *, interface: str = "lo", check_digests: bool = False):
        self.port = port
        self.interface = interface
        # The dissector verifies header/data digest CRCs only when asked to
        # (status 1 good, 0 bad; 2 means unverified).
        self.check_digests = check_digests
        self._dir = tempfile.mkdtemp(prefix="nvmecontrol-pcap-")
        self.path = Path(self._dir) / "capture.pcapng"
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> "Capture":
        self._proc = subprocess.Popen(
            ["dumpcap", "-q", "-i", self.interface, "-f", f"tcp port {self.port}",
             "-w", str(self.path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not (self.path.exists() and self.path.stat().st_size >= _HEADER_BYTES):
            if self._proc.poll() is not None:
                raise RuntimeError(f"dumpcap exited: {self._proc.stderr.read().decode().strip()}")
            if time.monotonic() > deadline:
                raise RuntimeError("dumpcap did not start capturing")
            time.sleep(0.05)
        time.sleep(0.3)  # the file header appears just before the filter is live
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.3)  # let the last segments reach the capture
        if self._proc and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def _tshark(self, *args: str) -> str:
        out = subprocess.run(
            ["tshark", "-n", "-r", str(self.path), "-d", f"tcp.port=={self.port},nvme-tcp",
             *(["-o", "nvme-tcp.check_hdgst:TRUE", "-o", "nvme-tcp.check_ddgst:TRUE"]
               if self.check_digests else []), *args],
            capture_output=True, text=True, timeout=120, env={**os.environ, "LC_ALL": "C"})
        if out.returncode != 0:
            raise RuntimeError(f"tshark failed: {out.stderr.strip()}")
        return out.stdout

    def pdu_types(self) -> list[str]:
        """The NVMe/TCP PDU types seen, in order (e.g. '0', '1', '4', '5', '7')."""
        text = self._tshark("-Y", "nvme-tcp", "-T", "fields", "-e", "nvme-tcp.type")
        return [t for line in text.splitlines() for t in line.split(",") if t]

    def fields(self, display_filter: str, *names: str) -> list[list[str]]:
        """The values of ``names`` in every packet matching ``display_filter``, one row each."""
        args = [a for n in names for a in ("-e", n)]
        text = self._tshark("-Y", display_filter, "-T", "fields", "-E", "separator=/t", *args)
        return [line.split("\t") for line in text.splitlines() if line.strip()]

    def problems(self) -> list[str]:
        """One line per malformed packet or dissector expert error."""
        text = self._tshark("-Y", "_ws.malformed || _ws.expert.severity >= error",
                            "-T", "fields", "-e", "frame.number", "-e", "_ws.expert.message",
                            "-e", "_ws.col.info")
        return [line for line in text.splitlines() if line.strip()]

    def cleanup(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)
