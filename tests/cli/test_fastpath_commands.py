"""The commands the start-up fast path runs print, fail and exit as on the typer path.

Each command line runs twice in this process: through ``fastpath.run_command``
(argv_parser and the command's body, no typer) and through ``app.main``
(typer's signature, the same body).  Both must give the same status, stdout
and stderr; and the fast path must take every line of the corpus (none of
them is an odd spelling it leaves to typer).  Lines that end at once: no
such device, nothing listening, a usage error, a key made from a given
secret.
"""

from __future__ import annotations

import pytest

from nvmecontrol.cli import fastpath
from nvmecontrol.cli.app import main
from nvmecontrol.cli.fast_commands import BODIES

KEY = "DHHC-1:00:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:"
SECRET = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:4e1a3b2c-0000-4000-8000-000000000001"
HOSTID = "4e1a3b2c-0000-4000-8000-000000000001"

CORPUS = [
    ["devlist"], ["devlist", "-o", "json"], ["devlist", "-v", "-h"],
    ["identify", "nvme9"], ["identify", "-x", "-o", "json", "nvme9"],
    ["identify", "nvmeu9", "-n", "0x1"], ["identify", "/dev/nvme9n1", "-x", "-v"],
    ["identify", "127.0.0.1:1", "nqn.x", "--timeout", "2", "--dhchap-ctrl-secret", KEY],
    ["identify", "127.0.0.1:1", "--dhchap-secret", "DHHC-1:00:bad:"],
    ["logpage", "-p", "2", "nvme9"], ["logpage", "-v", "help"], ["logpage", "nvme9"],
    ["logpage"], ["logpage", "-p", "2"], ["logpage", "-p", "2", "-x", "-b", "nvme9"],
    ["logpage", "-p", "2", "-x", "-o", "json", "nvme9"], ["logpage", "-p", "bogus", "nvme9"],
    ["logpage", "-p", "smart", "-n", "0xffffffff", "nvmeu9"],
    ["discover", "127.0.0.1:1"], ["discover", "127.0.0.1:1", "-o", "json", "-v"],
    ["discover", "-t", "rdma", "127.0.0.1:1"], ["discover", "127.0.0.1:1", "-q", "not an nqn"],
    ["hostnqn", "-q", HOSTNQN, "--hostid", HOSTID], ["hostnqn", "-q", HOSTNQN, "-o", "json"],
    ["hostnqn", "--hostid", "not-a-uuid", "-q", HOSTNQN],
    ["gen-dhchap-key", "-s", SECRET], ["gen-dhchap-key", "-s", SECRET, "-m", "1", "-n", HOSTNQN],
    ["gen-dhchap-key", "-s", SECRET, "-o", "json"], ["gen-dhchap-key", "-s", "xyz"],
    ["gen-dhchap-key", "-l", "7"], ["gen-dhchap-key", "-m", "9"],
    ["check-dhchap-key", "-k", KEY], ["check-dhchap-key", "-k", KEY, "-o", "json"],
    ["check-dhchap-key", "-k", "DHHC-1:00:bad:"],
]


@pytest.fixture(autouse=True)
def _private_runtime(tmp_path, monkeypatch):
    monkeypatch.setenv("NVMECONTROL_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("NVMECONTROL_DEBUG", raising=False)


@pytest.mark.parametrize("argv", CORPUS, ids=" ".join)
def test_fast_path_is_the_typer_path(argv, capsys):
    if argv[0] not in BODIES:
        pytest.fail(f"{argv[0]} is not run by the fast path")
    fast = fastpath.run_command(argv[0], argv[1:])
    fast_out, fast_err = capsys.readouterr()
    assert fast is not None, f"the fast path declined {argv}"
    slow = main(argv)
    slow_out, slow_err = capsys.readouterr()
    assert (fast, fast_out, fast_err) == (slow, slow_out, slow_err)
    assert "Traceback" not in fast_err


def test_the_commands_the_bench_runs_take_the_fast_path():
    from bench.startup import COMMANDS

    ran = {args[0] for _name, program, args in COMMANDS
           if program == "nvmecontrol" and "--help" not in args}
    assert ran <= set(BODIES)
