"""One exit-status table for both programs, and man pages that list exactly what each uses.

"Used" is read from the source: every ``EX_*`` name a program's modules
read (``nvmecontrol/cli`` for nvmecontrol, ``nvmecontrol/target`` for
nvmfd), plus 0.  A status the code starts using without the man page
saying so, or one the man page documents that the code no longer returns,
fails here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from nvmecontrol import exitcodes

PKG = Path(__file__).resolve().parents[1] / "nvmecontrol"
MAN = PKG.parent / "man"
PROGRAMS = {"nvmecontrol": PKG / "cli", "nvmfd": PKG / "target"}


def statuses_used(source: Path) -> dict[str, int]:
    """The EX_* names read by the modules under ``source`` (success included)."""
    used = {"EX_OK": exitcodes.EX_OK}
    for path in source.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            name = node.id if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) \
                else node.attr if isinstance(node, ast.Attribute) else None
            if name and name.startswith("EX_"):
                used[name] = getattr(exitcodes, name)  # AttributeError: not in the table
    return used


def man_statuses(program: str) -> dict[int, str | None]:
    """``.It 64 Pq Dv EX_USAGE`` items of EXIT STATUS: status -> name (None when unnamed)."""
    text = (MAN / f"{program}.8").read_text()
    section = re.search(r"^\.Sh EXIT STATUS\n(.*?)(?=^\.Sh |\Z)", text, re.M | re.S)
    assert section, f"{program}.8 has no EXIT STATUS section"
    return {int(n): name or None
            for n, name in re.findall(r"^\.It (\d+)(?: Pq Dv (EX_\w+))?", section.group(1), re.M)}


def test_the_table_is_sysexits():
    # The values of FreeBSD's <sysexits.h>: a typo here would change both programs.
    assert (exitcodes.EX_USAGE, exitcodes.EX_NOINPUT, exitcodes.EX_NOHOST,
            exitcodes.EX_UNAVAILABLE, exitcodes.EX_SOFTWARE, exitcodes.EX_OSERR,
            exitcodes.EX_CANTCREAT, exitcodes.EX_IOERR, exitcodes.EX_TEMPFAIL,
            exitcodes.EX_PROTOCOL, exitcodes.EX_NOPERM, exitcodes.EX_CONFIG) == \
        (64, 66, 68, 69, 70, 71, 73, 74, 75, 76, 77, 78)
    assert len(exitcodes.NAMES) == len(set(exitcodes.NAMES.values()))  # no two names share one


def test_both_programs_take_their_statuses_from_the_table():
    from nvmecontrol.cli import exitcodes as cli
    from nvmecontrol.target import main as nvmfd

    for module in (cli, nvmfd):
        for name in dir(module):
            if name.startswith("EX_"):
                assert getattr(module, name) == getattr(exitcodes, name), (module, name)
    # Defined once: neither assigns a number of its own.
    for path in (PKG / "cli" / "exitcodes.py", PKG / "target" / "main.py"):
        assert _assigned_statuses(path) == [], path


def _assigned_statuses(path: Path) -> list[str]:
    return [t.id for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Assign) for t in node.targets
            if isinstance(t, ast.Name) and t.id.startswith("EX_")]


@pytest.mark.parametrize("module, path", [
    ("nvmecontrol.cli.entry", PKG / "cli" / "entry.py"),
    ("nvmecontrol.install_extras", PKG / "install_extras.py"),
])
def test_what_runs_first_reads_the_table_too(module, path):
    # The console entry point and the installer run before anything else is
    # loaded; the table imports nothing, so they read it rather than copy it.
    import importlib

    mod = importlib.import_module(module)
    named = [n for n in vars(mod) if n.startswith("EX_")]
    assert named and all(getattr(mod, n) == getattr(exitcodes, n) for n in named)
    assert _assigned_statuses(path) == []


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_man_page_lists_exactly_the_statuses_used(program):
    used = statuses_used(PROGRAMS[program])
    listed = man_statuses(program)
    assert sorted(listed) == sorted(set(used.values()))
    # Named as sysexits names them (the interrupt and success have no name).
    for code, name in listed.items():
        assert name == (exitcodes.NAMES[code] if code not in (0, 130) else None), code


def test_the_scan_sees_what_it_claims(tmp_path):
    (tmp_path / "a.py").write_text("from x import EX_IOERR\ndef f(X):\n"
                                   "    return X.EX_NOHOST if f else EX_IOERR\n")
    assert statuses_used(tmp_path) == {"EX_OK": 0, "EX_NOHOST": 68, "EX_IOERR": 74}
    (tmp_path / "b.py").write_text("def g():\n    return EX_NOSUCH\n")
    with pytest.raises(AttributeError):
        statuses_used(tmp_path)
