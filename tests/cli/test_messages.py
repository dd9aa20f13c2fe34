"""What the commands say: warnings only where they matter, refusals that name the field,
FreeBSD's logpage rules, the backend ``auto`` chose and why.

Against an in-process nvmfd; sessions made here are disconnected before the
test ends (the session guard checks that none is left).
"""

from __future__ import annotations

import json
import uuid

import pytest

from nvmecontrol.cli import backend_choice
from nvmecontrol.cli import exitcodes as X
from nvmecontrol.cli.refusal import Asked, explain
from nvmecontrol.errors import CommandFailed
from nvmecontrol.wire.fabrics import connect_invalid_dw0
from nvmecontrol.wire.status import connect_invalid_field, make_status

from ..backends.sessionkit import session_guard  # noqa: F401  (autouse: no session left)
from .clikit import cli, one_namespace_target

A = uuid.UUID("3f0a9b2c-4d5e-4f60-8a7b-9c0d1e2f3a4b")
B = uuid.UUID("0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9")
HOST = f"nqn.2014-08.org.nvmexpress:uuid:{A}"
SUBNQN = "nqn.2014-08.org.example:messages"
MISMATCH = "does not match the UUID"


@pytest.fixture
def target(nvmfd_factory):
    return one_namespace_target(nvmfd_factory, SUBNQN)


@pytest.fixture
def mismatched(monkeypatch):
    """A host NQN with UUID A and a host ID B, as a stock Debian 12 may have."""
    monkeypatch.setenv("NVMECONTROL_HOSTNQN", HOST)
    monkeypatch.setenv("NVMECONTROL_HOSTID", str(B))


@pytest.fixture
def closed_port():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --- host ID / host NQN mismatch ---------------------------------------------------------

def test_mismatch_is_quiet_for_read_only_commands(capsys, mismatched, closed_port):
    rc, out, err = cli(capsys, "hostnqn")
    assert (rc, out, err) == (0, HOST + "\n", "")
    rc, _out, err = cli(capsys, "discover", f"127.0.0.1:{closed_port}")
    assert rc == X.EX_NOHOST and MISMATCH not in err


def test_mismatch_is_said_by_hostnqn_verbose_with_the_fix(capsys, mismatched):
    rc, out, err = cli(capsys, "hostnqn", "-v")
    assert rc == 0 and str(B) in out
    [line] = err.splitlines()
    assert MISMATCH in line and f"set the host ID to {A}" in line
    rc, out, err = cli(capsys, "hostnqn", "-o", "json")
    assert rc == 0 and err == ""
    assert MISMATCH in json.loads(out)["mismatch"]


def test_mismatch_is_said_once_by_connect(capsys, mismatched, closed_port):
    rc, _out, err = cli(capsys, "connect", "--backend", "nbd", f"127.0.0.1:{closed_port}", SUBNQN)
    assert rc == X.EX_NOHOST
    assert err.count(MISMATCH) == 1


# --- Connect Invalid Parameters ----------------------------------------------------------

@pytest.mark.parametrize("ipo, in_data, field", [
    (0, True, "HOSTID"), (15, True, "HOSTID"), (16, True, "CNTLID"), (256, True, "SUBNQN"),
    (300, True, "SUBNQN"), (512, True, "HOSTNQN"), (767, True, "HOSTNQN"), (42, False, "QID"),
    (44, False, "SQSIZE"), (46, False, "CATTR"), (48, False, "KATO"), (40, False, "RECFMT"),
    (100, True, None), (0, False, None), (256, False, None),
])
def test_connect_invalid_field(ipo, in_data, field):
    assert connect_invalid_field(ipo, in_data) == field


class _Cqe:
    def __init__(self, dw0):
        self.dw0 = dw0


def _refusal(ipo: int, in_data: bool) -> CommandFailed:
    e = CommandFailed("Connect (queue 1) failed: Connect Invalid Parameters (sct 0x1, sc 0x82, "
                      f"dnr); invalid parameter at byte {ipo} of the Connect data",
                      make_status(1, 0x82, dnr=True))
    e.cqe = _Cqe(connect_invalid_dw0(ipo, in_data))
    return e


@pytest.mark.parametrize("ipo, in_data, said", [
    (256, True, "does not offer subsystem NQN 'nqn.2014-08.org.example:x'"),
    (512, True, f"refuses host NQN '{HOST}'"),
    (0, True, f"refuses host ID {B}"),
    (16, True, "refuses controller ID 0x5"),
    (44, False, "refuses the queue size 64 (-Q/--queue-size"),
    (42, False, "fewer than the 4 I/O queues asked"),
])
def test_refusal_names_the_field_and_the_value(ipo, in_data, said):
    asked = Asked("nqn.2014-08.org.example:x", HOST, str(B), cntlid=5, queue_size=64,
                  num_io_queues=4)
    message = str(explain(_refusal(ipo, in_data), asked))
    assert said in message
    assert message.startswith("Connect (queue 1) failed: Connect Invalid Parameters")
    # The offset only as the last words, once.
    where = "Connect data" if in_data else "Connect command"
    assert message.endswith(f"(invalid parameter at byte {ipo} of the {where})")
    assert message.count("byte") == 1


def test_other_failures_are_left_as_they_are():
    e = CommandFailed("Connect failed: Connect Invalid Host", make_status(1, 0x84, dnr=True))
    assert str(explain(e, Asked("s", "h", "i"))) == "Connect failed: Connect Invalid Host"


