"""The exception families every layer raises.

Each family names a *cause* a user can act on; each program maps families
to the statuses of the one sysexits table both share
(``nvmecontrol.exitcodes``): nvmecontrol in ``cli/exitcodes.py``, nvmfd in
``target/main.py``.  Lower layers never choose exit codes themselves.
"""


class NvmeControlError(Exception):
    """Base of every error this package reports to a user as one line."""


class UsageError(NvmeControlError):
    """A bad argument: NQN, address, option value, unknown device name."""


class ConnectError(NvmeControlError):
    """The transport could not be established (refused, unreachable, DNS)."""


class PeerTimeout(NvmeControlError):
    """The peer stopped answering within the allowed time."""


class PeerProtocolError(NvmeControlError):
    """The peer broke the NVMe/TCP or NVMe protocol (malformed PDU, bad state).

    ``fes``/``fei`` carry the Fatal Error Status and Field Error Information
    that go into a TermReq (NVMe/TCP 3.6.2.9) when the error was found in a
    received PDU header.
    """

    def __init__(self, message: str, fes: int | None = None, fei: int = 0):
        super().__init__(message)
        self.fes = fes
        self.fei = fei
        # The offending PDU header, echoed back in the TermReq (filled by the decoder).
        self.offending = b""


class LocalProtocolError(NvmeControlError):
    """We were about to do something the protocol forbids (a bug or misuse)."""


class ConnectionLost(NvmeControlError):
    """The peer closed the connection or sent a TermReq."""


class CommandFailed(NvmeControlError):
    """An NVMe command completed with a non-zero status.

    ``status`` is the 15-bit status field (SCT<<8 | SC, plus CRD/More/DNR
    bits above) as decoded by ``nvmecontrol.wire.status``.
    """

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


class Unsupported(NvmeControlError):
    """The peer or this system lacks a required feature."""


class DeviceError(NvmeControlError):
    """A local device, file or kernel interface failed (ioctl, sysfs, /dev)."""


class HostRefused(CommandFailed):
    """Connect was refused because the host NQN is not allowed (Connect Invalid Host)."""


class NotFound(NvmeControlError):
    """A named device, session, namespace or subsystem does not exist."""
