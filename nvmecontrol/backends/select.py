"""Choosing a backend: ``--backend``, or what this system offers.

``auto`` is the kernel on Linux when ``/dev/nvme-fabrics`` exists, FreeBSD's
kernel when ``/dev/nvmf`` exists, else a userspace session (``nbd``), which
works everywhere.  Device names say which backend holds them, so
disconnect, reconnect, identify and logpage need no option.
"""

from __future__ import annotations

from nvmecontrol.backends import presence
from nvmecontrol.backends.base import AssociationBackend
from nvmecontrol.errors import NotFound, Unsupported, UsageError

NAMES = ("auto", "kernel", "nbd", "freebsd")


def _kernel():
    from nvmecontrol.backends.linux import LinuxKernelBackend
    return LinuxKernelBackend


def _freebsd():
    from nvmecontrol.backends.freebsd.backend import FreeBsdBackend
    return FreeBsdBackend


def _nbd():
    from nvmecontrol.backends.userspace.backend import UserspaceBackend
    return UserspaceBackend


_CLASSES = {"kernel": _kernel, "freebsd": _freebsd, "nbd": _nbd}


def backend_class(name: str):
    try:
        return _CLASSES[name]()
    except KeyError:
        raise UsageError(f"unknown backend {name!r} (one of {', '.join(NAMES)})") from None


def choose(name: str = "auto", **nbd_options) -> AssociationBackend:
    """The backend ``connect`` hands associations to."""
    if name == "auto":
        for candidate in ("kernel", "freebsd"):
            cls = backend_class(candidate)
            if cls.available():
                return cls()
        name = "nbd"
    cls = backend_class(name)
    if not cls.available():
        why = {"kernel": "no /dev/nvme-fabrics (is nvme-tcp loaded? are you root?)",
               "freebsd": "no /dev/nvmf (FreeBSD 15 with nvmf(4) loaded)"}.get(name, "")
        raise Unsupported(f"backend {name} is not available here: {why}".rstrip(": "))
    return cls(**nbd_options) if name == "nbd" else cls()


def present() -> list[AssociationBackend]:
    """Every backend that may hold controllers on this system (for devlist).

    A backend absent here is not even imported (listing stays quick).
    """
    return [backend_class(name)() for name in ("kernel", "freebsd", "nbd")
            if name == "nbd" or presence.BY_NAME[name]()]


def owner_of(name: str) -> AssociationBackend:
    """The backend holding device ``name``; NotFound when none does."""
    for backend in present():
        if backend.owns(name):
            return backend
    raise NotFound(f"no such device {name!r} (nvmeX, nvmeXnY or a session nvmeuN; "
                   "see nvmecontrol devlist)")
