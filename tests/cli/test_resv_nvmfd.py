"""``nvmecontrol resv`` against nvmfd: two hosts competing for one namespace, by address."""

from __future__ import annotations

import json

import pytest

from nvmecontrol.cli import exitcodes as X

from .clikit import cli, one_namespace_target

SUBNQN = "nqn.2014-08.org.example:resv"
A = ("nqn.2014-08.org.nvmexpress:uuid:11111111-2222-4333-8444-555555555555",
     "11111111-2222-4333-8444-555555555555")
B = ("nqn.2014-08.org.nvmexpress:uuid:66666666-7777-4888-9999-aaaaaaaaaaaa",
     "66666666-7777-4888-9999-aaaaaaaaaaaa")


@pytest.fixture
def target(nvmfd_factory):
    return one_namespace_target(nvmfd_factory, SUBNQN)


def resv(capsys, target, host, *args):
    return cli(capsys, "resv", *args, "-q", host[0], "-I", host[1], "-n", "1", target, SUBNQN)


def test_two_hosts_register_acquire_report_release(capsys, target):
    assert resv(capsys, target, A, "register", "-k", "0xa1") == (0, "", "")
    assert resv(capsys, target, B, "register", "--nrkey", "0xb2")[0] == 0
    assert resv(capsys, target, A, "acquire", "-c", "0xa1", "-t", "1") == (0, "", "")

    rc, out, err = resv(capsys, target, B, "report", "-e")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[:4] == ["Generation:                       2",
                         "Reservation Type:                 1",
                         "Number of Registered Controllers: 2",
                         "Persist Through Power Loss State: 0"]
    # FreeBSD prints each 64-bit half of the host identifier as a little-endian number.
    assert "  Reservation Key:                0x000000a1" in lines
    assert "  Host Identifier:                0x33432222111111115555555555554484" in lines

    rc, out, err = resv(capsys, target, A, "report", "-e", "-o", "json")
    assert rc == 0, err
    st = json.loads(out)
    assert (st["nsid"], st["rtype"], st["rtype_name"], st["regctl"]) == \
        (1, 1, "write-exclusive", 2)
    by_host = {c["hostid"]: c for c in st["controllers"]}
    assert by_host[A[1].replace("-", "")]["holder"] is True
    assert by_host[A[1].replace("-", "")]["rkey"] == 0xA1
    assert by_host[B[1].replace("-", "")]["holder"] is False

    # B may not take A's reservation, nor release it with a wrong key.
    rc, out, err = resv(capsys, target, B, "acquire", "-c", "0xb2", "-t", "1")
    assert (rc, out) == (X.EX_IOERR, "")
    assert "Reservation Acquire failed: Reservation Conflict" in err and len(err.splitlines()) == 1
    rc, _, err = resv(capsys, target, A, "release", "-c", "0xdead", "-t", "1")
    assert rc == X.EX_IOERR and "Reservation Conflict" in err

    # B preempts A (acquire -a 1 with A's key), then releases.
    assert resv(capsys, target, B, "acquire", "-c", "0xb2", "-p", "0xa1", "-t", "2",
                "-a", "1")[0] == 0
    rc, out, _ = resv(capsys, target, B, "report", "-e", "-o", "json")
    st = json.loads(out)
    assert (st["rtype"], st["regctl"]) == (2, 1)
    assert st["controllers"][0]["hostid"] == B[1].replace("-", "")
    assert resv(capsys, target, B, "release", "-c", "0xb2", "-t", "2", "--rrela", "0",
                "-o", "json")[:2] == (0, '{\n  "action": "release",\n  "nsid": 1,\n'
                                         '  "status": "success"\n}\n')
    rc, out, _ = resv(capsys, target, B, "report", "-e", "-o", "json")
    assert json.loads(out)["rtype"] == 0
    # Unregister (-r 1) with the current key.
    assert resv(capsys, target, B, "register", "-c", "0xb2", "-r", "1")[0] == 0


def test_report_without_eds_says_why(capsys, target):
    rc, out, err = resv(capsys, target, A, "report")
    assert (rc, out) == (X.EX_IOERR, "")
    assert "Host Identifier Inconsistent Format" in err and "-e" in err


def test_report_hex(capsys, target):
    assert resv(capsys, target, A, "register", "-k", "7")[0] == 0
    rc, out, err = resv(capsys, target, A, "report", "-e", "-x")
    assert rc == 0, err
    # 64-byte header and one 64-byte entry; trailing zeros are cut, as FreeBSD does.
    assert out.splitlines()[0].startswith("000: 00000001 ")
    assert len([ln for ln in out.splitlines() if ln]) == 3  # the entry's reserved tail too
    rc, out, _ = resv(capsys, target, A, "report", "-e", "-x", "-v")
    assert len([ln for ln in out.splitlines() if ln]) == 4096 // 32


@pytest.mark.parametrize("args, message", [
    (["reserve", "-c", "1"], "unknown resv command 'reserve'"),
    (["acquire", "-k", "1"], "resv acquire takes no -k/--nrkey"),
    (["report", "-c", "1"], "resv report takes no -c/--crkey"),
    (["release", "-p", "1"], "resv release takes no -p"),
    (["register", "-p", "1"], "CPTPL 1"),
    (["register", "-p", "2", "--cptpl", "2"], "-p is --prkey or --cptpl"),
    (["report", "-e", "-x", "-o", "json"], "-x cannot be combined with -o json"),
    (["acquire", "-c", "0x1ffffffffffffffff"], "not in the range"),
    (["acquire", "-t", "1x"], "is not a number"),
])
def test_bad_input(capsys, target, args, message):
    rc, out, err = resv(capsys, target, A, *args)
    assert (rc, out) == (X.EX_USAGE, "")
    assert message in err and len(err.splitlines()) == 1


def test_targets_that_name_no_namespace(capsys, target):
    rc, _, err = cli(capsys, "resv", "report", "-e", "-q", A[0], target, SUBNQN)
    assert rc == X.EX_USAGE and "-n NSID" in err
    rc, _, err = cli(capsys, "resv", "report", "-e", target)
    assert rc == X.EX_USAGE and "subsystem NQN" in err
    rc, _, err = cli(capsys, "resv", "report", "-e", "nvme0")
    assert rc == X.EX_USAGE and "name a namespace" in err
    rc, _, err = cli(capsys, "resv", "report", "-e", "nvme0n1", SUBNQN)
    assert rc == X.EX_USAGE
    rc, _, err = cli(capsys, "resv", "report", "-e", "-n", "2", "/dev/nvme0n1")
    assert rc == X.EX_USAGE and "-n" in err


def test_inactive_namespace(capsys, target):
    rc, _, err = cli(capsys, "resv", "report", "-e", "-q", A[0], "-n", "9", target, SUBNQN)
    assert rc == X.EX_IOERR and "Invalid Namespace" in err
