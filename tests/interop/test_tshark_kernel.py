"""Wireshark's NVMe/TCP dissector reads our host's traffic with the kernel target cleanly."""

from __future__ import annotations

import os

import pytest

from nvmecontrol.cli.app import main

from .nvmet import Namespace, NvmetConfig, Port, Subsystem
from .tshark import Capture, have_tshark

NQN = "nqn.2014-08.org.nvmexpress.test:tshark"
HOST = "nqn.2014-08.org.nvmexpress:uuid:0c0ffee0-1234-4567-89ab-cdef01234567"


@pytest.fixture
def tshark_available():
    if not have_tshark():
        if os.environ.get("CI") == "true":
            pytest.fail("tshark/dumpcap missing under CI (apt-get install tshark)", pytrace=False)
        pytest.skip("tshark not installed")


@pytest.mark.parametrize("digests", [[], ["-g", "-G"]], ids=["plain", "digests"])
def test_dissector_finds_no_errors(capsys, kernel_target, tshark_available, digests):
    host, port = kernel_target.apply(NvmetConfig(
        subsystems=[Subsystem(NQN, [Namespace(1, size_mib=8)])],
        ports=[Port(subsystems=[NQN])]))
    addr = f"{host}:{port}"
    cap = Capture(port)
    try:
        with cap:
            assert main(["discover", "-q", HOST, addr]) == 0
            assert main(["identify", *digests, "-q", HOST, addr, NQN]) == 0
            assert main(["logpage", "-p", "2", *digests, "-q", HOST, addr, NQN]) == 0
        capsys.readouterr()
        types = cap.pdu_types()
        # ICReq, ICResp, CapsuleCmd, CapsuleResp and C2HData were all decoded.
        assert {"0", "1", "4", "5", "7"} <= set(types), types
        assert cap.problems() == []
    finally:
        cap.cleanup()
