"""The ``nvmecontrol`` command tree (typer), built lazily from ``commands``.

Every error reaches the user as one line on stderr and a sysexits status
(``errorhandler``, ``exitcodes``); a traceback only with NVMECONTROL_DEBUG=1.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import MutableMapping

import typer
from typer._click import exceptions as click_exc  # typer vendors click (>= 0.26)
from typer.core import TyperCommand, TyperGroup
from typer.main import get_command_from_info
from typer.models import CommandInfo

from nvmecontrol import __version__
from nvmecontrol.cli.commands import BY_NAME, SUBCOMMANDS, Subcommand
from nvmecontrol.cli.errorhandler import fail, run_guarded
from nvmecontrol.cli.exitcodes import EX_INTERRUPTED, EX_USAGE


class LazyCommands(MutableMapping):
    """The subcommands by name; a subcommand's module is imported when it is looked up.

    Commands registered on the typer app the usual way (``app.command``)
    come first-class too, after the lazy ones.
    """

    def __init__(self, eager: dict):
        self._built: dict = dict(eager)
        self._names = [s.name for s in SUBCOMMANDS] + [n for n in eager if n not in BY_NAME]

    def __getitem__(self, name):
        if name not in self._built:
            sub = BY_NAME[name]  # KeyError: no such command, as for a dict
            self._built[name] = _build(sub)
        return self._built[name]

    def __setitem__(self, name, command):
        if name not in self._names:
            self._names.append(name)
        self._built[name] = command

    def __delitem__(self, name):
        self._names.remove(name)
        self._built.pop(name, None)

    def __iter__(self):
        return iter(self._names)

    def __len__(self):
        return len(self._names)

    def summaries(self) -> dict:
        """Stand-ins that carry only the one-line help, for the top-level help."""
        return {n: self._built[n] if n in self._built or n not in BY_NAME
                else TyperCommand(name=n, help=BY_NAME[n].help) for n in self._names}


def _build(sub: Subcommand):
    module = importlib.import_module(sub.module)
    info = CommandInfo(sub.name, callback=module.command, help=sub.help,
                       no_args_is_help=sub.no_args_is_help)
    return get_command_from_info(info, pretty_exceptions_short=True, rich_markup_mode=None)


class LazyGroup(TyperGroup):
    """typer's group over LazyCommands: start-up imports no subcommand."""

    def __init__(self, *, commands=None, **attrs):
        super().__init__(commands=LazyCommands(dict(commands or {})), **attrs)

    def format_commands(self, ctx, formatter) -> None:
        # click's own layout, fed with help-only stand-ins instead of the
        # commands (building those would import every subcommand).
        commands = self.commands
        self.commands = commands.summaries()
        try:
            super().format_commands(ctx, formatter)
        finally:
            self.commands = commands


# -h is devlist's --human in FreeBSD, so help is --help only.
app = typer.Typer(
    name="nvmecontrol",
    cls=LazyGroup,
    help="NVMe over Fabrics (NVMe/TCP) control: discover, connect, devlist, identify, logpage.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool):
    if value:
        print(f"nvmecontrol {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Show the version and exit.")):
    """NVMe over Fabrics (NVMe/TCP) control."""


def main(argv: list[str] | None = None) -> int:
    return run_guarded(lambda: _invoke(argv))


def _invoke(argv: list[str] | None) -> int:
    """typer's run, with click's exceptions turned into statuses (the rest: run_guarded)."""
    try:
        rv = app(args=argv, prog_name="nvmecontrol", standalone_mode=False)
        if rv == EX_INTERRUPTED:
            # typer turns a KeyboardInterrupt into exit status 130, silently.
            return fail("interrupted", EX_INTERRUPTED)
        return rv if isinstance(rv, int) else 0
    except click_exc.MissingParameter as e:
        # One line: what is missing and the synopsis (not a page of help).
        usage = " ".join(e.ctx.get_usage().split()) if e.ctx is not None else ""
        return fail(f"{e.format_message()} {usage.replace('Usage:', 'usage:', 1)}".rstrip(),
                    EX_USAGE)
    except click_exc.NoArgsIsHelpError as e:
        # No arguments at all: the help on stderr as it is (FreeBSD prints its
        # usage there and exits EX_USAGE), not one "nvmecontrol: " line.
        sys.stderr.write(e.format_message().rstrip("\n") + "\n")
        return EX_USAGE
    except click_exc.UsageError as e:
        return fail(e.format_message(), EX_USAGE)
    except click_exc.ClickException as e:
        return fail(e.format_message(), EX_USAGE)
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        return fail("interrupted", EX_INTERRUPTED)


if __name__ == "__main__":  # python -m nvmecontrol.cli.app, as python -m nvmecontrol
    sys.exit(main())
