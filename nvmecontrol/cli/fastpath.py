"""Start-up without typer for the invocations scripts and completions repeat.

typer (with click and pydantic, which it loads to build a command's options)
costs three to five times a bare interpreter start, so the commands run in
loops do not go through it:

- ``--version``;
- ``--help``, ``SUB --help`` and ``SUB ACTION --help`` (``resv acquire``): the text typer rendered the first time,
  kept in ``${XDG_CACHE_HOME:-~/.cache}/nvmecontrol/help/`` under a key of
  the interpreter, typer's and nvmecontrol's CLI source files (path, size,
  mtime) and the help width, so any change to an option renders afresh;
- ``devlist`` with its options spelled plainly (``-h``, ``--human``, ``-v``,
  ``--verbose``, ``-o|--format|--output-format text|json|normal``, also
  ``--format=json``).

Anything else, or anything these do not recognise, returns None and takes
the full typer path, which owns every error message.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from nvmecontrol.cli.commands import BY_NAME

_CLI_DIR = Path(__file__).resolve().parent
_DEVLIST_FORMATS = {"text", "json", "normal"}
_FORMAT_OPTIONS = ("-o", "--format", "--output-format")


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
    if argv[:1] == ["devlist"]:
        options = parse_devlist(argv[1:])
        if options is not None:
            from nvmecontrol.cli.output import Format

            human, fmt, verbose = options
            from nvmecontrol.cli.listing import show

            return run_guarded(lambda: show(human, Format(fmt), verbose))
    return None


def _write(text: str) -> int:
    sys.stdout.write(text)
    return 0


def parse_devlist(args: list[str]) -> tuple[bool, str, bool] | None:
    """``(human, format, verbose)`` for the plain spellings of devlist's options, else None."""
    human, fmt, verbose = False, "text", False
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-h", "--human"):
            human = True
        elif a in ("-v", "--verbose"):
            verbose = True
        elif a in _FORMAT_OPTIONS and i + 1 < len(args) and args[i + 1] in _DEVLIST_FORMATS:
            fmt = args[i + 1]
            i += 1
        elif a.partition("=")[0] in _FORMAT_OPTIONS[1:] and a.partition("=")[2] in _DEVLIST_FORMATS:
            fmt = a.partition("=")[2]
        else:
            return None
        i += 1
    return human, fmt, verbose


# --- help -----------------------------------------------------------------------------

def help_width() -> int:
    """The width click formats help to (HelpFormatter: terminal columns, at most 78)."""
    import shutil

    return max(min(shutil.get_terminal_size().columns, 80) - 2, 50)


def help_cache_dir(environ=None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME") or "/nonexistent", ".cache")
    return Path(base) / "nvmecontrol" / "help"


def help_key(argv: list[str], width: int, sources: list[Path] | None = None) -> str:
    """What the help text depends on: argv, width, interpreter, typer and our CLI sources."""
    import hashlib

    h = hashlib.sha256()
    h.update(repr((argv, width, sys.executable, sys.version)).encode())
    for path in _help_sources() if sources is None else sources:
        try:
            st = path.stat()
        except OSError:
            h.update(f"{path}:missing\n".encode())
        else:
            h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def _help_sources() -> list[Path]:
    files = sorted(_CLI_DIR.glob("*.py"))
    from importlib.util import find_spec

    spec = find_spec("typer")
    if spec is not None and spec.origin:
        typer_dir = Path(spec.origin).parent
        files += [typer_dir / "__init__.py", typer_dir / "core.py", typer_dir / "main.py"]
    return files


def help_text(argv: list[str]) -> str | None:
    """The help for ``argv``: cached, else rendered by typer and kept (None: typer failed)."""
    path = help_cache_dir() / help_key(argv, help_width())
    try:
        return path.read_text(encoding="utf-8")
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


def _store(path: Path, text: str) -> None:
    # A cache: when it cannot be written the help was shown all the same.
    import tempfile

    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass
