"""Start-up imports only what the command at hand needs (no timing here: see bench/startup.py).

The real entry point runs in a subprocess and reports ``sys.modules`` when
it exits: ``devlist`` and the help texts start without typer, rich or
pydantic; a subcommand's ``--help`` loads typer but none of the layers
below the CLI; no command loads another subcommand's machinery.  The fast
paths print exactly what the typer path prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from nvmecontrol.cli import fastpath
from nvmecontrol.cli.app import app
from nvmecontrol.cli.argv_parser import parse
from nvmecontrol.cli.fast_commands import DECLARATIONS
from nvmecontrol.cli.commands import SUBCOMMANDS

REPO = Path(__file__).resolve().parents[2]
SUBCOMMAND_MODULES = {s.module for s in SUBCOMMANDS}
BELOW_CLI = ("nvmecontrol.backends", "nvmecontrol.host", "nvmecontrol.transport",
             "nvmecontrol.wire", "nvmecontrol.target")
HEAVY_LIBRARIES = ("typer", "rich", "pydantic", "click")

_PROBE = """
import atexit, json, sys
atexit.register(lambda: open({out!r}, "w").write(json.dumps(sorted(sys.modules))))
sys.argv = ["nvmecontrol", *{argv!r}]
from nvmecontrol.cli.entry import run
run()
"""


@pytest.fixture
def modules_after(tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "NVMECONTROL_RUNTIME_DIR": str(tmp_path / "run"), "COLUMNS": "80"}
    env.pop("NVMECONTROL_DEBUG", None)

    def run(*argv: str) -> set[str]:
        out = tmp_path / "modules.json"
        p = subprocess.run([sys.executable, "-c", _PROBE.format(out=str(out), argv=list(argv))],
                           capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
        # 69 devlist found nothing, 66 no such device, 68 nothing listens there.
        assert p.returncode in (0, 66, 68, 69), p.stderr
        assert "Traceback" not in p.stderr
        return set(json.loads(out.read_text()))
    return run


def warm(modules_after, *argv: str) -> set[str]:
    """The modules of a run that finds its help cached.

    The cache key covers the CLI sources, so an edit made meanwhile in this
    working tree renders afresh once: ask again then.
    """
    for _ in range(3):
        modules = modules_after(*argv)
        if "typer" not in modules:
            break
    return modules


def loaded(modules: set[str], prefixes) -> set[str]:
    return {m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes)}


def test_devlist_loads_no_typer_and_no_other_subcommand(modules_after):
    modules = modules_after("devlist")
    assert loaded(modules, HEAVY_LIBRARIES) == set()
    assert modules & SUBCOMMAND_MODULES == set()  # the work is in cli.listing
    assert "nvmecontrol.cli.listing" in modules
    # Nothing of discover/connect: the discovery log, the host NQN files.
    assert loaded(modules, ("nvmecontrol.host.discovery", "nvmecontrol.cli.render.discovery",
                            "nvmecontrol.cli.render.identify", "nvmecontrol.target")) == set()


def test_devlist_json_takes_the_fast_path_too(modules_after):
    assert loaded(modules_after("devlist", "-o", "json", "--human"), HEAVY_LIBRARIES) == set()


def test_devlist_and_discover_load_no_dataclasses_nor_authentication(modules_after):
    """``import dataclasses`` (inspect, ast, dis) costs about a bare interpreter
    start; DH-HMAC-CHAP (hashlib, hmac, secrets) is for a controller that asks."""
    devlist = modules_after("devlist")
    assert loaded(devlist, ("dataclasses", "inspect", "typing", "socket")) == set()
    discover = modules_after("discover", "127.0.0.1:1")
    assert loaded(discover, ("dataclasses", "inspect", "hashlib", "secrets",
                             "nvmecontrol.wire.auth", "nvmecontrol.wire.dhchap_key")) == set()
    if not os.path.exists("/etc/nvme/config.json"):  # reading it takes pathlib
        assert "pathlib" not in discover


@pytest.mark.parametrize("argv", [["identify", "nvme9"], ["logpage", "-p", "2", "nvme9"]],
                         ids=["identify", "logpage"])
def test_identify_and_logpage_load_no_dataclasses(modules_after, argv):
    assert loaded(modules_after(*argv), ("dataclasses", "inspect", "typing")) == set()


def test_discover_without_digests_or_ipv6_loads_neither_crc_nor_ipaddress(modules_after):
    """fastcrc's package loads every CRC width; ipaddress is for IPv6 forms; the
    Identify and discovery log records and the NVM command set wait for a
    controller that answers."""
    assert loaded(modules_after("discover", "127.0.0.1:1"),
                  ("fastcrc", "ipaddress", "nvmecontrol.wire.identify",
                   "nvmecontrol.wire.discovery", "nvmecontrol.wire.nvm")) == set()
    assert "ipaddress" in modules_after("discover", "[::1]:1")


def test_top_level_help_loads_no_subcommand(modules_after):
    cold = modules_after("--help")
    assert cold & SUBCOMMAND_MODULES == set()
    assert loaded(cold, BELOW_CLI) == set()
    assert loaded(warm(modules_after, "--help"), HEAVY_LIBRARIES) == set()


@pytest.mark.parametrize("sub", SUBCOMMANDS, ids=lambda s: s.name)
def test_subcommand_help_loads_only_its_own_module(modules_after, sub):
    cold = modules_after(sub.name, "--help")
    assert sub.module in cold
    assert loaded(cold, BELOW_CLI) == set()
    assert "rich" not in cold
    # connect-all shares connect's machinery, disconnect-all disconnect's.
    allowed = {sub.module, sub.module.removesuffix("_all")}
    assert cold & SUBCOMMAND_MODULES - allowed == set()
    assert loaded(warm(modules_after, sub.name, "--help"), HEAVY_LIBRARIES) == set()


@pytest.mark.parametrize("sub", [s for s in SUBCOMMANDS if s.actions], ids=lambda s: s.name)
def test_action_help_is_the_subcommands_help_without_typer(modules_after, sub, capsys,
                                                          tmp_path, monkeypatch):
    from nvmecontrol.cli.app import main

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    for action in sub.actions:
        assert loaded(warm(modules_after, sub.name, action, "--help"), HEAVY_LIBRARIES) == set()
        assert main([sub.name, action, "--help"]) == 0
        typer_text = capsys.readouterr().out
        assert fastpath.try_run([sub.name, action, "--help"]) == 0
        assert capsys.readouterr().out == typer_text
    # Not an action: typer owns the error.
    assert fastpath.try_run([sub.name, "bogus", "--help"]) is None


def test_hostnqn_loads_no_backend(modules_after):
    modules = modules_after("hostnqn")
    assert loaded(modules, BELOW_CLI) == set()
    assert "nvmecontrol.cli.hostnqn" in modules  # its body, without its typer signature
    assert modules & SUBCOMMAND_MODULES == set()


KEY = "DHHC-1:00:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:"


@pytest.mark.parametrize("argv", [
    ["hostnqn", "-v"], ["gen-dhchap-key"], ["check-dhchap-key", "-k", KEY],
    ["identify", "nvme9"], ["logpage", "-p", "2", "nvme9"], ["discover", "127.0.0.1:1"],
], ids=" ".join)
def test_commands_that_run_load_no_typer(modules_after, argv):
    modules = modules_after(*argv)
    assert loaded(modules, HEAVY_LIBRARIES) == set()
    assert modules & SUBCOMMAND_MODULES == set()  # the typer signatures
    # Nothing is rendered when the command fails before it has data.
    assert loaded(modules, ("nvmecontrol.cli.render",)) == set()


# --- the fast paths print what typer prints -------------------------------------------

def _eager_app() -> typer.Typer:
    """The same tree built the plain typer way: every subcommand imported and registered."""
    import importlib

    eager = typer.Typer(name="nvmecontrol", help=app.info.help, no_args_is_help=True,
                        add_completion=False, pretty_exceptions_enable=False,
                        rich_markup_mode=None)
    eager.callback()(app.registered_callback.callback)
    for s in SUBCOMMANDS:
        eager.command(s.name, help=s.help)(importlib.import_module(s.module).command)
    return eager


@pytest.mark.parametrize("columns", [50, 72, 80, 200])
def test_lazy_tree_help_is_the_eager_tree_help(columns, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(columns))
    runner = CliRunner()
    lazy = runner.invoke(app, ["--help"], prog_name="nvmecontrol")
    eager = runner.invoke(_eager_app(), ["--help"], prog_name="nvmecontrol")
    assert lazy.exit_code == eager.exit_code == 0
    assert lazy.output == eager.output
    assert [s.name for s in SUBCOMMANDS] == [
        line.split()[0] for line in lazy.output.split("Commands:\n", 1)[1].splitlines()
        if line.startswith("  ") and not line.startswith("   ")]


@pytest.mark.parametrize("argv", [["--help"], ["connect", "--help"], ["logpage", "--help"]])
def test_cached_help_is_typer_help(argv, tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "COLUMNS": "80"}
    script = [sys.executable, "-m", "nvmecontrol", *argv]
    cold = subprocess.run(script, capture_output=True, text=True, env=env, timeout=60)
    warm = subprocess.run(script, capture_output=True, text=True, env=env, timeout=60)
    assert (cold.returncode, cold.stderr) == (0, "")
    assert (warm.returncode, warm.stdout, warm.stderr) == (0, cold.stdout, "")
    assert cold.stdout.startswith("Usage: nvmecontrol")
    assert list((tmp_path / "nvmecontrol" / "help").iterdir())  # the text was kept


def test_help_key_follows_sources_width_and_argv(tmp_path):
    src = tmp_path / "a.py"
    src.write_text("x = 1\n")
    key = fastpath.help_key(["--help"], 78, [src])
    assert fastpath.help_key(["--help"], 78, [src]) == key
    assert fastpath.help_key(["--help"], 60, [src]) != key
    assert fastpath.help_key(["connect", "--help"], 78, [src]) != key
    src.write_text("x = 22\n")
    assert fastpath.help_key(["--help"], 78, [src]) != key


@pytest.mark.parametrize("args, parsed", [
    ([], (False, "text", False)),
    (["-h"], (True, "text", False)),
    (["--human", "-o", "json"], (True, "json", False)),
    (["--format=json", "-v"], (False, "json", True)),
    (["--output-format", "text", "-h", "--verbose"], (True, "text", True)),
    (["-o", "normal"], (False, "normal", False)),
])
def test_devlist_fast_parse(args, parsed):
    p = parse(DECLARATIONS["devlist"], args).params
    assert (p["human"], p["fmt"].value, p["verbose"]) == parsed


@pytest.mark.parametrize("args", [["-x"], ["-o"], ["-o", "yaml"], ["-ojson"], ["--help"],
                                  ["--hum"], ["extra"]])
def test_devlist_fast_parse_leaves_the_rest_to_typer(args):
    assert parse(DECLARATIONS["devlist"], args) is None
    assert fastpath.run_command("devlist", args) is None
