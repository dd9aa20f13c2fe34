"""The typer-free command-line parser of the start-up fast path (cli/argv_parser.py).

Unit tests of its syntax on a small declaration, then each declaration of
``cli.fast_commands`` held to the typer command it stands for: the same
spellings, and over a corpus of command lines the same parameters and the
same options "given" -- or the fast parser declines and typer reads it.
"""

from __future__ import annotations

import pytest
import typer
from typer._click import exceptions as click_exc

from nvmecontrol.cli import argv_parser as ap
from nvmecontrol.cli.app import app
from nvmecontrol.cli.fast_commands import DECLARATIONS
from nvmecontrol.cli.output import Format
from nvmecontrol.options import OPTIONS

DEMO = ap.Command(
    ap.argument("target", required=True),
    ap.argument("subnqn"),
    ap.number("nsid", "-n", "--nsid", lo=0, hi=0xFFFFFFFF),
    ap.number("queue_size", "-Q", lo=2, hi=65536, also=(0,), default=0),
    ap.flag("hex_", "-x", "--hex"),
    ap.text("page", "-p", "--page"),
    ap.real("timeout", "--timeout", lo=0.1, hi=86400, default=30.0),
    ap.output_format(),
)


def demo(*argv):
    return ap.parse(DEMO, list(argv))


def test_defaults_and_the_one_required_argument():
    r = demo("nvme0")
    assert r.params == {"target": "nvme0", "subnqn": None, "nsid": None, "queue_size": 0,
                        "hex_": False, "page": None, "timeout": 30.0, "fmt": Format.text}
    assert r.given == {"target"}


def test_options_anywhere_and_every_spelling_of_a_value():
    r = demo("-x", "10.0.0.5:4420", "--nsid", "0x10", "nqn.x", "-p", "smart", "--format=json",
             "--timeout", "2.5", "-Q", "0200")
    assert r.params == {"target": "10.0.0.5:4420", "subnqn": "nqn.x", "nsid": 16,
                        "queue_size": 128, "hex_": True, "page": "smart", "timeout": 2.5,
                        "fmt": Format.json}
    assert r.given == {"target", "subnqn", "nsid", "queue_size", "hex_", "page", "timeout", "fmt"}


def test_the_last_of_an_option_given_twice_wins_and_counts_as_given():
    r = demo("nvme0", "-n", "1", "--nsid", "0")
    assert r.params["nsid"] == 0
    assert "nsid" in r.given


def test_a_value_given_equal_to_the_default_is_still_given():
    # config.json fills only what the command line left out, even a default spelled out.
    assert "timeout" in demo("nvme0", "--timeout", "30").given


def test_get_parameter_source_reads_as_clicks():
    r = demo("nvme0", "-x")
    assert r.get_parameter_source("hex_").name == "COMMANDLINE"
    assert r.get_parameter_source("nsid").name == "DEFAULT"


def test_values_that_are_words_of_their_own():
    assert demo("nvme0", "-p", "-").params["page"] == "-"  # a lone dash is a value
    assert demo("nvme0", "--page=").params["page"] == ""
    assert demo("-").params["target"] == "-"
    assert demo("", "-x").params["target"] == ""


def test_bounds_and_also():
    assert demo("nvme0", "-Q", "0").params["queue_size"] == 0  # also
    assert demo("nvme0", "-Q", "65536").params["queue_size"] == 65536
    assert demo("nvme0", "--timeout", "0.1").params["timeout"] == 0.1
    assert demo("nvme0", "--timeout", "86400").params["timeout"] == 86400.0
    assert demo("nvme0", "-n", "0xffffffff").params["nsid"] == 0xFFFFFFFF


@pytest.mark.parametrize("argv", [
    [],  # the required argument
    ["a", "b", "c"],  # one argument too many
    ["nvme0", "-xv"], ["nvme0", "-n5"], ["nvme0", "-n=5"],  # clustered, attached
    ["nvme0", "--hex=1"],  # a flag with a value
    ["nvme0", "--", "-x"], ["nvme0", "--help"], ["nvme0", "--he"], ["nvme0", "-y"],
    ["nvme0", "-n"],  # the value is missing
    ["nvme0", "-p", "-x"], ["nvme0", "-n", "-1"],  # a value that looks like an option
    ["nvme0", "-n", "0x100000000"], ["nvme0", "-n", "08"], ["nvme0", "-n", "1k"],
    ["nvme0", "-n", ""], ["nvme0", "-Q", "1"], ["nvme0", "-Q", "65537"],
    ["nvme0", "--timeout", "0.05"], ["nvme0", "--timeout", "1e3"], ["nvme0", "--timeout", "nan"],
    ["nvme0", "--timeout", "inf"], ["nvme0", "--timeout", "."], ["nvme0", "--timeout", "86401"],
    ["nvme0", "-o", "yaml"], ["nvme0", "-o", "JSON"],
])
def test_declines_what_typer_should_read(argv):
    assert demo(*argv) is None


def test_a_flag_declared_twice_is_refused():
    with pytest.raises(ValueError):
        ap.Command(ap.flag("a", "-x"), ap.flag("b", "-x"))


def test_table_options_take_the_option_tables_spellings_and_bounds():
    by_name = {p.name: p for p in ap.table(*OPTIONS)}
    for name, o in OPTIONS.items():
        assert by_name[name].flags == o.flags
        assert by_name[name].default == o.default
    qs = ap.Command(ap.table("queue_size"))
    assert ap.parse(qs, ["--queue-size", "0"]).params == {"queue_size": 0}
    assert ap.parse(qs, ["-Q", "1"]) is None


# --- each declaration against the typer command it stands for ------------------------------

