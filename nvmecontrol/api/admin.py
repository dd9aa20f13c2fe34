"""Admin commands on one controller, by name or by address: Identify and Get Log Page.

What ``nvmecontrol identify`` and ``logpage`` ask, as calls.  A target is,
as on the command line, a device the kernel holds (``nvme0``, ``nvme0n1``,
``/dev/`` in front or not: the admin passthrough ioctl), a userspace session
(``nvmeu0``, ``nvmeu0ns1``: its control socket), or a network address with
a subsystem NQN (the discovery NQN when none is given): a one-shot
association of our own, admin queue only, that :meth:`AdminController.close`
shuts down.  Only the machinery of the kind reached is loaded.

Structures are decoded once, here (Identify Controller is the one the
association read while connecting, when there is one); the raw bytes stay
beside them for hex and binary dumps.  Errors are the package's families:
:class:`~nvmecontrol.errors.UsageError` for a bad name or NQN,
:class:`~nvmecontrol.errors.CommandFailed` for an error status,
:class:`~nvmecontrol.errors.NotFound` for an inactive namespace.
"""

from __future__ import annotations

import time
from collections import namedtuple
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

from nvmecontrol.errors import UsageError
from nvmecontrol.options import OPTIONS, default
from nvmecontrol.wire.records import Record

TYPE_CHECKING = False  # typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from typing import Literal

    from nvmecontrol.backends.admin_access import AdminAccess
    from nvmecontrol.host.association import Association
    from nvmecontrol.host.discovery import DiscoveryLog
    from nvmecontrol.wire.admin import GetLogPage
    from nvmecontrol.wire.auth_crypto import DhchapKey
    from nvmecontrol.wire.identify import IdentifyController, IdentifyNamespace

__all__ = ["ConnectOptions", "AdminController", "Identified", "ExplainRefusal", "open_controller",
           "target_kind", "connect_one_shot", "parse_secrets", "ONE_SHOT_KATO_S"]

# A one-shot association lives for a few commands; the controller may drop
# it after this long without a keep-alive, which bounds what is left behind
# when we are killed before the shutdown.
ONE_SHOT_KATO_S = 30
_NSID_BROADCAST = 0xFFFFFFFF  # wire.identify.NSID_BROADCAST, without loading it

# Wraps the Connect of a one-shot association, given what it asked for (the
# subsystem NQN, the host NQN and the host ID as text): the CLI's hook names
# the refused field and the option that set it (cli/refusal.py).
ExplainRefusal = Callable[[str, str, str], AbstractContextManager]


class ConnectOptions(Record):
    """How to reach a controller over the network (unused for devices and sessions).

    Defaults are the option table's (``nvmecontrol/options.py``); the host
    NQN and ID, when None, are resolved as the CLI resolves them
    (``/etc/nvme/hostnqn``, ``hostid``, then the host UUID).  The secrets are
    ``DHHC-1:..`` text.
    """

    __slots__ = ("hostnqn", "hostid", "hdgst", "ddgst", "timeout_s", "dhchap_secret",
                 "dhchap_ctrl_secret")

    def __init__(self, hostnqn: str | None = OPTIONS["hostnqn"].default,
                 hostid: str | None = OPTIONS["hostid"].default,
                 hdgst: bool = default("hdgst"), ddgst: bool = default("ddgst"),
                 timeout_s: float = default("timeout_s"),
                 dhchap_secret: str | None = default("dhchap_secret"),
                 dhchap_ctrl_secret: str | None = default("dhchap_ctrl_secret")):
        self.hostnqn = hostnqn
        self.hostid = hostid
        self.hdgst = hdgst
        self.ddgst = ddgst
        self.timeout_s = timeout_s  # bounds the whole one-shot exchange
        self.dhchap_secret = dhchap_secret
        self.dhchap_ctrl_secret = dhchap_ctrl_secret


# An Identify data structure as read (``raw``, 4096 bytes) and decoded once
# (``data``: IdentifyController or IdentifyNamespace); immutable.
Identified = namedtuple("Identified", ("raw", "data"))
Identified.__doc__ = ("An Identify data structure as read (``raw``, 4096 bytes) and decoded once "
                      "(``data``).")


