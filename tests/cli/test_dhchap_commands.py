"""gen-dhchap-key, check-dhchap-key and the --dhchap-* options, in process."""

from __future__ import annotations

import json

import pytest

from nvmecontrol.cli import exitcodes as X
from nvmecontrol.cli.app import main
from nvmecontrol.wire.dhchap_key import parse_secret

S32 = bytes(range(32)).hex()
NQN = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555"
NVME_CLI_01 = "DHHC-1:01:bOHk6jHoMxpP5YJr/eF6XNOGuPAzh0iRniebpsVb9ydqVuR5:"


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_gen_matches_nvme_cli(capsys):
    assert run(capsys, "gen-dhchap-key", "-s", S32, "-m", "1", "-n", NQN) == (0, NVME_CLI_01 + "\n", "")


def test_gen_random_defaults(capsys):
    rc, out, err = run(capsys, "gen-dhchap-key", "--hmac", "3", "-n", NQN)
    assert rc == 0 and err == ""
    key = parse_secret(out.strip())
    assert key.transform == 3 and len(key.secret) == 64
    rc, out, _ = run(capsys, "gen-dhchap-key", "-o", "json")
    assert json.loads(out)["key_length"] == 32 and json.loads(out)["hmac"] == 0


@pytest.mark.parametrize("argv,phrase", [
    (("-l", "40"), "key length 40"),
    (("-m", "1", "-l", "48", "-n", NQN), "does not match HMAC 1"),
    (("-m", "7",), "HMAC 7"),
    (("-s", "xyz"), "not hexadecimal"),
    (("-s", "00" * 16), "32, 48 or 64"),
])
def test_gen_refuses(capsys, argv, phrase):
    rc, out, err = run(capsys, "gen-dhchap-key", *argv)
    assert rc == X.EX_USAGE and out == "" and phrase in err and err.count("\n") == 1


def test_check_valid(capsys):
    rc, out, err = run(capsys, "check-dhchap-key", "-k", NVME_CLI_01)
    assert (rc, out, err) == (0, "Key is valid (HMAC 1, length 32, CRC 79e4566a)\n", "")
    rc, out, _ = run(capsys, "check-dhchap-key", "--key", NVME_CLI_01, "-o", "json")
    assert json.loads(out) == {"valid": True, "hmac": 1, "key_length": 32, "crc": "79e4566a"}


def test_check_bad(capsys):
    bad = NVME_CLI_01[:-2] + "6:"
    rc, out, err = run(capsys, "check-dhchap-key", "-k", bad)
    assert rc == X.EX_USAGE and out == "" and "CRC mismatch" in err


@pytest.mark.parametrize("command", [["identify", "127.0.0.1:9", "nqn.a:b"],
                                     ["discover", "127.0.0.1:9"],
                                     ["connect", "127.0.0.1:9", "nqn.a:b"]])
def test_malformed_secret_is_refused_before_any_connection(capsys, command):
    rc, out, err = run(capsys, *command, "--dhchap-secret", NVME_CLI_01[:-3] + "AA:")
    assert rc == X.EX_USAGE and "--dhchap-secret" in err and "CRC" in err


def test_ctrl_secret_needs_a_host_secret(capsys):
    rc, out, err = run(capsys, "identify", "127.0.0.1:9", "nqn.a:b", "--dhchap-ctrl-secret",
                       NVME_CLI_01)
    assert rc == X.EX_USAGE and "needs --dhchap-secret" in err


def test_each_authentication_failure_has_its_own_exit_status():
    from nvmecontrol.cli.exitcodes import exit_code_for
    from nvmecontrol.wire import auth as A

    codes = {cls: exit_code_for(A.auth_error(cls, "x", "host", 1))
             for cls in (A.HostKeyRejected, A.ControllerAuthFailed, A.AuthUnsupported,
                         A.AuthKeyMissing)}
    assert codes == {A.HostKeyRejected: X.EX_NOPERM, A.ControllerAuthFailed: X.EX_PROTOCOL,
                     A.AuthUnsupported: X.EX_UNAVAILABLE, A.AuthKeyMissing: X.EX_USAGE}
