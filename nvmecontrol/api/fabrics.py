"""Controllers handed to a backend: connect, list, disconnect and reconnect them.

What ``nvmecontrol connect``, ``devlist``, ``disconnect``,
``disconnect-all`` and ``reconnect`` do.  :func:`connect` builds and checks
the association here first (a refused host, an authentication requirement or
a queue size the controller cannot take fail with the decoded status), then
a backend takes it over and keeps it after this process ends:

* ``kernel``: Linux's NVMe/TCP host, through ``/dev/nvme-fabrics`` (the
  kernel dials again with the same parameters), giving ``/dev/nvmeXnY``;
* ``freebsd``: FreeBSD's ``nvmf(4)``, which adopts the connected sockets;
* ``nbd``: a userspace session process that holds the association, serves
  each namespace over NBD (attached to ``/dev/nbdX`` when the kernel has
  the driver) and reconnects it when it drops.

``auto`` takes the kernel's where there is one, else a session; its reason
for a session is :func:`why_not_kernel`.  Controllers are named as
``devlist`` names them: ``nvme0`` (kernel), ``nvmeu0`` (session), and their
namespaces ``nvme0n1``, ``nvmeu0ns1``.

Nothing here is imported before it is used: listing costs no host logic.
"""

from __future__ import annotations

import sys
from collections import namedtuple

from nvmecontrol.errors import NotFound, UsageError
from nvmecontrol.options import CNTLID_DYNAMIC

TYPE_CHECKING = False  # typing's, without importing typing (devlist's start-up)
if TYPE_CHECKING:
    from nvmecontrol.api.tuning import Tuning
    from nvmecontrol.backends.base import AssociationBackend
    from nvmecontrol.backends.model import ControllerInfo
    from nvmecontrol.errors import CommandFailed
    from nvmecontrol.hostid import HostIdentity
    from nvmecontrol.transport.address import Address
    from nvmecontrol.wire.discovery import DiscoveryLogEntry

__all__ = ["Connected", "Refusal", "choose_backend", "why_not_kernel", "attach_problem",
           "connect", "connect_entry", "unusable", "connect_refusal", "controllers",
           "disconnect", "disconnect_subsystem", "disconnect_all", "reconnect",
           "is_device_name"]


class Connected:
    """A controller :func:`connect` handed to a backend, or found there already."""

    # Plain slots, not a dataclass: devlist imports this module, and
    # ``import dataclasses`` costs about a bare interpreter start.  Not a
    # wire.records.Record either: ``connect --help`` imports this module and
    # loads nothing below the API (tests/cli/test_startup.py).
    __slots__ = ("info", "existing")

    def __init__(self, info: ControllerInfo, existing: bool):
        self.info = info  # as devlist shows it: name, subnqn, address, namespaces, backend
        self.existing = existing  # the same subsystem, address and host was connected before

    def __repr__(self) -> str:
        return f"Connected(info={self.info!r}, existing={self.existing!r})"

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return (self.info, self.existing) == (other.info, other.existing)

    __hash__ = None  # mutable, as the dataclass it was


# -- the backend ------------------------------------------------------------------------------------

def choose_backend(name: str = "auto", *, nbd_listen: str | None = None,
                   attach: bool = True) -> AssociationBackend:
    """The backend ``name`` names (``auto``, ``kernel``, ``nbd``, ``freebsd``).

    ``nbd_listen`` (``host:port``) also serves a session's exports over TCP;
    ``attach`` False keeps them off ``/dev/nbdX``.  A backend this system
    lacks is :class:`nvmecontrol.errors.Unsupported`, an unknown name a
    UsageError.
    """
    from nvmecontrol.backends import select

    return select.choose(name, nbd_tcp=nbd_listen, attach=attach)


def why_not_kernel(platform: str | None = None) -> str:
    """Why ``auto`` found no kernel NVMe/TCP host here, and the fix (one line)."""
    plat = sys.platform if platform is None else platform
    if plat.startswith("linux"):
        return ("no /dev/nvme-fabrics (the nvme-tcp module is not loaded: "
                "modprobe nvme-tcp for /dev/nvmeXnY)")
    if plat.startswith("freebsd"):
        return "no /dev/nvmf (kldload nvmf_tcp for the kernel host, FreeBSD 15 and later)"
    return f"no kernel NVMe/TCP host on {plat}"


def attach_problem(attach: bool = True) -> str | None:
    """Why a session's exports will not appear as ``/dev/nbdX``, or None."""
    if not attach:
        return None
    from nvmecontrol.backends.userspace import attach as nbd_attach

    if not nbd_attach.kernel_has_nbd():
        return "not attached to /dev/nbdX: the kernel has no nbd driver (modprobe nbd)"
    return None


# -- connecting -------------------------------------------------------------------------------------

