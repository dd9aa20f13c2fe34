"""The man pages and the completion scripts describe the CLI that exists.

The CLI is introspected (the typer app of nvmecontrol, the argparse parsers
of nvmfd), never listed here.  Forward: every subcommand and option the CLI
has must be in the man page (an ``.Ss`` subsection with an ``.It Fl`` item
per option, short and long spellings) and be offered by the bash, zsh and
fish completions.  Backward: the man page and the completions must not
offer an option that an existing subcommand lacks.  The shells are run for
real: bash calls the completion function, fish answers ``complete -C``, and
zsh runs its completion function with ``_arguments``/``_describe`` replaced
by stubs that print their specs.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import typer.main

from nvmecontrol.cli import exitcodes
from nvmecontrol.cli.app import app
from nvmecontrol.cli.logpage import PAGE_NAMES, known_pages
from nvmecontrol.target import main as nvmfd_main

REPO = Path(__file__).resolve().parents[2]
MAN = REPO / "man"
COMPLETIONS = REPO / "completions"
TOP = ""  # the key of the command's own options (before any subcommand)
HELP = {"--help", "-h"}

# Subcommands the man page may document while the CLI does not register
# them yet (they are being written); only the backward check exempts them.
DOCUMENTED_AHEAD = {"nvmecontrol": {"connect", "connect-all", "disconnect", "disconnect-all",
                                    "reconnect", "devlist"}}


# --- the CLI ---------------------------------------------------------------------

def _nvmecontrol_cli() -> dict[str, set[str]]:
    group = typer.main.get_command(app)
    out = {TOP: _click_options(group)}
    for name, command in group.commands.items():
        out[name] = _click_options(command)
    return out


def _click_options(command) -> set[str]:
    return {o for p in command.params if p.param_type_name == "option"
            for o in (*p.opts, *p.secondary_opts)} - HELP


def _nvmfd_cli() -> dict[str, set[str]]:
    out = {TOP: _argparse_options(nvmfd_main.build_parser())}
    for name in nvmfd_main.SUBCOMMANDS:
        out[name] = _argparse_options(nvmfd_main.build_parser(name))
    return out


def _argparse_options(parser) -> set[str]:
    return {o for action in parser._actions for o in action.option_strings} - HELP


CLI = {"nvmecontrol": _nvmecontrol_cli(), "nvmfd": _nvmfd_cli()}


def longs(options: set[str]) -> set[str]:
    return {o for o in options if o.startswith("--")}


# --- the man pages ---------------------------------------------------------------

def man_section(text: str, name: str) -> str:
    m = re.search(rf"^\.Sh {name}\n(.*?)(?=^\.Sh |\Z)", text, re.M | re.S)
    assert m, f"no {name} section"
    return m.group(1)


def man_options(command: str) -> dict[str, set[str]]:
    """Per subcommand (TOP before the first .Ss), the options of its .It items."""
    out: dict[str, set[str]] = {TOP: set()}
    current = TOP
    for line in man_section((MAN / f"{command}.8").read_text(), "DESCRIPTION").splitlines():
        if line.startswith(".Ss "):
            current = line[4:].strip().strip('"')
            out[current] = set()
        elif line.startswith(".It ") and " Fl " in f" {line[4:]} ":
            for flag in re.findall(r"\bFl\s+(\S+)", line):
                out[current].add(f"-{flag}")
    return out


def man_synopsis_commands(command: str) -> set[str]:
    synopsis = man_section((MAN / f"{command}.8").read_text(), "SYNOPSIS")
    return set(re.findall(r"^\.Ic (\S+)", synopsis, re.M))


# --- the completions ---------------------------------------------------------------

def _run(argv) -> str:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO,
                       env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LC_ALL": "C.UTF-8"})
    assert (p.returncode, p.stderr) == (0, ""), p.stderr
    return p.stdout


def _asks(command: str) -> list[tuple[str, str]]:
    """(key, command line before the cursor): subcommands, then each one's long options."""
    asks = [("commands", f"{command} "), (TOP, f"{command} --")]
    asks += [(name, f"{command} {name} --") for name in CLI[command] if name != TOP]
    return asks


