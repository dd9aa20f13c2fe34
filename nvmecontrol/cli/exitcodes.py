"""nvmecontrol's map from error families to exit statuses.

The statuses are the shared sysexits table (``nvmecontrol.exitcodes``);
man/nvmecontrol.8 (EXIT STATUS) lists exactly those the CLI uses, and a test
keeps the two in step.
"""

from __future__ import annotations

import errno

from nvmecontrol import errors as E

# The statuses themselves are shared with nvmfd; re-exported for the callers here.
from nvmecontrol.exitcodes import (EX_INTERRUPTED, EX_IOERR, EX_NOHOST, EX_NOINPUT,  # noqa: F401
                                   EX_NOPERM, EX_OK, EX_OSERR, EX_PROTOCOL, EX_SOFTWARE,
                                   EX_TEMPFAIL, EX_UNAVAILABLE, EX_USAGE)

# Most specific first: the first matching family wins.
EXIT_CODES: list[tuple[type, int, str]] = [
    (E.UsageError, EX_USAGE, "bad argument: NQN, address, option value"),
    (E.NotFound, EX_NOINPUT, "no such device, session or subsystem"),
    (E.ConnectError, EX_NOHOST, "cannot reach the address (refused, unreachable, DNS)"),
    (E.Unsupported, EX_UNAVAILABLE, "a required feature is missing on either side"),
    (E.HostRefused, EX_NOPERM, "the controller does not allow this host NQN"),
    (E.CommandFailed, EX_IOERR, "an NVMe command failed with the status shown"),
    (E.ConnectionLost, EX_IOERR, "the connection dropped or the peer sent a TermReq"),
    (E.DeviceError, EX_OSERR, "a local device, ioctl or kernel interface failed"),
    (E.PeerTimeout, EX_TEMPFAIL, "the peer stopped answering in time"),
    (E.PeerProtocolError, EX_PROTOCOL, "the peer broke the NVMe/TCP protocol"),
    (E.LocalProtocolError, EX_SOFTWARE, "internal error: nvmecontrol broke the protocol"),
]


def exit_code_for(exc: BaseException) -> int:
    for family, code, _why in EXIT_CODES:
        if isinstance(exc, family):
            return code
    if isinstance(exc, PermissionError):
        return EX_NOPERM
    if isinstance(exc, FileNotFoundError):
        return EX_NOINPUT
    if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
        return EX_IOERR
    return EX_SOFTWARE
