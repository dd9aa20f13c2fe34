"""Admin commands on a controller, whatever holds it: ``open_admin(name)``.

A controller is reached three ways, and callers (``cli/device.py``, the
public API) want one method for all of them:

* ``nvmeX``, ``nvmeXnY``, ``nvmeXcYnZ`` (with or without ``/dev/``): the Linux
  kernel holds the association; commands go through NVME_IOCTL_ADMIN_CMD on
  the device node (``linux_admin``).
* ``nvmeuN``, ``nvmeuNnsM``: a userspace session holds it; commands go
  through its control socket (``userspace/control.py``, op ``admin``).
* an :class:`~nvmecontrol.host.association.Association` of our own (a
  one-shot CLI association, ``api.connect``): its admin queue, with the
  association's re-authentication on Authentication Required.

Every kind runs ``admin_command(sqe, what, read_len=...) -> (dw0, data)``
and raises :class:`~nvmecontrol.errors.CommandFailed` (``status``: the NVMe
status field; the message names it) when the command completes with an
error status.
"""

from __future__ import annotations

import abc
import base64

from nvmecontrol.backends.names import parse_device_name, parse_session_name
from nvmecontrol.errors import CommandFailed, UsageError
from nvmecontrol.wire.capsule import SQE, encode_sqe
from nvmecontrol.wire.status import describe_status, status_is_error

TYPE_CHECKING = False  # typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from nvmecontrol.backends.linux_admin import KernelController


class AdminAccess(abc.ABC):
    """Runs admin commands on one controller.

    ``name`` is what the caller named (a device, a session, an address and
    NQN); ``nsid`` the namespace the name designates (``nvme0n1``,
    ``nvmeu0ns1``), else None; ``kind`` is ``kernel``, ``session`` or
    ``association``.
    """

    kind = ""

    def __init__(self, name: str, nsid: int | None):
        self.name = name
        self.nsid = nsid

    @abc.abstractmethod
    def admin_command(self, sqe: SQE, what: str, *, read_len: int = 0) -> tuple[int, bytes]:
        """Run ``sqe``: (completion dword 0, the ``read_len`` bytes it returned)."""

    def close(self) -> None:
        """Let go of the controller (a one-shot association is shut down)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class KernelAccess(AdminAccess):
    """A controller of the Linux kernel, through the admin passthrough ioctl."""

    kind = "kernel"

    def __init__(self, name: str, device: KernelController):
        super().__init__(name, device.nsid)
        self.device = device  # also carries NVM commands of a namespace node (io_command)

    def admin_command(self, sqe: SQE, what: str, *, read_len: int = 0) -> tuple[int, bytes]:
        return self.device.admin_command(sqe, what, read_len)

    def close(self) -> None:
        self.device.close()


class SessionAccess(AdminAccess):
    """A userspace session's controller, through the session's control socket."""

    kind = "session"

    def __init__(self, name: str, *, environ=None):
        # Finds the session, checks its process and opens the control socket
        # (NotFound / ConnectError when it cannot).
        # Imported here: each command reaches one kind of controller and
        # loads only that kind's machinery (start-up of identify, logpage).
        from nvmecontrol.backends.userspace.session_admin import SessionAdmin

        self.session = SessionAdmin(name, environ=environ)
        super().__init__(self.session.name, self.session.nsid)
        self.environ = environ

    def admin_command(self, sqe: SQE, what: str, *, read_len: int = 0) -> tuple[int, bytes]:
        reply = self.session.client.request("admin", sqe=encode_sqe(sqe).hex(),
                                            read_len=read_len)
        status = reply["status"]
        if status_is_error(status):
            raise CommandFailed(f"{what} failed: {describe_status(status)}", status)
        return reply.get("dw0", 0), base64.b64decode(reply["data"])

    def close(self) -> None:
        self.session.close()


class AssociationAccess(AdminAccess):
    """An association of our own: its admin queue.  ``close`` shuts it down."""

    kind = "association"

    def __init__(self, name: str, assoc):
        super().__init__(name, None)
        self.assoc = assoc

    def admin_command(self, sqe: SQE, what: str, *, read_len: int = 0) -> tuple[int, bytes]:
        cqe, data = self.assoc.execute(self.assoc.admin, sqe, what, read_len=read_len)
        return cqe.dw0, data

    def close(self) -> None:
        self.assoc.shutdown()


def open_admin(name: str, *, environ=None) -> AdminAccess:
    """The controller a device or session name designates.

    UsageError for a name that is neither; NotFound for a device node or
    session that does not exist; DeviceError when the node cannot be opened.
    """
    if parse_session_name(name) is not None:
        return SessionAccess(name, environ=environ)
    dev = parse_device_name(name)
    if dev is not None:
        from nvmecontrol.backends import linux_io

        return KernelAccess(name, linux_io.open_device(dev))
    raise UsageError(f"{name!r} is not a controller or namespace name "
                     "(nvmeX, nvmeXnY, nvmeuN, nvmeuNnsM)")