def target_kind(target: str) -> Literal["session", "device", "address"]:
    """What ``target`` names: a userspace session, a kernel device, else a network address."""
    from nvmecontrol.backends.names import parse_device_name, parse_session_name

    if parse_session_name(target) is not None:
        return "session"
    return "device" if parse_device_name(target) is not None else "address"


def connect_one_shot(target: str, subnqn: str, options: ConnectOptions, *, default_port: int,
                     num_io_queues: int = 0,
                     explain_refusal: ExplainRefusal | None = None) -> Association:
    """A one-shot association with ``subnqn`` at ``target`` (``host[:port]``).

    KATO :data:`ONE_SHOT_KATO_S`; ``options.timeout_s`` bounds the whole
    exchange, not each of its commands.  The caller shuts it down.
    """
    from nvmecontrol.host.association import AssociationParams, connect_association
    from nvmecontrol.hostid import resolve_host_identity
    from nvmecontrol.nqn import validate_nqn
    from nvmecontrol.transport.address import parse_address

    validate_nqn(subnqn, strict=False, what="subsystem NQN")
    address = parse_address(target, default_port=default_port)
    host = resolve_host_identity(options.hostnqn, options.hostid)
    host_key, ctrl_key = parse_secrets(options.dhchap_secret, options.dhchap_ctrl_secret)
    params = AssociationParams(hdgst=options.hdgst, ddgst=options.ddgst, kato_s=ONE_SHOT_KATO_S,
                               num_io_queues=num_io_queues, timeout_s=options.timeout_s,
                               deadline=time.monotonic() + options.timeout_s,
                               dhchap_secret=host_key, dhchap_ctrl_secret=ctrl_key)
    guard = nullcontext() if explain_refusal is None else \
        explain_refusal(subnqn, host.hostnqn, str(host.hostid))
    with guard:
        return connect_association(address, subnqn, host, params)


def parse_secrets(secret: str | None,
                  ctrl_secret: str | None) -> tuple[DhchapKey | None, DhchapKey | None]:
    """The DH-HMAC-CHAP keys of ``DHHC-1:..`` texts (host, controller): UsageError naming
    the one that is malformed, or a controller secret without the host's."""
    if ctrl_secret and not secret:
        raise UsageError("dhchap_ctrl_secret needs dhchap_secret (the host authenticates first)")
    if not secret and not ctrl_secret:
        return None, None  # without loading the key machinery (start-up)
    from nvmecontrol.wire.dhchap_key import parse_secret

    keys = []
    for what, text in (("dhchap_secret", secret), ("dhchap_ctrl_secret", ctrl_secret)):
        try:
            keys.append(parse_secret(text) if text else None)
        except ValueError as e:
            raise UsageError(f"{what}: {e}") from None
    return keys[0], keys[1]


def open_controller(target: str, subnqn: str | None = None,
                    options: ConnectOptions | None = None, *,
                    explain_refusal: ExplainRefusal | None = None) -> AdminController:
    """The controller ``target`` (and ``subnqn``, with an address) names.

    A subsystem NQN given with a device or session name is a UsageError;
    with an address, None means the discovery controller (port 8009 by
    default, else 4420) and an empty NQN is a mistake, not that.
    """
    kind = target_kind(target)
    if kind != "address":
        if subnqn is not None:
            raise UsageError(f"{target} is a {kind}; a subsystem NQN goes only with an address")
        from nvmecontrol.backends.admin_access import open_admin

        access = open_admin(target)
        return AdminController(target, target, access, nsid=access.nsid)
    from nvmecontrol.backends.admin_access import AssociationAccess
    from nvmecontrol.nqn import DISCOVERY_NQN
    from nvmecontrol.transport.address import DISCOVERY_PORT, IO_PORT

    nqn = DISCOVERY_NQN if subnqn is None else subnqn
    assoc = connect_one_shot(target, nqn, options or ConnectOptions(),
                             default_port=DISCOVERY_PORT if nqn == DISCOVERY_NQN else IO_PORT,
                             explain_refusal=explain_refusal)
    name = f"{assoc.address.text} {nqn}"
    identified = Identified(assoc.cdata_raw, assoc.cdata) if assoc.cdata_raw else None
    return AdminController(target, name, AssociationAccess(name, assoc), identified=identified)


