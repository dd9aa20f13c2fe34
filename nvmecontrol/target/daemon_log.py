"""nvmfd's log: the "nvmfd" logger, where it writes, and its formatter.

Apart from ``main`` so that ``nvmfd --help`` and usage errors do not import
``logging`` (a fifth of a bare interpreter start here): the daemon sets it
up once its command line is parsed.
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager

log = logging.getLogger("nvmfd")


class _SyslogHandler(logging.Handler):
    def __init__(self):
        super().__init__()
        import syslog
        self._syslog = syslog
        syslog.openlog("nvmfd", syslog.LOG_PID, syslog.LOG_DAEMON)

    def emit(self, record):
        prio = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
                logging.CRITICAL: 2}.get(record.levelno, 6)
        try:
            self._syslog.syslog(prio, self.format(record))
        except Exception:
            pass


class SafeFormatter(logging.Formatter):
    """Text a host sent that is not UTF-8 (an NQN in Connect data, decoded with
    surrogateescape) is logged escaped: writing it raw makes the handler fail,
    with a traceback on stderr and the line lost."""

    def format(self, record) -> str:
        return super().format(record).encode("utf-8", "backslashreplace").decode("utf-8")


def setup(args) -> None:
    """Log to ``--log-file``, stderr in the foreground (``-F``), else syslog."""
    log.handlers.clear()
    log.propagate = False
    if args.log_file:
        handler: logging.Handler = logging.FileHandler(args.log_file)
        handler.setFormatter(SafeFormatter("%(asctime)s nvmfd: %(message)s"))
    elif args.foreground:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(SafeFormatter("nvmfd: %(message)s"))
    else:
        handler = _SyslogHandler()
        handler.setFormatter(SafeFormatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO if args.foreground else logging.WARNING)


@contextmanager
def kept():
    """In-process callers (tests) get the "nvmfd" logger back as it was."""
    saved = (list(log.handlers), log.propagate, log.level)
    try:
        yield log
    finally:
        log.handlers[:], log.propagate = saved[0], saved[1]
        log.setLevel(saved[2])
