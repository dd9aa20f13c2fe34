"""``python3 -m nvmecontrol.install_extras`` and the wheel that carries its files.

Installing into a temporary prefix puts each file where its consumer looks;
a wheel built by ``pip wheel`` holds the man pages and completions as
package data, and install_extras run from that wheel alone finds them there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from nvmecontrol import install_extras

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted([*(REPO / "man").iterdir(), *(REPO / "completions").iterdir()])
INSTALLED = [
    "share/man/man8/nvmecontrol.8",
    "share/man/man8/nvmfd.8",
    "share/bash-completion/completions/nvmecontrol",
    "share/bash-completion/completions/nvmfd",
    "share/zsh/site-functions/_nvmecontrol",
    "share/zsh/site-functions/_nvmfd",
    "share/fish/vendor_completions.d/nvmecontrol.fish",
    "share/fish/vendor_completions.d/nvmfd.fish",
]


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_installs_every_file_into_the_prefix(tmp_path, capsys):
    assert install_extras.main(["--prefix", str(tmp_path)]) == 0
    assert files_under(tmp_path) == sorted(INSTALLED)
    assert (tmp_path / "share/zsh/site-functions/_nvmfd").read_bytes() == \
        (REPO / "completions/_nvmfd").read_bytes()
    assert (tmp_path / "share/man/man8/nvmecontrol.8").stat().st_mode & 0o777 == 0o644
    assert capsys.readouterr().out.count("installed ") == len(INSTALLED)


def test_every_source_file_is_installed():
    sources = {src.resolve() for src, _dst in install_extras.plan("/p", REPO)}
    assert sources == {p.resolve() for p in SOURCES}


def test_dry_run_writes_nothing(tmp_path, capsys):
    assert install_extras.main(["--prefix", str(tmp_path / "p"), "--dry-run"]) == 0
    assert not (tmp_path / "p").exists()
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(INSTALLED) and all(line.startswith("would install ") for line in out)


def test_default_prefix_is_usr_local(capsys):
    assert install_extras.main(["--dry-run"]) == 0
    assert " -> /usr/local/share/man/man8/nvmecontrol.8" in capsys.readouterr().out


def test_unwritable_prefix_is_a_permission_error(tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert install_extras.main(["--prefix", str(locked)]) == install_extras.EX_NOPERM
    assert "permission denied" in capsys.readouterr().err


def test_runs_as_a_module(tmp_path):
    p = subprocess.run([sys.executable, "-m", "nvmecontrol.install_extras", "--prefix",
                        str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stderr) == (0, "")
    assert files_under(tmp_path) == sorted(INSTALLED)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Build from a copy: the checkout is being edited by others, and a build
    # leaves build/ and egg-info behind.
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("nvmecontrol", "man", "completions"):
        shutil.copytree(REPO / name, src / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "_extras"))
    out = tmp_path_factory.mktemp("wheel")
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out),
                        str(src)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    (whl,) = out.glob("nvmecontrol-*.whl")
    return whl


@pytest.mark.slow
def test_wheel_carries_man_pages_and_completions(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"nvmecontrol/_extras/{p.parent.name}/{p.name}" for p in SOURCES}
    assert expected - names == set()


@pytest.mark.slow
def test_install_extras_from_the_wheel_alone(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # a pure-Python wheel installs by unpacking
    # -S: no site-packages, so only the unpacked wheel (and the stdlib) can be imported.
    p = subprocess.run([sys.executable, "-S", "-m", "nvmecontrol.install_extras",
                        "--prefix", str(tmp_path / "prefix")], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path, env={"PYTHONPATH": str(site)})
    assert (p.returncode, p.stderr) == (0, "")
    assert str(site / "nvmecontrol" / "_extras") in p.stdout
    assert files_under(tmp_path / "prefix") == sorted(INSTALLED)