class AdminController:
    """Identify and Get Log Page on one controller; a context manager.

    ``target`` is what it was opened as (a device or session name, an
    address), ``name`` that with the subsystem NQN for an address; ``nsid``
    the namespace the name designates (``nvme0n1``, ``nvmeu0ns1``), else None.
    """

    def __init__(self, target: str, name: str, access: AdminAccess, *,
                 nsid: int | None = None, identified: Identified | None = None):
        self.target = target
        self.name = name
        self.nsid = nsid
        self._access = access
        self._controller = identified

    def identify(self, cns: int, nsid: int = 0, cntid: int = 0) -> bytes:
        """Identify with CNS ``cns``: the 4096 bytes, raw."""
        from nvmecontrol.wire.admin import build_identify
        from nvmecontrol.wire.identify import IDENTIFY_DATA_SIZE

        _, data = self._access.admin_command(build_identify(cns, nsid, cntid),
                                             f"Identify CNS {cns:#04x}",
                                             read_len=IDENTIFY_DATA_SIZE)
        return data

    def identify_controller(self) -> Identified:
        """Identify Controller, read once (by the association when it read it)."""
        if self._controller is None:
            from nvmecontrol.wire.identify import CNS_CONTROLLER, decode_identify_controller

            raw = self.identify(CNS_CONTROLLER)
            self._controller = Identified(raw, decode_identify_controller(raw))
        return self._controller

    def identify_namespace(self, nsid: int) -> Identified:
        """Identify Namespace ``nsid``; NotFound when it is not active.

        NSID 0xFFFFFFFF asks for what every namespace has in common, which is
        never "not active".
        """
        from nvmecontrol.errors import NotFound
        from nvmecontrol.wire.identify import CNS_NAMESPACE, decode_identify_namespace

        raw = self.identify(CNS_NAMESPACE, nsid)
        ns = decode_identify_namespace(raw)
        # An inactive NSID gets a zero-filled structure (NVMe 2.0, Identify
        # Namespace): NSZE 0 is a namespace that is not there.
        if nsid != _NSID_BROADCAST and ns.nsze == 0:
            raise NotFound(f"{self.target}: no such namespace (NSID {nsid} is not active)")
        return Identified(raw, ns)

    def log_page(self, lid: int, length: int, *, nsid: int = _NSID_BROADCAST, offset: int = 0,
                 lsp: int = 0, lsi: int = 0, rae: bool = False) -> bytes:
        """Get Log Page ``lid``: ``length`` bytes (a multiple of 4) from byte ``offset``."""
        from nvmecontrol.wire.admin import GetLogPage

        return self.get_log_page(GetLogPage(lid=lid, length=length, offset=offset, lsp=lsp,
                                            lsi=lsi, rae=rae, nsid=nsid))

    def get_log_page(self, g: GetLogPage) -> bytes:
        """Get Log Page as its record (what ``host.discovery`` reads the discovery log with)."""
        from nvmecontrol.wire.admin import build_get_log_page

        _, data = self._access.admin_command(build_get_log_page(g),
                                             f"Get Log Page {g.lid:#04x}", read_len=g.length)
        return data

    def discovery_log(self, *, lsp: int = 0, rae: bool = False) -> DiscoveryLog:
        """The discovery log (page 70h), read until GENCTR stands still, as ``discover`` reads it."""
        from nvmecontrol.host.discovery import fetch_discovery_log

        return fetch_discovery_log(self, lsp=lsp, rae=rae)

    def close(self) -> None:
        """Let go of the controller: a one-shot association is shut down."""
        self._access.close()

    def __enter__(self) -> AdminController:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
