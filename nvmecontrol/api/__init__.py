"""The public Python API: discovery, controllers and namespace I/O, for programs.

What ``nvmecontrol discover`` and ``connect`` do, as calls::

    from nvmecontrol import api

    log = api.discover("192.0.2.1:8009")
    for entry in log.entries:
        print(entry.subnqn, entry.traddr, entry.trsvcid)

    with api.connect("192.0.2.1:4420", "nqn.2014-08.org.example:disk") as ctrl:
        ns = ctrl.namespace(1)
        ns.write(0, bytes(4096))
        data = ns.read(0, 8)                            # 8 blocks
        futures = [ns.submit_read(lba, 8) for lba in range(0, 512, 8)]
        blocks = [f.result() for f in futures]          # 64 commands in flight

    with api.open("nvmeu0ns1") as ns:                   # a session's namespace
        ns.write(0, bytes(4096))

A :class:`Controller` reaches its controller one of three ways, each a
transport object of :mod:`nvmecontrol.api.controllers` (``_AssociationLink``,
``_KernelLink``, ``_SessionLink``) behind the one interface:

* :func:`connect`: an association of its own.  Admin commands on its admin
  queue, one at a time, Keep Alive every KATO/2 from a thread of its own; I/O
  queues each with a receiver thread that completes the futures of the
  commands on it, so a program keeps many commands in flight on several
  queues without threads of its own.  Commands go out the way the NBD bridge
  sends them (records queued a batch at a time, read data received straight
  into the caller's buffer).
* :func:`open` of a kernel device (``nvme0``, ``nvme0n1``): admin commands
  through the admin passthrough ioctl, NVM commands through the I/O
  passthrough ioctl on the namespace's block node, run by a few threads so
  that several are in flight.  The kernel keeps the association alive.
* :func:`open` of a userspace session (``nvmeu0``, ``nvmeu0ns1``): admin
  commands through the session's control socket, I/O through its NBD export,
  pipelined on one connection per namespace.  The session keeps the
  association alive (and reconnects it).

Errors are the package's own families (:mod:`nvmecontrol.errors`), re-exported
here: a command that completes with an error status raises
:class:`CommandFailed`, whose ``status`` is the NVMe status field and whose
message names it (:class:`CommandError`, its subclass, also carries the
completion queue entry when the command went over our own association).
The public submodules do one job each (``api.discovery``, ``api.admin``,
``api.reservations``, ``api.fabrics``, ``api.hosts``, ``api.keys``,
``api.structures``, ``api.tuning``, ``api.addresses``, ``api.controllers``)
and are reachable as attributes; the most used names are in ``__all__``
here too.  Everything else, and every name with a leading underscore, is
private.  Names load on first use, so importing the package costs nothing
at start-up.
"""

from __future__ import annotations

from nvmecontrol.api._lazy import lazy_names

# Not typing.TYPE_CHECKING: importing typing costs start-up time (issue 13).
TYPE_CHECKING = False

# name -> the module that defines it.  Loaded on first use, so that a
# command importing one part of the API (or only its errors) does not pay
# for the rest at start-up (issue 13: start-up within 4x a bare interpreter).
_WHERE = {
    # Controllers and namespaces, with their I/O.
    "connect": "nvmecontrol.api.controllers",
    "open": "nvmecontrol.api.controllers",
    "Controller": "nvmecontrol.api.controllers",
    "Namespace": "nvmecontrol.api.controllers",
    "IoRequest": "nvmecontrol.api.controllers",
    # Discovery.
    "discover": "nvmecontrol.api.discovery",
    "read_discovery": "nvmecontrol.api.discovery",
    "Discovery": "nvmecontrol.api.discovery",
    "DiscoveryLog": "nvmecontrol.host.discovery",
    # One-shot admin commands and reservations on any kind of controller.
    "open_controller": "nvmecontrol.api.admin",
    "AdminController": "nvmecontrol.api.admin",
    "ConnectOptions": "nvmecontrol.api.admin",
    "Identified": "nvmecontrol.api.admin",
    "open_reservations": "nvmecontrol.api.reservations",
    "Reservations": "nvmecontrol.api.reservations",
    "ReservationReport": "nvmecontrol.api.reservations",
    # How an association is tuned (the option table's defaults).
    "Tuning": "nvmecontrol.api.tuning",
    # Errors.
    "Error": "nvmecontrol.api.controllers",
    "CommandError": "nvmecontrol.host.queue",
    "CommandFailed": "nvmecontrol.errors",
    "ConnectError": "nvmecontrol.errors",
    "ConnectionLost": "nvmecontrol.errors",
    "DeviceError": "nvmecontrol.errors",
    "NotFound": "nvmecontrol.errors",
    "PeerTimeout": "nvmecontrol.errors",
    "Unsupported": "nvmecontrol.errors",
    "UsageError": "nvmecontrol.errors",
}
# The public submodules, also reachable as attributes (``api.fabrics.connect``):
# handing controllers to a backend, the host's identity, DH-HMAC-CHAP keys,
# addresses, the structures returned, and the modules above.
_SUBMODULES = frozenset({"addresses", "admin", "controllers", "discovery", "fabrics", "hosts",
                         "keys", "reservations", "structures", "tuning"})

__all__ = list(_WHERE)


__getattr__, __dir__ = lazy_names(__name__, _WHERE, _SUBMODULES)


if TYPE_CHECKING:  # what type checkers and IDEs see: the names, eagerly
    from nvmecontrol.api.admin import AdminController, ConnectOptions, Identified, open_controller
    from nvmecontrol.api.controllers import Controller, Error, IoRequest, Namespace, connect, open
    from nvmecontrol.api.discovery import Discovery, discover, read_discovery
    from nvmecontrol.api.reservations import (ReservationReport, Reservations,
                                              open_reservations)
    from nvmecontrol.api.tuning import Tuning
    from nvmecontrol.errors import (CommandFailed, ConnectError, ConnectionLost, DeviceError,
                                    NotFound, PeerTimeout, Unsupported, UsageError)
    from nvmecontrol.host.discovery import DiscoveryLog
    from nvmecontrol.host.queue import CommandError
