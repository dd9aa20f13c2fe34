"""The console entry point (``nvmecontrol``, ``python -m nvmecontrol``).

The help texts and the commands that run in loops or end at once (devlist,
identify, logpage, discover, hostnqn, the DH-HMAC-CHAP keys) start without
typer (``fastpath``); everything else, and any command line the fast path
does not fully understand, loads the typer command tree, in which each
subcommand's module is imported only when it runs.

Loading the command line (typer, rich) takes a few tenths of a second; a
Ctrl-C in that time would end in a traceback, before ``app.main`` and its
one error handler exist.  Until then an interrupt ends the command quietly
with the usual status.
"""

from __future__ import annotations

import os
import sys

# The interpreter's own C module, loaded before any script: ``signal`` would
# first build its enums, a millisecond in which Ctrl-C still ends in a traceback.
import _signal

# The shared status table imports nothing, so reading it here loads no CLI.
from nvmecontrol.exitcodes import EX_INTERRUPTED


def _interrupted_while_loading(_signum, _frame) -> None:
    # os.write, not sys.stderr: the interrupt may land inside a write to it.
    try:
        os.write(2, b"nvmecontrol: interrupted\n")
    finally:
        os._exit(EX_INTERRUPTED)


def run() -> None:
    _signal.signal(_signal.SIGINT, _interrupted_while_loading)
    from nvmecontrol.cli.fastpath import try_run

    status = try_run(sys.argv[1:])
    if status is not None:  # help, --version, the fast commands: typer is not loaded
        sys.exit(status)
    from nvmecontrol.cli.app import main

    # From here on Ctrl-C is a KeyboardInterrupt that main reports.
    _signal.signal(_signal.SIGINT, _signal.default_int_handler)
    sys.exit(main())
