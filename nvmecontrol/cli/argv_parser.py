"""A command line read without typer, for the commands the start-up fast path runs.

typer (with its vendored click) costs two to three bare interpreter starts
before a command does anything (issue 13), so ``fastpath`` reads the plain
command lines of the commands that run with this parser instead.  It knows
a command by its declaration (:class:`Command`: options and positional
arguments, with spellings, defaults and bounds from the option table in
``nvmecontrol/options.py``) and turns ``argv`` into

- the parameters the command's body takes, valued exactly as typer values
  them (``-n 0x10`` -> 16 as ``cli/numbers.py`` reads it, ``-o json`` ->
  ``Format.json``), and
- the names given on the command line (what ``ctx.get_parameter_source``
  tells the typer path: config.json fills only the options left out).

It reads a subset of click's syntax: ``-x``, ``--hex``, ``-n 5``,
``--nsid 5``, ``--nsid=5``, options before, between and after the
positional arguments, an option given twice (the last wins).  For anything
else -- a clustered or attached short option (``-xv``, ``-n5``), ``--``,
an unknown option, ``--help``, a value that looks like an option, a value
out of range or not a number, a missing or extra argument -- it returns
None, and typer parses the command line and owns every error message.  A
test holds both parsers to the same parameters over a corpus of command
lines (tests/cli/test_argv_parser.py).

Standard library and the option table only: it runs before anything else.
"""

from __future__ import annotations

from nvmecontrol.cli.numbers import parse_number
from nvmecontrol.options import OPTIONS

# The output format option every command has (cli/options.py OutputFormat).
FORMAT_FLAGS = ("-o", "--format", "--output-format")

_FLAG, _TEXT, _NUMBER, _REAL, _CHOICE = range(5)


class Param:
    """One option or positional argument of a command (a plain class: start-up time)."""

    __slots__ = ("name", "flags", "kind", "default", "lo", "hi", "also", "convert", "required")

    def __init__(self, name: str, flags: tuple[str, ...], kind: int, default=None, *,
                 lo=None, hi=None, also: tuple = (), convert=None, required: bool = False):
        self.name = name  # the body's parameter
        self.flags = flags  # () for a positional argument
        self.kind = kind
        self.default = default
        self.lo, self.hi, self.also = lo, hi, also  # bounds, inclusive; values also accepted
        self.convert = convert  # _CHOICE: the values accepted -> what the body gets
        self.required = required

    def __repr__(self) -> str:
        return f"Param({self.name!r}, {self.flags!r})"


def flag(name: str, *flags: str) -> Param:
    """A boolean option, False unless given."""
    return Param(name, flags, _FLAG, False)


def text(name: str, *flags: str, default: str | None = None, required: bool = False) -> Param:
    """An option that takes any string."""
    return Param(name, flags, _TEXT, default, required=required)


def number(name: str, *flags: str, lo: int, hi: int, also: tuple = (),
           default: int | None = None) -> Param:
    """An integer option read as strtoul(..., 0) reads it (cli/numbers.py), in lo..hi or ``also``."""
    return Param(name, flags, _NUMBER, default, lo=lo, hi=hi, also=also)


def real(name: str, *flags: str, lo: float, hi: float, default: float) -> Param:
    """A float option in lo..hi, written in plain decimal (``30``, ``0.5``)."""
    return Param(name, flags, _REAL, default, lo=lo, hi=hi)


def choice(name: str, *flags: str, values: dict, default) -> Param:
    """An option that takes one of ``values`` (spelling -> what the body gets)."""
    return Param(name, flags, _CHOICE, default, convert=values)


def output_format(name: str = "fmt") -> Param:
    """``-o/--format/--output-format text|json|normal`` as ``cli.output.Format``."""
    from nvmecontrol.cli.output import Format

    return choice(name, *FORMAT_FLAGS, values={f.value: f for f in Format}, default=Format.text)


def argument(name: str, *, default=None, required: bool = False) -> Param:
    """A positional argument (a string)."""
    return Param(name, (), _TEXT, default, required=required)


