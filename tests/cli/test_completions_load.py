"""The completion scripts load cleanly in bash, zsh and fish and offer the subcommands.

bash and fish are asked without a terminal (``complete -p``, ``complete -C``);
zsh has no such query, so a pexpect-driven ``zsh -f -i`` presses TAB.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMPLETIONS = REPO / "completions"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x07\r]")

# (command, what is typed, what must be offered)
CASES = [
    ("nvmecontrol", "con", {"connect", "connect-all"}),
    ("nvmfd", "ns-", {"ns-add", "ns-remove"}),
]


def run(argv, tmp_path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LC_ALL": "C.UTF-8"}
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)


@pytest.mark.parametrize("command", ["nvmecontrol", "nvmfd"])
def test_bash_loads(command, tmp_path, require_tool):
    bash = require_tool("bash", "bash")
    p = run([bash, "--norc", "--noprofile", "-c",
             f"source {COMPLETIONS}/{command}.bash && complete -p {command}"], tmp_path)
    assert (p.returncode, p.stderr) == (0, "")
    assert f"-F _{command} {command}" in p.stdout


@pytest.mark.parametrize("command", ["nvmecontrol", "nvmfd"])
def test_zsh_loads_by_source(command, tmp_path, require_tool):
    zsh = require_tool("zsh", "zsh")
    p = run([zsh, "-f", "-c",
             f"autoload -U compinit; compinit -u -d {tmp_path}/zcompdump; "
             f"source {COMPLETIONS}/_{command}; print -r -- $_comps[{command}]"], tmp_path)
    assert (p.returncode, p.stderr) == (0, "")
    assert p.stdout.strip() == f"_{command}"


@pytest.mark.parametrize("command,typed,offered", CASES)
def test_zsh_offers_subcommands_from_fpath(command, typed, offered, tmp_path, require_tool):
    pexpect = pytest.importorskip("pexpect")
    zsh = require_tool("zsh", "zsh")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TERM": "dumb", "LC_ALL": "C.UTF-8"}
    child = pexpect.spawn(zsh, ["-f", "-i"], env=env, cwd=str(tmp_path), encoding="utf-8",
                          timeout=10, dimensions=(60, 300))
    try:
        child.sendline(f"fpath=({COMPLETIONS} $fpath); autoload -U compinit; "
                       f"compinit -u -d {tmp_path}/zcompdump; unsetopt beep; PS1='ZT> '")
        child.expect_exact("ZT> ")
        child.send(f"{command} {typed}\t\t")
        screen = ""
        deadline = time.monotonic() + 10
        while not offered <= set(ANSI.sub("", screen).split()):
            if time.monotonic() > deadline:
                pytest.fail(f"zsh offered no {offered} for {command} {typed}: {screen!r}")
            try:
                screen += child.read_nonblocking(65536, timeout=0.2)
            except pexpect.TIMEOUT:
                pass
        assert f"_{command}:" not in screen  # how zsh reports an error in a function
    finally:
        child.close(force=True)


@pytest.mark.parametrize("command,typed,offered", CASES)
def test_fish_loads_and_offers_subcommands(command, typed, offered, tmp_path, require_tool):
    fish = require_tool("fish", "fish")
    p = run([fish, "--no-config", "-c",
             f"source {COMPLETIONS}/{command}.fish; complete -C '{command} {typed}'"], tmp_path)
    assert (p.returncode, p.stderr) == (0, "")
    assert {line.split("\t")[0] for line in p.stdout.splitlines()} == offered