def connect(address: str | Address, subnqn: str, *,
            backend: str | AssociationBackend = "auto", host: HostIdentity | None = None,
            tuning: Tuning | None = None, cntlid: int = CNTLID_DYNAMIC,
            dle: bytes | None = None) -> Connected:
    """Connect the I/O controller ``subnqn`` at ``address`` and hand it to ``backend``.

    ``address`` is ``host:port`` (port 4420 when left out) or a parsed
    :class:`nvmecontrol.api.addresses.Address`; ``host`` the identity to
    connect as (default: :func:`nvmecontrol.api.hosts.resolve_host`);
    ``cntlid`` a static controller ID (default: dynamic); ``dle`` the
    1024-byte discovery log entry the subsystem came from, which a backend
    keeps.  An existing association to the same subsystem, address and host
    is returned (``existing``), not duplicated: the check and the connect run
    under one lock per subsystem and host NQN, across processes.  A refused
    Connect raises :class:`nvmecontrol.errors.CommandFailed`
    (:func:`connect_refusal` says which field).
    """
    import dataclasses

    from nvmecontrol.api.admin import parse_secrets
    from nvmecontrol.api.tuning import Tuning
    from nvmecontrol.backends import runtime
    from nvmecontrol.backends.model import ConnectParams
    from nvmecontrol.host.association import connect_association
    from nvmecontrol.hostid import resolve_host_identity
    from nvmecontrol.transport.address import IO_PORT, parse_address

    tuning = Tuning() if tuning is None else tuning
    # Malformed secrets, or a controller secret without the host's, before anything is dialled.
    parse_secrets(tuning.dhchap_secret, tuning.dhchap_ctrl_secret)
    if isinstance(address, str):
        address = parse_address(address, default_port=IO_PORT)
    if isinstance(backend, str):
        backend = choose_backend(backend)
    host = resolve_host_identity() if host is None else host
    params = ConnectParams.of(tuning, address.host, str(address.port), subnqn, host,
                              cntlid=cntlid)
    with runtime.locked(_association_lock(subnqn, host.hostnqn)):
        existing = backend.find(params)
        if existing is not None:
            return Connected(existing, True)
        assoc = connect_association(address, subnqn, host, params.association_params())
        try:
            # Recorded with the numeric address that answered, so that
            # localhost:P and 127.0.0.1:P are one association.
            numeric = dataclasses.replace(params, traddr=assoc.peer_host or params.traddr)
            existing = backend.find(numeric) if numeric.traddr != params.traddr else None
            if existing is not None:
                assoc.shutdown()
                return Connected(existing, True)
            info = backend.connect(assoc, numeric, dle)
        except BaseException:
            assoc.close()
            raise
    return Connected(info, False)


def _association_lock(subnqn: str, hostnqn: str) -> str:
    """The lock file name of one (SubNQN, host NQN) pair (NQNs may hold any byte)."""
    import hashlib

    digest = hashlib.sha256(f"{subnqn}\0{hostnqn}".encode("utf-8", "surrogateescape")).hexdigest()
    return f"assoc-{digest[:32]}"


def unusable(entry: DiscoveryLogEntry) -> str:
    """Why this host cannot connect a discovery log entry ("" when it can)."""
    from nvmecontrol.wire.discovery import AdrFam, TcpSecType, TrType

    if entry.trtype != TrType.TCP:
        return f"unsupported transport {entry.trtype}"
    if entry.adrfam not in (AdrFam.IPV4, AdrFam.IPV6):
        return f"unsupported address family {entry.adrfam}"
    if entry.sectype not in (TcpSecType.NONE,):
        return "requires TLS, which nvmecontrol does not support"
    try:
        int(entry.trsvcid)
    except ValueError:
        return f"invalid port {entry.trsvcid!r}"
    return ""


def connect_entry(entry: DiscoveryLogEntry, *, backend: str | AssociationBackend = "auto",
                  host: HostIdentity | None = None, tuning: Tuning | None = None,
                  cntlid: int | None = None) -> Connected:
    """:func:`connect` the subsystem of a discovery log entry, at the entry's address.

    ``cntlid`` None asks for the entry's controller ID.  The backend keeps
    the entry.  Check :func:`unusable` first (a port that is not a number
    raises ValueError here).
    """
    from nvmecontrol.transport.address import Address, format_address
    from nvmecontrol.wire.discovery import encode_discovery_entry

    address = Address(entry.traddr, int(entry.trsvcid),
                      format_address(entry.traddr, entry.trsvcid))
    return connect(address, entry.subnqn, backend=backend, host=host, tuning=tuning,
                   cntlid=entry.cntlid if cntlid is None else cntlid,
                   dle=encode_discovery_entry(entry))


Refusal = namedtuple("Refusal", (
    "field",  # SUBNQN, HOSTNQN, HOSTID, CNTLID, SQSIZE, QID, KATO, CATTR, RECFMT
    "offset",  # the byte the controller points at (IPO)
    "in_data",  # of the Connect data (else of the Connect command)
))
Refusal.__doc__ = "The Connect field a controller refused (Connect Invalid Parameters)."


