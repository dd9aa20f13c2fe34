"""Start-up without typer for the invocations scripts and completions repeat.

typer (with its vendored click) costs two to three times a bare interpreter
start, so the commands run in loops and the commands that run (not only
their help) do not go through it (issue 13: a command starts in at most 4x
``python -c pass``, bench/startup.py):

- ``--version``;
- ``--help``, ``SUB --help`` and ``SUB ACTION --help`` (``resv acquire``):
  the text typer rendered the first time, kept in
  ``${XDG_CACHE_HOME:-~/.cache}/nvmecontrol/help/`` under a key of the
  interpreter, typer's and nvmecontrol's CLI source files (path, size,
  mtime; the typer signatures in ``cli/signatures/`` included) and the help
  width, so any change to an option renders afresh;
- the commands of ``fast_commands.BODIES`` (``devlist`` ...): their command
  line read by ``argv_parser`` from the command's declaration, then the
  same body the typer signature calls, with the same parameters.

Anything else, or anything these do not recognise (``argv_parser`` declines
an odd spelling, an unknown option, a bad value), returns None and takes
the full typer path, which owns every error message.
"""

from __future__ import annotations

import os
import sys

from nvmecontrol.cli.commands import BY_NAME

# Not pathlib: with urllib.parse and ipaddress it costs half a bare interpreter
# start here, and the help path needs none of it.
_CLI_DIR = os.path.dirname(os.path.abspath(__file__))


def try_run(argv: list[str]) -> int | None:
    """Run ``argv`` here and return its exit status, or None to use typer."""
    from nvmecontrol.cli.errorhandler import run_guarded

    if argv == ["--version"]:
        from nvmecontrol import __version__

        return run_guarded(lambda: _write(f"nvmecontrol {__version__}\n"))
    if argv == ["--help"] or (len(argv) == 2 and argv[1] == "--help" and argv[0] in BY_NAME):
        text = help_text(argv)
        return None if text is None else run_guarded(lambda: _write(text))
    if (len(argv) == 3 and argv[2] == "--help" and argv[0] in BY_NAME
            and argv[1] in BY_NAME[argv[0]].actions):
        text = help_text([argv[0], "--help"])  # typer shows the subcommand's help for both
        return None if text is None else run_guarded(lambda: _write(text))
    if argv and argv[0] in BY_NAME:
        return run_command(argv[0], argv[1:])
    return None


def run_command(name: str, args: list[str]) -> int | None:
    """Run subcommand ``name`` on ``args`` without typer, or None to use typer."""
    from nvmecontrol.cli.fast_commands import BODIES, DECLARATIONS

    body = BODIES.get(name)
    if body is None:
        return None
    from nvmecontrol.cli.argv_parser import parse

    parsed = parse(DECLARATIONS[name], args)
    if parsed is None:
        return None
    from nvmecontrol.cli.errorhandler import run_guarded

    def call():
        # From here on Ctrl-C is a KeyboardInterrupt that run_guarded reports,
        # as on the typer path (entry.run's handler ends the process at once).
        import _signal

        _signal.signal(_signal.SIGINT, _signal.default_int_handler)
        module = __import__(body.module, fromlist=[body.function])
        function = getattr(module, body.function)
        if body.takes_ctx:
            return function(parsed, **parsed.params)
        return function(**parsed.params)

    return run_guarded(call)


def _write(text: str) -> int:
    sys.stdout.write(text)
    return 0


# --- help -----------------------------------------------------------------------------

def help_width() -> int:
    """The width click formats help to (HelpFormatter: terminal columns, at most 78)."""
    return max(min(_terminal_columns(), 80) - 2, 50)


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``, without importing shutil (re, bz2, lzma...)."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
        columns = columns or 80  # shutil's fallback
    return columns


def help_cache_dir(environ=None) -> str:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME") or "/nonexistent", ".cache")
    return os.path.join(base, "nvmecontrol", "help")


def help_key(argv: list[str], width: int, sources: list | None = None) -> str:
    """What the help text depends on: argv, width, interpreter, typer and our CLI sources."""
    try:
        # hashlib would load OpenSSL first (a fifth of a bare interpreter start).
        from _blake2 import blake2b
    except ImportError:
        from hashlib import blake2b

    h = blake2b(digest_size=16)
    h.update(repr((argv, width, sys.executable, sys.version)).encode())
    for path in _help_sources() if sources is None else sources:
        try:
            st = os.stat(path)
        except OSError:
            h.update(f"{path}:missing\n".encode())
        else:
            h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def _help_sources() -> list[str]:
    """The CLI's sources (typer signatures included), and typer's own."""
    files = sorted(os.path.join(d, f) for d, _, names in os.walk(_CLI_DIR)
                   for f in names if f.endswith(".py"))
    # Where typer would be imported from (importlib's finders cost more to load).
    for entry in sys.path:
        typer_dir = os.path.join(entry or ".", "typer")
        if os.path.isfile(os.path.join(typer_dir, "__init__.py")):
            files += [os.path.join(typer_dir, f) for f in ("__init__.py", "core.py", "main.py")]
            break
    return files


def help_text(argv: list[str]) -> str | None:
    """The help for ``argv``: cached, else rendered by typer and kept (None: typer failed)."""
    path = os.path.join(help_cache_dir(), help_key(argv, help_width()))
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        text = _render_help(argv)
        if text is not None:
            _store(path, text)
        return text


def _render_help(argv: list[str]) -> str | None:
    """typer's help for argv, captured; None when it did not end with status 0."""
    import io
    from contextlib import redirect_stdout

    from nvmecontrol.cli.app import main

    out = io.StringIO()
    with redirect_stdout(out):
        status = main(argv)
    return out.getvalue() if status == 0 else None


def _store(path: str, text: str) -> None:
    # A cache: when it cannot be written the help was shown all the same.
    import tempfile

    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass
