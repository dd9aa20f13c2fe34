"""What TAB offers in a real interactive bash with completions/nvmecontrol.bash.

pexpect drives ``bash --norc --noprofile -i``; device names come from a fake
runtime directory and a fake sysfs, NQNs from a fake discovery cache, and
a ``python``/``nvmecontrol`` on PATH that leaves a mark proves that TAB
runs none of them.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from nvmecontrol.cli.logpage import PAGE_NAMES, known_pages

pexpect = pytest.importorskip("pexpect")

REPO = Path(__file__).resolve().parents[2]
PROMPT = "TABTEST> "
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x07\r]")
NQN0 = "nqn.2014-08.org.example:disk0"
NQN1 = "nqn.2014-08.org.example:disk1"
SOLO = "nqn.2014-08.org.example:solo"


class Bash:
    def __init__(self, child):
        self.child = child

    def complete(self, text: str, *expected: str) -> str:
        """Type ``text`` and TAB; wait until every ``expected`` word shows;
        return the screen text up to the next prompt (the line is then
        cleared with Ctrl-C).  show-all-if-ambiguous makes one TAB list
        what two TABs list by default."""
        self.child.send(text + "\t")
        seen = ""
        deadline = time.monotonic() + 10
        while not all(self._has(seen, word) for word in expected):
            if time.monotonic() > deadline:
                pytest.fail(f"{text!r}<TAB>: expected {expected}, screen: {seen!r}")
            try:
                seen += self.child.read_nonblocking(65536, timeout=0.2)
            except pexpect.TIMEOUT:
                pass
        time.sleep(0.3)  # a listing may still be arriving
        try:
            seen += self.child.read_nonblocking(65536, timeout=0.2)
        except pexpect.TIMEOUT:
            pass
        self.child.send("\x03")
        self.child.expect_exact(PROMPT)
        return ANSI.sub("", seen + self.child.before)

    @staticmethod
    def _has(screen: str, word: str) -> bool:
        return word in words(ANSI.sub("", screen))


def words(screen: str) -> set[str]:
    """The blank-separated words on the screen, and each word's part after a ":"
    (readline lists only that part of NQNs once the word has a colon)."""
    found = set(screen.replace("^C", " ").split())
    return found | {w.rsplit(":", 1)[1] for w in found if ":" in w}


@pytest.fixture
def bash(tmp_path, require_tool):
    shell = require_tool("bash", "bash")
    runtime = tmp_path / "run"
    (runtime / "nvmeu3").mkdir(parents=True)
    (runtime / "nvmeu3" / "namespaces").write_text("1\n2\n")
    (runtime / "log").mkdir()  # not a session: never offered
    sysfs = tmp_path / "sys"
    (sysfs / "class" / "nvme" / "nvme0" / "nvme0n1").mkdir(parents=True)
    cache = tmp_path / "cache"
    discovery = cache / "nvmecontrol" / "discovery"
    discovery.mkdir(parents=True)
    (discovery / "192.0.2.10_4420").write_text(f"{NQN0}\n{NQN1}\n")
    (discovery / "192.0.2.20_4420").write_text(f"{SOLO}\n")
    (discovery / "_2001_db8__1__4420").write_text(f"{SOLO}\n")
    # Anything TAB might wrongly start leaves a mark.
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    mark = tmp_path / "spawned"
    for name in ("python", "python3", "nvmecontrol", "nvmfd"):
        (fakebin / name).write_text(f"#!/bin/sh\necho {name} >> {mark}\n")
        (fakebin / name).chmod(0o755)
    env = {
        "PATH": f"{fakebin}:/usr/bin:/bin", "HOME": str(tmp_path), "TERM": "dumb",
        "INPUTRC": "/dev/null", "LC_ALL": "C.UTF-8",
        "NVMECONTROL_RUNTIME_DIR": str(runtime), "NVMECONTROL_SYSFS_ROOT": str(sysfs),
        "XDG_CACHE_HOME": str(cache),
    }
    child = pexpect.spawn(shell, ["--norc", "--noprofile", "-i"], env=env, cwd=str(tmp_path),
                          encoding="utf-8", timeout=10, dimensions=(60, 300))
    child.sendline(f"bind 'set enable-bracketed-paste off'; bind 'set bell-style none'; "
                   f"bind 'set show-all-if-ambiguous on'; "
                   f"source {REPO}/completions/nvmecontrol.bash; "
                   f"source {REPO}/completions/nvmfd.bash; PS1='{PROMPT}'")
    child.expect_exact(PROMPT)
    yield Bash(child)
    child.sendline("exit")
    child.close(force=True)
    assert not mark.exists(), f"TAB started {mark.read_text().split()}"


def test_subcommands(bash):
    screen = bash.complete("nvmecontrol di", "discover", "disconnect", "disconnect-all")
    assert not words(screen) & {"connect", "devlist", "identify"}


def test_options_of_a_subcommand(bash):
    screen = bash.complete("nvmecontrol connect --", "--cntlid", "--nr-io-queues", "--backend",
                           "--no-attach", "--flow-control")
    assert "--walk" not in words(screen)  # discover's, not connect's
    assert "--human" not in words(screen)


def test_transport(bash):
    screen = bash.complete("nvmecontrol connect -t ", "tcp")
    assert "nvmecontrol connect -t tcp" in screen


def test_output_format_after_equals(bash):
    screen = bash.complete("nvmecontrol discover --format=j", "--format=json")
    assert "--format=json" in screen and "=json=" not in screen


def test_logpage_pages(bash):
    expected = list(PAGE_NAMES) + [f"0x{int(p):02x}" for p in known_pages()]
    screen = bash.complete("nvmecontrol logpage -p ", *expected)
    assert set(expected) <= words(screen)


def test_devices_from_the_runtime_dir_and_sysfs(bash):
    screen = bash.complete("nvmecontrol identify ", "nvmeu3", "nvmeu3ns1", "nvmeu3ns2", "nvme0",
                           "nvme0n1")
    assert "log" not in words(screen)


def test_devices_for_disconnect_and_reconnect(bash):
    bash.complete("nvmecontrol disconnect nvmeu", "nvmeu3", "nvmeu3ns1")
    bash.complete("nvmecontrol reconnect -i 2 nvmeu", "nvmeu3", "nvmeu3ns2")


def test_nqns_from_the_discovery_cache(bash):
    screen = bash.complete(f"nvmecontrol connect -i 2 192.0.2.10:4420 nqn", "disk0", "disk1")
    assert "nqn.2014-08.org.example:disk" in screen
    assert "example:nqn" not in screen  # the part before ":" is not repeated


def test_a_single_nqn_completes_whole(bash):
    screen = bash.complete("nvmecontrol connect 192.0.2.20:4420 ", SOLO)
    assert f"192.0.2.20:4420 {SOLO}" in screen


def test_nqns_for_an_ipv6_address(bash):
    bash.complete("nvmecontrol connect [2001:db8::1]:4420 ", SOLO)


def test_nqns_after_an_address_for_identify(bash):
    bash.complete("nvmecontrol identify 192.0.2.20:4420 ", SOLO)


def test_nvmfd_subcommands(bash):
    bash.complete("nvmfd ns-", "ns-add", "ns-remove")


def test_resv_actions_then_each_actions_own_options(bash):
    bash.complete("nvmecontrol resv ", "acquire", "register", "release", "report")
    screen = bash.complete("nvmecontrol resv acquire -", "--crkey", "--prkey", "--rtype", "--racqa")
    assert not words(screen) & {"--nrkey", "--eds", "--rrela"}  # other actions' options
    screen = bash.complete("nvmecontrol resv report -", "--eds", "--hex", "--verbose")
    assert not words(screen) & {"--crkey", "--rtype"}


def test_resv_namespaces_and_the_nqn_after_an_address(bash):
    bash.complete("nvmecontrol resv report nvmeu", "nvmeu3ns1", "nvmeu3ns2")
    bash.complete("nvmecontrol resv report -n 1 192.0.2.20:4420 ", SOLO)