def test_unknown_subsystem_is_named(capsys, target):
    rc, out, err = cli(capsys, "identify", "-q", HOST, target, "nqn.2014-08.org.example:nope")
    assert rc == X.EX_IOERR and out == ""
    assert "SUBNQN: the controller does not offer subsystem NQN " \
           "'nqn.2014-08.org.example:nope'" in err
    assert err.count("\n") == 1


# --- identify, logpage, disconnect ---------------------------------------------------------

def test_identify_missing_namespace_is_no_such_namespace(capsys, target):
    rc, out, err = cli(capsys, "identify", "-n", "7", "-q", HOST, target, SUBNQN)
    assert rc == X.EX_NOINPUT and out == ""
    assert "no such namespace" in err and err.count("\n") == 1
    rc, out, err = cli(capsys, "identify", "-n", "1", "-q", HOST, target, SUBNQN)
    assert rc == 0, err


def test_logpage_smart_per_namespace_honours_lpa(capsys, target):
    # nvmfd leaves LPA bit 0 (SMART per namespace) clear, as FreeBSD checks.
    rc, out, err = cli(capsys, "logpage", "-p", "2", "-n", "1", "-q", HOST, target, SUBNQN)
    assert rc == X.EX_UNAVAILABLE and out == ""
    assert "does not support per namespace smart/health information" in err
    rc, out, err = cli(capsys, "logpage", "-p", "2", "-n", "0xffffffff", "-q", HOST, target,
                       SUBNQN)
    assert rc == 0, err


def test_session_namespace_spellings_get_the_same_answers(capsys, target):
    """The issue's own spellings: identify nvmeu0ns7, logpage -p 2 nvmeu0ns1."""
    rc, _out, err = cli(capsys, "connect", "--backend", "nbd", "--no-attach", "-q", HOST,
                        target, SUBNQN)
    assert rc == 0, err
    try:
        for argv in (["identify", "nvmeu0ns7"], ["identify", "-n", "0x7", "nvmeu0"]):
            rc, out, err = cli(capsys, *argv)
            assert (rc, out) == (X.EX_NOINPUT, "") and err.count("\n") == 1
            assert "no such namespace" in err
        rc, out, err = cli(capsys, "logpage", "-p", "2", "nvmeu0ns1")
        assert (rc, out) == (X.EX_UNAVAILABLE, "")
        assert "does not support per namespace smart/health information" in err
        rc, out, err = cli(capsys, "logpage", "-p", "2", "nvmeu0")
        assert rc == 0 and out.startswith("SMART/Health Information Log\n"), err
    finally:
        assert cli(capsys, "disconnect", "nvmeu0")[0] == 0


def test_logpage_help_goes_to_stderr_as_usage(capsys):
    rc, out, err = cli(capsys, "logpage", "-v", "help")
    assert rc == X.EX_USAGE and out == ""
    assert "Page Name" in err and "Health/SMART Data" in err


@pytest.mark.parametrize("argv, said", [
    (["logpage", "-p", "2", "-x", "-o", "json", "nvmeu0"], "-x cannot be combined with -o json"),
    (["logpage", "-p", "2", "-b", "-o", "json", "nvmeu0"], "-b cannot be combined with -o json"),
    (["logpage", "-v", "help", "-o", "json"], "-v help cannot be combined with -o json"),
    (["identify", "-x", "-o", "json", "nvmeu0"], "-x cannot be combined with -o json"),
])
def test_text_only_options_with_json_are_usage(capsys, argv, said):
    rc, out, err = cli(capsys, *argv)
    assert (rc, out, err) == (X.EX_USAGE, "", f"nvmecontrol: {said}\n")


@pytest.mark.parametrize("name", ["nvme0", "nvme3n1", "/dev/nvme0", "nvmeu9", "nvmeu0ns2"])
def test_disconnect_unknown_device_is_not_found(capsys, name):
    rc, out, err = cli(capsys, "disconnect", name)
    assert rc == X.EX_NOINPUT and out == ""
    assert "neither" not in err and "devlist" in err and err.count("\n") == 1


# --- connect --backend auto ----------------------------------------------------------------

def test_why_not_kernel_names_the_fix():
    assert "modprobe nvme-tcp" in backend_choice.why_not_kernel("linux")
    assert "/dev/nvmf" in backend_choice.why_not_kernel("freebsd14")


def test_auto_says_why_it_chose_a_session(capsys, target, monkeypatch):
    from nvmecontrol.backends.freebsd.backend import FreeBsdBackend
    from nvmecontrol.backends.linux import LinuxKernelBackend
    from nvmecontrol.backends.userspace import attach

    monkeypatch.setattr(LinuxKernelBackend, "available", classmethod(lambda cls: False))
    monkeypatch.setattr(FreeBsdBackend, "available", classmethod(lambda cls: False))
    monkeypatch.setattr(attach, "kernel_has_nbd", lambda: False)
    rc, out, err = cli(capsys, "connect", "-q", HOST, target, SUBNQN)
    try:
        assert rc == 0, err
        lines = err.splitlines()
        assert [l for l in lines if "using a userspace NBD session" in l] == [
            f"nvmecontrol: using a userspace NBD session: {backend_choice.why_not_kernel()}"]
        assert any("not attached to /dev/nbdX" in l and "modprobe nbd" in l for l in lines)
        assert out.startswith("nvmeu0: connected to")
    finally:
        assert cli(capsys, "disconnect-all")[0] == 0
    # Asked for NBD explicitly: nothing to explain.
    rc, out, err = cli(capsys, "connect", "--backend", "nbd", "-q", HOST, target, SUBNQN)
    try:
        assert rc == 0 and err == "", err
    finally:
        assert cli(capsys, "disconnect-all")[0] == 0
