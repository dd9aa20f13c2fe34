"""The console entry point (``nvmecontrol``, ``python -m nvmecontrol``).

Loading the command line (typer, rich) takes a few tenths of a second; a
Ctrl-C in that time would end in a traceback, before ``app.main`` and its
one error handler exist.  Until then an interrupt ends the command quietly
with the usual status.
"""

from __future__ import annotations

import os
import signal
import sys

EX_INTERRUPTED = 130  # as exitcodes.EX_INTERRUPTED, without importing the CLI first


def _interrupted_while_loading(_signum, _frame) -> None:
    # os.write, not sys.stderr: the interrupt may land inside a write to it.
    try:
        os.write(2, b"nvmecontrol: interrupted\n")
    finally:
        os._exit(EX_INTERRUPTED)


def run() -> None:
    signal.signal(signal.SIGINT, _interrupted_while_loading)
    from nvmecontrol.cli.app import main

    # From here on Ctrl-C is a KeyboardInterrupt that main reports.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
