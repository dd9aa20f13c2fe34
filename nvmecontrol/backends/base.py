"""The interface every association backend implements.

A backend is where an association lives once ``connect`` has built and
checked it in userspace (the pre-flight): the Linux kernel (which dials
again from the options string), FreeBSD's kernel (which adopts our
sockets), or a userspace session serving NBD.  The CLI only ever talks to
this interface, so ``devlist``, ``disconnect`` and ``reconnect`` treat them
alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

TYPE_CHECKING = False  # typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from nvmecontrol.backends.model import ConnectParams, ControllerInfo


class AssociationBackend(ABC):
    """Where established associations are handed to, and found again."""

    name: str = ""  # "kernel", "nbd", "freebsd": the --backend spelling

    @classmethod
    @abstractmethod
    def available(cls) -> bool:
        """Whether this backend can work on this system right now."""

    @abstractmethod
    def owns(self, name: str) -> bool:
        """Whether a device or namespace name (nvme0, nvmeu1ns2, /dev/...) is of this backend."""

    @abstractmethod
    def list(self) -> list[ControllerInfo]:
        """Every controller this backend holds, sorted by name."""

    def find(self, params: ConnectParams) -> ControllerInfo | None:
        """An existing association to the same subsystem, address and host."""
        for info in self.list():
            if info.params is not None and info.params.same_association(params):
                return info
        return None

    @abstractmethod
    def connect(self, assoc, params: ConnectParams, dle: bytes | None = None) -> ControllerInfo:
        """Take over a live, checked association (``host.association.Association``).

        The backend owns ``assoc`` afterwards: it hands the queues on, or
        shuts the association down and lets the kernel dial again.  ``dle``
        is the 1024-byte discovery log entry it came from, if any.
        """

    @abstractmethod
    def disconnect(self, name: str) -> list[str]:
        """Delete the controller ``name`` names (a device, namespace or SubNQN); returns names deleted."""

    def disconnect_all(self) -> list[str]:
        names = []
        for info in self.list():
            names.extend(self.disconnect(info.name))
        return names

    @abstractmethod
    def reconnect(self, name: str, params: ConnectParams | None = None) -> ControllerInfo:
        """Force a new association for ``name``: with its saved parameters, or ``params``."""
