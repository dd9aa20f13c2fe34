"""The man pages are clean mdoc and render.

``mandoc -Tlint -Wstyle`` must say nothing, except "referenced manual not
found": that message depends on which other pages this machine has
installed (nvmetcli(8), nvmf(4) ...), not on ours.  ``man -l`` (groff
through man-db) must render without warnings, and so must ``mandoc -Tutf8``.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

MAN = Path(__file__).resolve().parents[2] / "man"
PAGES = ["nvmecontrol.8", "nvmfd.8"]
MACHINE_DEPENDENT = ("referenced manual not found", "mandoc.db")


def _run(argv) -> subprocess.CompletedProcess:
    env = dict(os.environ, MANPAGER="cat", PAGER="cat", MANWIDTH="80", LC_ALL="C.UTF-8")
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("page", PAGES)
def test_mandoc_lint_is_silent(page, require_tool):
    mandoc = require_tool("mandoc", "mandoc")
    p = _run([mandoc, "-Tlint", "-Wstyle", str(MAN / page)])
    messages = [line for line in (p.stdout + p.stderr).splitlines()
                if not any(m in line for m in MACHINE_DEPENDENT)]
    assert messages == []


@pytest.mark.parametrize("page", PAGES)
def test_mandoc_renders(page, require_tool):
    mandoc = require_tool("mandoc", "mandoc")
    p = _run([mandoc, "-Tutf8", str(MAN / page)])
    assert (p.returncode, p.stderr) == (0, "")
    text = re.sub(".\x08", "", p.stdout)  # bold and underline are overstruck off a terminal
    name = page.split(".")[0]
    assert f"{name.upper()}(8)" in text
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "EXIT STATUS", "EXAMPLES", "SEE ALSO"):
        assert f"\n{section}\n" in text


@pytest.mark.parametrize("page", PAGES)
def test_man_l_renders(page, require_tool):
    man = require_tool("man", "man-db")
    p = _run([man, "-l", str(MAN / page)])
    assert (p.returncode, p.stderr) == (0, "")
    assert "SYNOPSIS" in p.stdout and page.split(".")[0] in p.stdout
