"""The tshark check itself can fail: a C2HData whose DATAL overruns its PDU is flagged."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from .tshark import Capture, have_tshark


@pytest.mark.skipif(not have_tshark() and os.environ.get("CI") != "true",
                    reason="tshark not installed")
def test_malformed_pdu_is_reported():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def drain():
        c, _ = srv.accept()
        c.recv(4096)
        c.close()

    threading.Thread(target=drain, daemon=True).start()
    # C2HData, PLEN 34 (24-byte header + 10 data bytes) but DATAL 500.
    bad = (bytes([0x07, 0x0C, 24, 24]) + (34).to_bytes(4, "little") + (1).to_bytes(2, "little")
           + bytes(2) + bytes(4) + (500).to_bytes(4, "little") + bytes(4) + bytes(10))
    cap = Capture(port)
    try:
        with cap:
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(bad)
        assert cap.pdu_types() == ["7"]
        problems = cap.problems()
        assert len(problems) == 1 and "Malformed" in problems[0]
    finally:
        cap.cleanup()
        srv.close()
