"""Scenario 8: the bad-input table.

Every subcommand that takes an NQN gets it empty, over-long (NQNs are at
most 223 bytes), not UTF-8 (as the real command line hands it to Python:
surrogate escapes), and with control characters; every numeric option gets
out-of-range and non-finite values.  Each row must give exactly one line on
stderr, nothing on stdout, the usage status (64) and no traceback -- before
any connection is tried (the addresses name a closed port, so a missed check
shows as "connection refused", exit 68, instead).

tests/cli/test_cli_errors.py keeps the hand-picked cases of issue 15; this
is the generated cross product.
"""

from __future__ import annotations

import contextlib
import io

import pytest

from nvmecontrol.cli import exitcodes as X
from nvmecontrol.cli.app import main

from .conftest import figures

ADDR = "127.0.0.1:1"  # nothing listens: a check that is missing becomes EX_NOHOST
SUB = "nqn.2014-08.org.example:sub"
HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:5b8c1f6e-2d4a-4c3b-9e7f-0a1b2c3d4e5f"
HOSTID = "5b8c1f6e-2d4a-4c3b-9e7f-0a1b2c3d4e5f"

BAD_NQNS = {
    "empty": "",
    "over-long": "nqn.2014-08.org.example:" + "x" * 220,
    "non-utf8": "nqn.2014-08.org.example:\udcff\udcfe",
    "newline": "nqn.2014-08.org.example:a\nb",
    "tab": "nqn.2014-08.org.example:a\tb",
    "nul": "nqn.2014-08.org.example:a\x00b",
    "escape": "nqn.2014-08.org.example:\x1b[31m",
    "del": "nqn.2014-08.org.example:a\x7fb",
}

# Where an NQN goes, per subcommand: (argv with {nqn}).
NQN_SLOTS = {
    "discover -q": ["discover", "-q", "{nqn}", ADDR],
    "connect SUBNQN": ["connect", "-q", HOSTNQN, "-I", HOSTID, ADDR, "{nqn}"],
    "connect -q": ["connect", "-q", "{nqn}", "-I", HOSTID, ADDR, SUB],
    "connect-all -q": ["connect-all", "-q", "{nqn}", "-I", HOSTID, ADDR],
    "identify SUBNQN": ["identify", "-q", HOSTNQN, "-I", HOSTID, ADDR, "{nqn}"],
    "identify -q": ["identify", "-q", "{nqn}", "-I", HOSTID, ADDR, SUB],
    "logpage SUBNQN": ["logpage", "-p", "2", "-q", HOSTNQN, "-I", HOSTID, ADDR, "{nqn}"],
    "logpage -q": ["logpage", "-p", "2", "-q", "{nqn}", "-I", HOSTID, ADDR, SUB],
    "hostnqn -q": ["hostnqn", "-q", "{nqn}"],
    "gen-dhchap-key -n": ["gen-dhchap-key", "-m", "1", "-n", "{nqn}"],
}

CONNECTING = {
    "connect": ["connect", "-q", HOSTNQN, "-I", HOSTID, "{opt}", "{val}", ADDR, SUB],
    "connect-all": ["connect-all", "-q", HOSTNQN, "-I", HOSTID, "{opt}", "{val}", ADDR],
}
QUERYING = {
    "identify": ["identify", "-q", HOSTNQN, "-I", HOSTID, "{opt}", "{val}", ADDR, SUB],
    "logpage": ["logpage", "-p", "2", "-q", HOSTNQN, "-I", HOSTID, "{opt}", "{val}", ADDR, SUB],
    "discover": ["discover", "-q", HOSTNQN, "-I", HOSTID, "{opt}", "{val}", ADDR],
}
NON_FINITE = ["inf", "-inf", "nan", "1e309", "-1", "-0.5", "0"]
BAD_NUMBERS = {
    "--timeout": (NON_FINITE, {**CONNECTING, **QUERYING}),
    "-k": (["-1", "4294968", "1e3", "inf", "99999999999999999999"], CONNECTING),
    "-l": (["-1", "2147483648", "nan"], CONNECTING),
    "-r": (["-1", "2147483648", "inf"], CONNECTING),
    "-i": (["0", "-1", "65536", "4294967296"], CONNECTING),
    "-Q": (["1", "-1", "65537", "4294967296"], CONNECTING),
    "-n": (["-1", "4294967296", "18446744073709551616", "0x100000000"],
           {"identify": QUERYING["identify"], "logpage": QUERYING["logpage"]}),
    "-c": (["-1", "0xFFF0", "65536", "nan"], {"connect": CONNECTING["connect"]}),
}
OTHER_ROWS = {
    "logpage -p 256": ["logpage", "-p", "256", ADDR, SUB],
    "logpage -p -1": ["logpage", "-p", "-1", ADDR, SUB],
    "logpage -f 128": ["logpage", "-p", "2", "-f", "128", ADDR, SUB],
    "logpage -i 65536": ["logpage", "-p", "2", "-i", "65536", ADDR, SUB],
    "gen-dhchap-key -l 33": ["gen-dhchap-key", "-l", "33"],
    "gen-dhchap-key -m 4": ["gen-dhchap-key", "-m", "4"],
    "gen-dhchap-key -s zz": ["gen-dhchap-key", "-s", "zz"],
    "check-dhchap-key -k junk": ["check-dhchap-key", "-k", "junk"],
    "discover bad address": ["discover", "[::1"],
    "connect -I not-a-uuid": ["connect", "-q", HOSTNQN, "-I", "not-a-uuid", ADDR, SUB],
    "connect --backend bogus": ["connect", "--backend", "bogus", "-q", HOSTNQN, "-I", HOSTID,
                                ADDR, SUB],
    "connect --nbd-listen junk": ["connect", "--nbd-listen", "junk:x", "-q", HOSTNQN, "-I",
                                  HOSTID, ADDR, SUB],
}


def rows():
    for slot, argv in NQN_SLOTS.items():
        for kind, nqn in BAD_NQNS.items():
            yield f"{slot} {kind}", [a.replace("{nqn}", nqn) for a in argv]
    for opt, (values, commands) in BAD_NUMBERS.items():
        for cmd, argv in commands.items():
            for val in values:
                yield f"{cmd} {opt} {val}", [{"{opt}": opt, "{val}": val}.get(a, a)
                                             for a in argv]
    yield from OTHER_ROWS.items()


ROWS = dict(rows())


def run(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def verdict(argv) -> str | None:
    """None when the row is answered as it must be, else what went wrong."""
    rc, out, err = run(argv)
    lines = [line for line in err.splitlines() if "does not match the UUID" not in line]
    if "Traceback" in err:
        return f"traceback (exit {rc})"
    if rc != X.EX_USAGE:
        return f"exit {rc}, not {X.EX_USAGE}: {err.strip()[:120]!r}"
    if out:
        return f"stdout not empty: {out[:80]!r}"
    if len(lines) != 1:
        return f"{len(lines)} lines on stderr: {err[:160]!r}"
    return None


@pytest.mark.parametrize("name", list(ROWS))
def test_bad_input_row(name):
    assert verdict(ROWS[name]) is None, f"{name}: {verdict(ROWS[name])}"


def test_table_figures():
    figures("8 bad-input table", rows=len(ROWS), nqn_rows=len(NQN_SLOTS) * len(BAD_NQNS))
    assert len(ROWS) >= 150
