"""The one error handler: every failure is one line on stderr and a sysexits status.

Shared by the typer path (``app.main``, which first turns click's own
exceptions into statuses) and the start-up fast paths (``fastpath``), so
both report alike.  A traceback only with NVMECONTROL_DEBUG=1.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from nvmecontrol.cli.exitcodes import EX_INTERRUPTED, EX_IOERR, exit_code_for
from nvmecontrol.errors import NvmeControlError


def fail(message: str, code: int) -> int:
    sys.stderr.write(f"nvmecontrol: {message}\n")
    return code


def run_guarded(fn: Callable[[], int | None]) -> int:
    """Run ``fn`` and return its status, or the status of what it raised."""
    debug = os.environ.get("NVMECONTROL_DEBUG")
    try:
        rv = fn()
        return rv if isinstance(rv, int) else 0
    except NvmeControlError as e:
        if debug:
            raise
        return fail(str(e), exit_code_for(e))
    except KeyboardInterrupt:
        return fail("interrupted", EX_INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): not an error worth a message.
        try:
            sys.stdout = None
        finally:
            return EX_IOERR
    except OSError as e:
        if debug:
            raise
        return fail(f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}", exit_code_for(e))
    except Exception as e:  # a bug: still one line, and the way to see more
        if debug:
            raise
        return fail(f"internal error: {type(e).__name__}: {e} "
                    "(set NVMECONTROL_DEBUG=1 for a traceback)", exit_code_for(e))