def table(*names: str) -> list[Param]:
    """The options of the option table (nvmecontrol/options.py) named ``names``.

    As ``cli.options.table_option`` makes their typer options: a boolean
    default is a flag, an integer with bounds a number, a float with bounds
    a real, anything else a string.
    """
    out = []
    for name in names:
        o = OPTIONS[name]
        if isinstance(o.default, bool):
            out.append(flag(name, *o.flags))
        elif isinstance(o.default, int) and o.lo is not None:
            out.append(number(name, *o.flags, lo=o.lo, hi=o.hi, also=o.also, default=o.default))
        elif isinstance(o.default, float) and o.lo is not None:
            out.append(real(name, *o.flags, lo=o.lo, hi=o.hi, default=o.default))
        else:
            out.append(text(name, *o.flags, default=o.default))
    return out


class Command:
    """What a command takes: its options (any order) and positional arguments (in order)."""

    __slots__ = ("params", "options", "arguments")

    def __init__(self, *params: Param | list[Param]):
        flat: list[Param] = []
        for p in params:
            flat.extend(p if isinstance(p, list) else [p])
        self.params = tuple(flat)
        self.options = {f: p for p in flat for f in p.flags}
        self.arguments = tuple(p for p in flat if not p.flags)
        names = [p.name for p in flat]
        if len(set(names)) != len(names) or len(self.options) != sum(len(p.flags) for p in flat):
            raise ValueError(f"a name or a flag is declared twice: {names}")


class Parsed:
    """The body's parameters and the names the command line gave."""

    __slots__ = ("params", "given")

    def __init__(self, params: dict, given: frozenset):
        self.params = params
        self.given = given

    def get_parameter_source(self, name: str):
        """As click's ``Context.get_parameter_source``, for code that reads a ctx
        (``cli.fabrics_config``): COMMANDLINE for a name given, else DEFAULT."""
        return _COMMANDLINE if name in self.given else _DEFAULT


class _Source:
    """The part of click's ParameterSource that callers read (its name)."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


_COMMANDLINE = _Source("COMMANDLINE")
_DEFAULT = _Source("DEFAULT")


def parse(command: Command, argv: list[str]) -> Parsed | None:
    """``argv`` (the words after the subcommand) read by ``command``; None: let typer read it."""
    params = {p.name: p.default for p in command.params}
    given: set[str] = set()
    positional: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        i += 1
        if not word.startswith("-") or word == "-":
            positional.append(word)
            continue
        name, eq, attached = word.partition("=")
        p = command.options.get(name)
        if p is None or (eq and not name.startswith("--")):
            return None  # unknown, clustered, --, --help, -n=5: typer's
        if p.kind == _FLAG:
            if eq:
                return None  # click: "option does not take a value"
            params[p.name] = True
        else:
            if eq:
                value = attached
            elif i < len(argv):
                value = argv[i]
                i += 1
            else:
                return None  # the value is missing
            if value.startswith("-") and value != "-":
                return None  # click would take it as the value; a mistake more often
            converted = _convert(p, value)
            if converted is _DECLINE:
                return None
            params[p.name] = converted
        given.add(p.name)
    if len(positional) > len(command.arguments):
        return None
    for p, value in zip(command.arguments, positional):
        params[p.name] = value
        given.add(p.name)
    if any(p.required and p.name not in given for p in command.params):
        return None
    return Parsed(params, frozenset(given))


_DECLINE = object()
_DECIMAL = frozenset("0123456789")


def _convert(p: Param, value: str):
    if p.kind == _TEXT:
        return value
    if p.kind == _CHOICE:
        return p.convert.get(value, _DECLINE)
    if p.kind == _NUMBER:
        try:
            n = parse_number(value)
        except ValueError:
            return _DECLINE
        return n if p.lo <= n <= p.hi or n in p.also else _DECLINE
    # _REAL: digits with at most one point (no sign, exponent, inf or nan: typer's).
    whole, _, frac = value.partition(".")
    if not (whole or frac) or not set(whole + frac) <= _DECIMAL:
        return _DECLINE
    x = float(value)
    return x if p.lo <= x <= p.hi else _DECLINE
