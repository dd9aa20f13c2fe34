"""nvmecontrol's map from error families to exit statuses.

The statuses are the shared sysexits table (``nvmecontrol.exitcodes``);
man/nvmecontrol.8 (EXIT STATUS) lists exactly those the CLI uses, and a test
keeps the two in step.
"""

from __future__ import annotations

import errno

from nvmecontrol import errors as E
from nvmecontrol import exitcodes as S
# The statuses are the table nvmfd shares; its names are this module's too, for
# its callers, without a list here to keep in step with it.
from nvmecontrol.exitcodes import *  # noqa: F401,F403

# Most specific first: the first matching family wins.
EXIT_CODES: list[tuple[type, int, str]] = [
    (E.UsageError, S.EX_USAGE, "bad argument: NQN, address, option value"),
    (E.NotFound, S.EX_NOINPUT, "no such device, session or subsystem"),
    (E.ConnectError, S.EX_NOHOST, "cannot reach the address (refused, unreachable, DNS)"),
    (E.Unsupported, S.EX_UNAVAILABLE, "a required feature is missing on either side"),
    (E.HostRefused, S.EX_NOPERM, "the controller does not allow this host NQN"),
    (E.CommandFailed, S.EX_IOERR, "an NVMe command failed with the status shown"),
    (E.ConnectionLost, S.EX_IOERR, "the connection dropped or the peer sent a TermReq"),
    (E.DeviceError, S.EX_OSERR, "a local device, ioctl or kernel interface failed"),
    (E.PeerTimeout, S.EX_TEMPFAIL, "the peer stopped answering in time"),
    (E.PeerProtocolError, S.EX_PROTOCOL, "the peer broke the NVMe/TCP protocol"),
    (E.LocalProtocolError, S.EX_SOFTWARE, "internal error: nvmecontrol broke the protocol"),
]


def exit_code_for(exc: BaseException) -> int:
    for family, code, _why in EXIT_CODES:
        if isinstance(exc, family):
            return code
    if isinstance(exc, PermissionError):
        return S.EX_NOPERM
    if isinstance(exc, FileNotFoundError):
        return S.EX_NOINPUT
    if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
        return S.EX_IOERR
    return S.EX_SOFTWARE
