"""The ``nvmecontrol`` command: subcommand registry and the one error handler.

Every error reaches the user as one line on stderr and a sysexits status
(``exitcodes``); a traceback only with NVMECONTROL_DEBUG=1.
"""

from __future__ import annotations

import os
import sys

import typer
from typer._click import exceptions as click_exc  # typer vendors click (>= 0.26)

from nvmecontrol import __version__
from nvmecontrol.cli import (connect, connect_all, devlist, disconnect, disconnect_all, discover,
                             hostnqn, identify, logpage, reconnect)
from nvmecontrol.cli.exitcodes import EX_INTERRUPTED, EX_IOERR, EX_USAGE, exit_code_for
from nvmecontrol.errors import NvmeControlError

# -h is devlist's --human in FreeBSD, so help is --help only.
app = typer.Typer(
    name="nvmecontrol",
    help="NVMe over Fabrics (NVMe/TCP) control: discover, connect, devlist, identify, logpage.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

for module in (devlist, discover, connect, connect_all, disconnect, disconnect_all, reconnect,
               identify, logpage, hostnqn):
    app.command(module.NAME, help=module.HELP, no_args_is_help=module.NO_ARGS_IS_HELP)(module.command)


def _version(value: bool):
    if value:
        print(f"nvmecontrol {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Show the version and exit.")):
    """NVMe over Fabrics (NVMe/TCP) control."""


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"nvmecontrol: {message}\n")
    return code


def main(argv: list[str] | None = None) -> int:
    debug = os.environ.get("NVMECONTROL_DEBUG")
    try:
        rv = app(args=argv, prog_name="nvmecontrol", standalone_mode=False)
        if rv == EX_INTERRUPTED:
            # typer turns a KeyboardInterrupt into exit status 130, silently.
            return _fail("interrupted", EX_INTERRUPTED)
        return rv if isinstance(rv, int) else 0
    except NvmeControlError as e:
        if debug:
            raise
        return _fail(str(e), exit_code_for(e))
    except click_exc.MissingParameter as e:
        # One line: what is missing and the synopsis (not a page of help).
        usage = " ".join(e.ctx.get_usage().split()) if e.ctx is not None else ""
        return _fail(f"{e.format_message()} {usage.replace('Usage:', 'usage:', 1)}".rstrip(),
                     EX_USAGE)
    except click_exc.UsageError as e:
        return _fail(e.format_message(), EX_USAGE)
    except click_exc.ClickException as e:
        return _fail(e.format_message(), EX_USAGE)
    except typer.Exit as e:
        return e.exit_code
    except (KeyboardInterrupt, typer.Abort):
        return _fail("interrupted", EX_INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): not an error worth a message.
        try:
            sys.stdout = None
        finally:
            return EX_IOERR
    except OSError as e:
        if debug:
            raise
        return _fail(f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}", exit_code_for(e))
    except Exception as e:  # a bug: still one line, and the way to see more
        if debug:
            raise
        return _fail(f"internal error: {type(e).__name__}: {e} "
                     "(set NVMECONTROL_DEBUG=1 for a traceback)", exit_code_for(e))


if __name__ == "__main__":  # python -m nvmecontrol.cli.app, as python -m nvmecontrol
    sys.exit(main())