@pytest.fixture(scope="module")
def typer_commands():
    group = typer.main.get_command(app)
    return {name: group.commands[name] for name in DECLARATIONS}


def typer_parse(command, name: str, argv: list[str]):
    """(params, names given) as typer reads ``argv``, or None when it refuses it."""
    try:
        ctx = command.make_context(name, list(argv))
    except (click_exc.ClickException, typer.Exit):  # a usage error; --help
        return None
    given = {n for n in ctx.params if ctx.get_parameter_source(n).name == "COMMANDLINE"}
    return ctx.params, given


@pytest.mark.parametrize("name", DECLARATIONS)
def test_declaration_has_the_typer_commands_spellings(typer_commands, name):
    decl = DECLARATIONS[name]
    opts, arguments = {}, []
    for p in typer_commands[name].params:
        if p.param_type_name == "option":
            for spelling in (*p.opts, *p.secondary_opts):
                opts[spelling] = (p.name, bool(p.is_flag), p.required)
        else:
            arguments.append((p.name, p.required))
    assert opts == {f: (p.name, p.kind == ap._FLAG, p.required) for f, p in decl.options.items()}
    assert arguments == [(p.name, p.required) for p in decl.arguments]


# Command lines per command: the corpus both parsers read.
COMMON = [
    ["-o", "json"], ["--format=normal"], ["--output-format", "text"], ["-o", "yaml"],
    ["--help"], ["--bogus"], ["-x", "-v"], ["--", "x"],
]
NETWORK = [
    ["-q", "nqn.2014-08.org.nvmexpress:uuid:0"], ["--hostnqn="], ["--hostid", "u", "-I", "v"],
    ["-g", "-G"], ["--hdr-digest", "--data_digests"], ["--timeout", "2"], ["--timeout", "0.05"],
    ["--timeout", "1e2"], ["--timeout=86400"], ["--dhchap-secret", "DHHC-1:00:abc:"],
    ["--dhchap-ctrl-secret", "k"], ["-q"],
]
CORPUS = {
    "devlist": [[], ["-h"], ["--human", "-v", "-o", "json"], ["-hv"], ["extra"]],
    "identify": [
        [], ["nvme0"], ["nvme0n1", "-x"], ["nvme0", "-x", "-v"], ["-n", "0x1", "nvme0"],
        ["nvme0", "--nsid=0xffffffff"], ["nvme0", "-n", "0x100000000"], ["nvme0", "-n", "017"],
        ["nvme0", "-n", "09"], ["nvme0", "-n5"], ["10.0.0.5", "nqn.x"], ["a", "b", "c"],
        ["nvme0", "-xv"], ["nvme0", "-n"],
    ],
    "logpage": [
        [], ["-p", "2", "nvme0"], ["nvme0", "-p", "smart", "-x"], ["nvme0", "-p", "1", "-b"],
        ["-v", "help"], ["nvme0", "-p", "2", "-f", "0x7f", "-i", "65535", "-r"],
        ["nvme0", "-p", "2", "-f", "0x80"], ["nvme0", "-p", "2", "--lsi", "65536"],
        ["nvme0", "-p", "2", "-n", "0xffffffff"], ["10.0.0.5:4420", "nqn.x", "-p", "0x70"],
        ["nvme0", "-p"], ["nvme0", "--page=2", "--rae", "--lsp=1"],
    ],
    "discover": [
        [], ["127.0.0.1"], ["127.0.0.1:1", "-v", "--walk"], ["-t", "tcp", "h"],
        ["--transport=rdma", "h"], ["h", "x"], ["[::1]:8009", "-o", "json"],
    ],
    "hostnqn": [
        [], ["-v"], ["--generate"], ["--generate", "--write", "--force"], ["x"],
        ["-q", "nqn.x", "--hostid", "u"],
    ],
    "gen-dhchap-key": [
        [], ["-m", "1"], ["-m", "0x3", "-l", "64"], ["-s", "00ff", "-n", "nqn.x"],
        ["--hmac=2", "--key-length=48"], ["-m", "256"], ["-l", "0x10000"], ["-l", "x"],
        ["-s"], ["extra"],
    ],
    "check-dhchap-key": [
        [], ["-k", "DHHC-1:00:abc:"], ["--key=DHHC-1:01:x:"], ["-k"], ["-k", "a", "b"],
    ],
}
NETWORK_COMMANDS = {"identify": ["nvme0"], "logpage": ["nvme0", "-p", "2"],
                    "discover": ["127.0.0.1"]}


def corpus():
    for name, lines in CORPUS.items():
        base = NETWORK_COMMANDS.get(name, [])
        for argv in lines + [base + c for c in COMMON]:
            yield name, argv
        if name in NETWORK_COMMANDS:
            for argv in NETWORK:
                yield name, base + argv


@pytest.mark.parametrize("name, argv", list(corpus()), ids=lambda x: " ".join(x) if
                         isinstance(x, list) else x)
def test_fast_parser_reads_as_typer_or_declines(typer_commands, name, argv):
    fast = ap.parse(DECLARATIONS[name], argv)
    if fast is None:
        return  # typer reads it, and owns any error
    slow = typer_parse(typer_commands[name], name, argv)
    assert slow is not None, f"typer refuses {argv} but the fast parser took it"
    params, given = slow
    assert fast.params == params
    assert fast.given == given


def test_the_corpus_is_mostly_taken_by_the_fast_parser():
    # The declining cases are the few odd spellings above: the fast path is the common path.
    taken = [argv for name, argv in corpus() if ap.parse(DECLARATIONS[name], argv) is not None]
    assert len(taken) > len(list(corpus())) // 2