def connect_refusal(error: CommandFailed) -> Refusal | None:
    """Which field a Connect refused with Invalid Parameters names, else None.

    The controller points at a byte (NVMe over Fabrics, Connect response:
    IATTR/IPO); this names the field there.
    """
    from nvmecontrol.wire.fabrics import parse_connect_invalid
    from nvmecontrol.wire.status import (SC_CONNECT_INVALID_PARAM, SCT_COMMAND_SPECIFIC,
                                         connect_invalid_field, decode_status)

    cqe = getattr(error, "cqe", None)
    st = decode_status(error.status)
    if cqe is None or (int(st.sct), st.sc) != (SCT_COMMAND_SPECIFIC, SC_CONNECT_INVALID_PARAM):
        return None
    ipo, in_data = parse_connect_invalid(cqe.dw0)
    field = connect_invalid_field(ipo, in_data)
    return None if field is None else Refusal(field, ipo, in_data)


# -- the controllers the backends hold --------------------------------------------------------------

def controllers() -> list[ControllerInfo]:
    """Every controller of every backend present, with its namespaces (``devlist``)."""
    from nvmecontrol.backends import select

    out = []
    for backend in select.present():
        out += backend.list()
    return out


def is_device_name(text: str) -> bool:
    """Whether ``text`` names a controller or namespace (``nvme0``, ``nvme0n1``,
    ``nvmeu0``, ``nvmeu0ns1``; ``/dev/`` in front or not)."""
    from nvmecontrol.backends.names import parse_device_name, parse_session_name

    return parse_device_name(text) is not None or parse_session_name(text) is not None


def disconnect(target: str) -> list[str]:
    """Disconnect a controller or namespace name, else every controller of a subsystem NQN.

    Returns the names of the controllers disconnected.  A name no backend
    holds is NotFound; what is neither a name nor an NQN, a UsageError.
    """
    from nvmecontrol.backends import select
    from nvmecontrol.nqn import looks_like_nqn

    for backend in select.present():
        if backend.owns(target):
            return backend.disconnect(target)
    if is_device_name(target):
        raise NotFound(f"no controller {target} (nvmecontrol devlist lists them)")
    if not looks_like_nqn(target):
        raise UsageError(f"{target!r} is neither a device name (nvmeX, nvmeXnY, nvmeuN) "
                         "nor a subsystem NQN")
    return disconnect_subsystem(target)


def disconnect_subsystem(subnqn: str) -> list[str]:
    """Every controller of ``subnqn``, whichever backend holds it (NotFound: none)."""
    from nvmecontrol.backends import select

    names = []
    for backend in select.present():
        if any(c.subnqn == subnqn for c in backend.list()):
            names += backend.disconnect(subnqn)
    if not names:
        raise NotFound(f"no controller is connected to {subnqn}")
    return names


def disconnect_all() -> list[str]:
    """Every fabrics controller of every backend (never a PCIe one); the names."""
    from nvmecontrol.backends import select

    names = []
    for backend in select.present():
        names += backend.disconnect_all()
    return names


def reconnect(device: str, address: str | Address | None = None, *,
              tuning: Tuning | None = None, hostnqn: str | None = None,
              hostid: str | None = None) -> ControllerInfo:
    """A new association for the controller ``device`` (``nvme0``, ``nvmeu0``).

    Without ``address``: with its saved parameters (a session keeps its NBD
    clients' requests meanwhile and replays them; the kernel resets the
    controller).  With ``address`` (``host:port``, port required): there,
    with ``tuning`` (default: the table's) and the saved subsystem,
    controller ID and host NQN and ID unless ``hostnqn``/``hostid`` are given;
    a ``tuning`` without DH-HMAC-CHAP secrets takes the saved ones (the
    association's credentials, which the command line has no option for).
    """
    import dataclasses

    from nvmecontrol.api.tuning import Tuning
    from nvmecontrol.backends import select
    from nvmecontrol.backends.model import ConnectParams
    from nvmecontrol.hostid import resolve_host_identity
    from nvmecontrol.transport.address import parse_address

    backend = select.owner_of(device)
    params = None
    if address is not None:
        found = next((c for c in backend.list() if c.name == device), None)
        if found is None:
            raise NotFound(f"no controller {device} (see nvmecontrol devlist)")
        saved = found.params
        if saved is None:
            raise UsageError(f"{device} has no saved parameters to reconnect with")
        if isinstance(address, str):
            address = parse_address(address, default_port=None, command="reconnect")
        host = resolve_host_identity(hostnqn or saved.hostnqn, hostid or saved.hostid)
        tuning = Tuning() if tuning is None else tuning
        if tuning.dhchap_secret is None and tuning.dhchap_ctrl_secret is None:
            tuning = dataclasses.replace(tuning, dhchap_secret=saved.dhchap_secret,
                                         dhchap_ctrl_secret=saved.dhchap_ctrl_secret)
        params = ConnectParams.of(tuning, address.host, str(address.port), saved.subnqn, host,
                                  cntlid=saved.cntlid)
    return backend.reconnect(device, params)