def _group(lines: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for line in lines.splitlines():
        key, _, word = line.partition("\t")
        out.setdefault(key, set())
        if word:
            out[key].add(word)
    return out


def bash_offers(command: str, asks: list[tuple[str, str]]) -> dict[str, set[str]]:
    calls = "".join(f"ask {key!r} {line!r}\n" for key, line in asks)
    script = f"""
source {COMPLETIONS}/{command}.bash
ask() {{
    COMP_LINE=$2 COMP_POINT=${{#2}}
    read -ra COMP_WORDS <<<"$2"
    [[ $2 == *' ' ]] && COMP_WORDS+=('')
    COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
    COMPREPLY=()
    _{command}
    printf '%s\\n' "$1"
    local w
    for w in "${{COMPREPLY[@]}}"; do printf '%s\\t%s\\n' "$1" "$w"; done
}}
{calls}"""
    return _group(_run(["bash", "--norc", "--noprofile", "-c", script]))


def fish_offers(command: str, asks: list[tuple[str, str]]) -> dict[str, set[str]]:
    calls = "".join(f"for w in (complete -C {line!r}); echo {key!r}\\t(string split -f1 \\t -- $w); end\n"
                    f"echo {key!r}\n" for key, line in asks)
    return _group(_run(["fish", "--no-config", "-c",
                        f"source {COMPLETIONS}/{command}.fish\n{calls}"]))


ZSH_SPEC = re.compile(r"^(?:\([^)]*\))?\*?(--?[A-Za-z0-9][\w-]*)")


def zsh_offers(command: str, asks: list[tuple[str, str]]) -> dict[str, set[str]]:
    calls = ""
    for key, line in asks:
        words = line.split(" ")
        quoted = " ".join(f"'{w}'" for w in words)
        calls += f"KEY={key!r}; print -r -- $KEY; words=({quoted}); CURRENT={len(words)}; _{command}\n"
    script = f"""
autoload -U compinit; compinit -u -D
source {COMPLETIONS}/_{command}
# Stubs that print what would be offered, tagged with the $KEY being asked.
_arguments() {{ local a; for a in "$@"; do print -r -- "$KEY	$a"; done }}
_describe() {{
    local a
    for a in "$@"; do
        [[ ${{parameters[$a]-}} == array* ]] && print -rl -- "${{(@)${{(@P)a}}/#/$KEY	}}"
    done
}}
_alternative() {{
    local a
    for a in "$@"; do [[ ${{a#*:*:}} == _*_subcommands ]] && ${{a#*:*:}}; done
}}
{calls}"""
    offered: dict[str, set[str]] = {}
    for key, specs in _group(_run(["zsh", "-f", "-c", script])).items():
        offered[key] = set()
        for spec in specs:
            if key == "commands":
                offered[key].add(re.split(r"(?<!\\):", spec)[0])
            elif m := ZSH_SPEC.match(spec):
                offered[key].add(m.group(1))
    return offered


SHELLS = {"bash": (bash_offers, "bash"), "zsh": (zsh_offers, "zsh"), "fish": (fish_offers, "fish")}


@pytest.fixture(scope="module")
def offered():
    """Per (command, shell), what TAB offers for each ask; computed once."""
    cache: dict[tuple[str, str], dict[str, set[str]]] = {}

    def get(command: str, shell: str, require_tool) -> dict[str, set[str]]:
        fn, package = SHELLS[shell]
        require_tool(shell, package)
        if (command, shell) not in cache:
            cache[command, shell] = fn(command, _asks(command))
        return cache[command, shell]
    return get


# --- the tests -------------------------------------------------------------------------

COMMANDS = ["nvmecontrol", "nvmfd"]


@pytest.mark.parametrize("command", COMMANDS)
def test_man_page_documents_every_subcommand(command):
    subcommands = set(CLI[command]) - {TOP}
    assert subcommands - set(man_options(command)) == set(), "no .Ss subsection"
    assert subcommands - man_synopsis_commands(command) == set(), "not in SYNOPSIS"


@pytest.mark.parametrize("command", COMMANDS)
def test_man_page_documents_every_option(command):
    documented = man_options(command)
    missing = {name: sorted(opts - documented.get(name, set()))
               for name, opts in CLI[command].items()}
    assert {k: v for k, v in missing.items() if v} == {}


@pytest.mark.parametrize("command", COMMANDS)
def test_man_page_documents_nothing_the_cli_lacks(command):
    documented = man_options(command)
    unknown = set(documented) - set(CLI[command]) - DOCUMENTED_AHEAD.get(command, set())
    assert unknown == set(), "subsections for subcommands the CLI does not have"
    extra = {name: sorted(opts - CLI[command][name] - HELP)
             for name, opts in documented.items() if name in CLI[command]}
    assert {k: v for k, v in extra.items() if v} == {}


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("command", COMMANDS)
def test_completion_offers_every_subcommand_and_long_option(command, shell, offered,
                                                           require_tool):
    got = offered(command, shell, require_tool)
    assert set(CLI[command]) - {TOP} - got["commands"] == set()
    missing = {name: sorted(longs(opts) - got.get(name, set()))
               for name, opts in CLI[command].items()}
    assert {k: v for k, v in missing.items() if v} == {}


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("command", COMMANDS)
def test_completion_offers_nothing_the_cli_lacks(command, shell, offered, require_tool):
    got = offered(command, shell, require_tool)
    extra = {name: sorted(longs(got.get(name, set())) - opts - HELP)
             for name, opts in CLI[command].items()}
    assert {k: v for k, v in extra.items() if v} == {}


@pytest.mark.parametrize("script", ["nvmecontrol.bash", "_nvmecontrol", "nvmecontrol.fish"])
def test_completion_knows_every_log_page(script):
    # test_completions_bash.py asks bash for real; this keeps the three scripts in step.
    text = (COMPLETIONS / script).read_text()
    pages = list(PAGE_NAMES) + [f"0x{int(p):02x}" for p in known_pages()]
    assert [p for p in pages if not re.search(rf"(?<![\w-]){re.escape(p)}(?![\w-])", text)] == []


def test_man_page_lists_every_exit_status():
    section = man_section((MAN / "nvmecontrol.8").read_text(), "EXIT STATUS")
    listed = {int(n) for n in re.findall(r"^\.It (\d+)", section, re.M)}
    codes = {code for _family, code, _why in exitcodes.EXIT_CODES}
    codes |= {exitcodes.EX_OK, exitcodes.EX_INTERRUPTED, exitcodes.EX_SOFTWARE,
              exitcodes.EX_NOPERM, exitcodes.EX_NOINPUT, exitcodes.EX_IOERR}
    assert codes - listed == set()


def test_nvmfd_man_page_lists_every_exit_status():
    section = man_section((MAN / "nvmfd.8").read_text(), "EXIT STATUS")
    listed = {int(n) for n in re.findall(r"^\.It (\d+)", section, re.M)}
    m = nvmfd_main
    assert {m.EX_OK, m.EX_USAGE, m.EX_NOINPUT, m.EX_UNAVAILABLE, m.EX_SOFTWARE,
            m.EX_OSERR} - listed == set()


def test_man_page_names_every_environment_variable():
    from nvmecontrol import hostid
    from nvmecontrol.backends import runtime

    section = man_section((MAN / "nvmecontrol.8").read_text(), "ENVIRONMENT")
    names = set(re.findall(r"^\.It Ev (\S+)", section, re.M))
    assert {runtime.ENV_RUNTIME_DIR, hostid.ENV_HOSTNQN, hostid.ENV_HOSTID,
            "NVMECONTROL_DEBUG", "XDG_RUNTIME_DIR", "XDG_CACHE_HOME"} - names == set()
