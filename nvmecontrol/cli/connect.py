"""``nvmecontrol connect``: build an association and hand it to a backend.

FreeBSD syntax (``connect [-FGg] [-c cntl-id] [-i queues] [-k s] [-l s]
[-r s] [-t tcp] [-q HostNQN] [-Q entries] address SubNQN``); the address
needs an explicit port.  The association is built and checked here first
(pre-flight: a refused host, an authentication requirement, a queue size
the controller cannot take all fail with the decoded status), then the
backend takes it over.  An existing association to the same subsystem,
address and host is reported, not duplicated.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Annotated

import typer

from nvmecontrol.backends import runtime, select
from nvmecontrol.backends.base import AssociationBackend
from nvmecontrol.backends.model import ControllerInfo
from nvmecontrol.cli.connect_options import (Backend, CtrlLossTmo, FlowControl, KeepAliveTmo,
                                             NbdListen, NoAttach, NrIoQueues, QueueSize,
                                             ReconnectDelay, Tuning, parse_cntlid)
from nvmecontrol.cli.options import (DataDigest, HdrDigest, HostId, HostNqn, OutputFormat,
                                     TimeoutS, Transport, check_transport)
from nvmecontrol.cli.output import Format, emit, emit_json, warn
from nvmecontrol.cli.render.devices import connect_line
from nvmecontrol.errors import UsageError
from nvmecontrol.host.association import connect_association
from nvmecontrol.hostid import HostIdentity, resolve_host_identity
from nvmecontrol.nqn import DISCOVERY_NQN, validate_nqn
from nvmecontrol.transport.address import Address, parse_address

NAME = "connect"
HELP = "Connect to an NVMe subsystem and hand the association to the kernel or an NBD session."
NO_ARGS_IS_HELP = False


@dataclass(slots=True)
class Connected:
    info: ControllerInfo
    existing: bool


def establish(backend: AssociationBackend, address: Address, subnqn: str, host: HostIdentity,
              tuning: Tuning, *, cntlid: int = 0xFFFF, dle: bytes | None = None) -> Connected:
    """Connect ``subnqn`` at ``address`` unless the same association exists.

    Find-or-create runs under one lock per (SubNQN, host NQN), across
    processes: four ``connect``s started together make one association and
    three "already connected".  The association is recorded with the numeric
    address that answered, so ``localhost:P`` and ``127.0.0.1:P`` are one.
    """
    params = tuning.params(address.host, str(address.port), subnqn, host, cntlid=cntlid)
    with runtime.locked(association_lock(subnqn, host.hostnqn)):
        existing = backend.find(params)
        if existing is not None:
            return Connected(existing, True)
        assoc = connect_association(address, subnqn, host, params.association_params())
        try:
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


def association_lock(subnqn: str, hostnqn: str) -> str:
    """The lock file name of one (SubNQN, host NQN) pair (NQNs may hold any byte)."""
    digest = hashlib.sha256(f"{subnqn}\0{hostnqn}".encode("utf-8", "surrogateescape")).hexdigest()
    return f"assoc-{digest[:32]}"


def host_for(hostnqn, hostid) -> HostIdentity:
    host = resolve_host_identity(hostnqn, hostid)
    for w in host.warnings:
        warn(w)
    return host


def emit_connected(results: list[Connected], fmt: Format) -> None:
    if fmt is Format.json:
        emit_json({"controllers": [{**r.info.to_json(), "created": not r.existing}
                                   for r in results]})
        return
    for r in results:
        for w in r.info.warnings:
            warn(f"{r.info.name}: {w}")
        emit(connect_line(r.info, r.existing))


def command(
    address: Annotated[str, typer.Argument(help="host:port of the I/O controller (port required).")],
    subnqn: Annotated[str, typer.Argument(metavar="SUBNQN", help="Subsystem NQN.")],
    flow_control: FlowControl = False,
    hdr_digests: HdrDigest = False,
    data_digests: DataDigest = False,
    cntlid: Annotated[str, typer.Option("-c", "--cntlid", metavar="dynamic|static|ID",
                                        help="Controller ID to ask for.")] = "dynamic",
    nr_io_queues: NrIoQueues = 1,
    keep_alive_tmo: KeepAliveTmo = 120,
    ctrl_loss_tmo: CtrlLossTmo = 600,
    reconnect_delay: ReconnectDelay = 10,
    transport: Transport = "tcp",
    hostnqn: HostNqn = None,
    hostid: HostId = None,
    queue_size: QueueSize = 0,
    backend: Backend = "auto",
    nbd_listen: NbdListen = None,
    no_attach: NoAttach = False,
    fmt: OutputFormat = Format.text,
    timeout: TimeoutS = 30.0,
):
    check_transport(transport)
    validate_nqn(subnqn, strict=False, what="subsystem NQN")
    if subnqn == DISCOVERY_NQN:
        raise UsageError("cannot connect to the discovery subsystem; use discover or connect-all")
    addr = parse_address(address, default_port=None, command="connect")
    tuning = Tuning(nr_io_queues, queue_size, keep_alive_tmo, reconnect_delay, ctrl_loss_tmo,
                    hdr_digests, data_digests, flow_control, timeout)
    chosen = select.choose(backend, nbd_tcp=nbd_listen, attach=not no_attach)
    result = establish(chosen, addr, subnqn, host_for(hostnqn, hostid), tuning,
                       cntlid=parse_cntlid(cntlid))
    emit_connected([result], fmt)
