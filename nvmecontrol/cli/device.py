"""Turning a command's target arguments into a controller to ask.

``identify`` and ``logpage`` accept, like FreeBSD, a device (``nvme0``,
``nvme0n1``, ``nvme0ns1``, with or without ``/dev/``) held by the kernel,
a userspace session (``nvmeu0``, ``nvmeu0ns1``, asked over its control
socket), or, beyond FreeBSD, a network address with a subsystem NQN for a one-shot
userspace association (the discovery NQN when only an address is given).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from nvmecontrol.backends.admin_access import AdminAccess, AssociationAccess, open_admin
from nvmecontrol.backends.names import parse_device_name, parse_session_name
from nvmecontrol.cli.refusal import Asked, explained
from nvmecontrol.errors import UsageError
from nvmecontrol.nqn import DISCOVERY_NQN, validate_nqn
from nvmecontrol.transport.address import DISCOVERY_PORT, IO_PORT, parse_address
from nvmecontrol.wire import admin
from nvmecontrol.wire.identify import CNS_CONTROLLER, IDENTIFY_DATA_SIZE

# A CLI association lives for a few commands; the controller may drop it
# after this long without a keep-alive, which bounds leaks if we are killed.
ONE_SHOT_KATO_S = 30


@dataclass(slots=True)
class ConnectOptions:
    """How to reach a controller over the network (ignored for devices)."""

    hostnqn: str | None = None
    hostid: str | None = None
    hdgst: bool = False
    ddgst: bool = False
    timeout_s: float = 30.0
    dhchap_secret: str | None = None  # DHHC-1 text
    dhchap_ctrl_secret: str | None = None


class Controller:
    """The admin commands ``identify`` and ``logpage`` send, on any kind of controller."""

    def __init__(self, name: str, access: AdminAccess, *, namespace_nsid: int | None = None,
                 cdata: bytes | None = None):
        self.name = name
        self._access = access
        self.namespace_nsid = namespace_nsid  # set when the target named a namespace
        self._cdata = cdata  # Identify Controller, when the connection already read it

    def identify(self, cns: int, nsid: int = 0, cntid: int = 0) -> bytes:
        _, data = self._access.admin_command(admin.build_identify(cns, nsid, cntid),
                                             f"Identify CNS {cns:#04x}",
                                             read_len=IDENTIFY_DATA_SIZE)
        return data

    def identify_controller(self) -> bytes:
        if self._cdata is None:
            self._cdata = self.identify(CNS_CONTROLLER)
        return self._cdata

    def get_log_page(self, g: admin.GetLogPage) -> bytes:
        _, data = self._access.admin_command(admin.build_get_log_page(g),
                                             f"Get Log Page {g.lid:#04x}", read_len=g.length)
        return data

    def close(self) -> None:
        self._access.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_controller(target: str, subnqn: str | None, opts: ConnectOptions) -> Controller:
    """Open what ``target`` (and ``subnqn``) name."""
    kind = "session" if parse_session_name(target) is not None else \
        "device" if parse_device_name(target) is not None else None
    if kind is not None:
        if subnqn is not None:
            raise UsageError(f"{target} is a {kind}; a subsystem NQN goes only with an address")
        access = open_admin(target)
        return Controller(target, access, namespace_nsid=access.nsid)
    # An empty SubNQN is a mistake, not "the discovery controller" (which is
    # what leaving it out means).
    nqn = DISCOVERY_NQN if subnqn is None else subnqn
    validate_nqn(nqn, strict=False, what="subsystem NQN")
    address = parse_address(target, default_port=DISCOVERY_PORT if nqn == DISCOVERY_NQN else IO_PORT)
    from nvmecontrol.cli.options import dhchap_keys
    from nvmecontrol.host.association import AssociationParams, connect_association
    from nvmecontrol.hostid import resolve_host_identity

    host = resolve_host_identity(opts.hostnqn, opts.hostid)
    host_key, ctrl_key = dhchap_keys(opts.dhchap_secret, opts.dhchap_ctrl_secret)
    # --timeout bounds the whole one-shot exchange, not each of its commands.
    params = AssociationParams(hdgst=opts.hdgst, ddgst=opts.ddgst, kato_s=ONE_SHOT_KATO_S,
                               timeout_s=opts.timeout_s,
                               deadline=time.monotonic() + opts.timeout_s,
                               dhchap_secret=host_key, dhchap_ctrl_secret=ctrl_key)
    with explained(Asked(nqn, host.hostnqn, str(host.hostid))):
        assoc = connect_association(address, nqn, host, params)
    name = f"{address.text} {nqn}"
    return Controller(name, AssociationAccess(name, assoc), cdata=assoc.cdata_raw or None)
