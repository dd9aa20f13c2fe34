"""``nvmecontrol connect``: build an association and hand it to a backend.

FreeBSD syntax (``connect [-FGg] [-c cntl-id] [-i queues] [-k s] [-l s]
[-r s] [-t tcp] [-q HostNQN] [-Q entries] address SubNQN``); the address
needs an explicit port.  ``api.fabrics.connect`` builds and checks the
association first (pre-flight: a refused host, an authentication
requirement, a queue size the controller cannot take all fail with the
decoded status), then the backend takes it over.  An existing association
to the same subsystem, address and host is reported, not duplicated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from nvmecontrol.cli import backend_choice
from nvmecontrol.cli.connect_options import (Backend, Cntlid, ConfigFile, CtrlLossTmo,
                                             DisableSqflow, DumpConfig, FlowControl, KeepAliveTmo,
                                             NbdListen, NoAttach, NrIoQueues, QueueSize,
                                             ReconnectDelay, Tuning, check_flow_control,
                                             parse_cntlid)
from nvmecontrol.cli.options import DEFAULTS as D  # the option table's defaults
from nvmecontrol.cli.options import (DataDigest, DhchapCtrlSecret, DhchapSecret, HdrDigest, HostId,
                                     HostNqn, OutputFormat, TimeoutS, Transport, check_dhchap,
                                     check_transport)
from nvmecontrol.cli.output import Format, emit, emit_json, warn
from nvmecontrol.cli.refusal import Asked, explained
from nvmecontrol.errors import UsageError
from nvmecontrol.options import CNTLID_DYNAMIC

if TYPE_CHECKING:  # the machinery is imported when the command runs, not for --help
    from nvmecontrol.api.addresses import Address
    from nvmecontrol.api.fabrics import Connected
    from nvmecontrol.api.hosts import HostIdentity


def establish(backend, address: Address, subnqn: str, host: HostIdentity, tuning: Tuning, *,
              cntlid: int = CNTLID_DYNAMIC, dle: bytes | None = None) -> Connected:
    """``api.fabrics.connect``, a refused Connect explained with the options that set it."""
    from nvmecontrol.api import fabrics

    with refusal_explained(subnqn, host, tuning, cntlid):
        return fabrics.connect(address, subnqn, backend=backend, host=host, tuning=tuning,
                               cntlid=cntlid, dle=dle)


def refusal_explained(subnqn: str, host: HostIdentity, tuning: Tuning, cntlid: int):
    """A Connect refusal raised within, explained with what was asked (``refusal``)."""
    return explained(Asked(subnqn, host.hostnqn, str(host.hostid), cntlid, tuning.queue_size,
                           tuning.num_io_queues))


def host_for(hostnqn, hostid) -> HostIdentity:
    from nvmecontrol.api.hosts import resolve_host

    host = resolve_host(hostnqn, hostid)
    # A command that connects is where a host ID / host NQN mismatch matters.
    for w in host.warnings + ([host.mismatch] if host.mismatch else []):
        warn(w)
    return host


def emit_connected(results: list[Connected], fmt: Format) -> None:
    from nvmecontrol.cli.render.devices import connect_line

    if fmt is Format.json:
        emit_json({"controllers": [{**r.info.to_json(), "created": not r.existing}
                                   for r in results]})
        return
    for r in results:
        for w in r.info.warnings:
            warn(f"{r.info.name}: {w}")
        emit(connect_line(r.info, r.existing))


def command(
    ctx: typer.Context,
    address: Annotated[str, typer.Argument(help="host:port of the I/O controller (port required).")],
    subnqn: Annotated[str, typer.Argument(metavar="SUBNQN", help="Subsystem NQN.")],
    flow_control: FlowControl = D.flow_control,
    disable_sqflow: DisableSqflow = D.disable_sqflow,
    hdr_digests: HdrDigest = D.hdr_digests,
    data_digests: DataDigest = D.data_digests,
    cntlid: Cntlid = D.cntlid,
    nr_io_queues: NrIoQueues = D.nr_io_queues,
    keep_alive_tmo: KeepAliveTmo = D.keep_alive_tmo,
    ctrl_loss_tmo: CtrlLossTmo = D.ctrl_loss_tmo,
    reconnect_delay: ReconnectDelay = D.reconnect_delay,
    transport: Transport = D.transport,
    hostnqn: HostNqn = D.hostnqn,
    hostid: HostId = D.hostid,
    queue_size: QueueSize = D.queue_size,
    backend: Backend = D.backend,
    nbd_listen: NbdListen = D.nbd_listen,
    no_attach: NoAttach = D.no_attach,
    fmt: OutputFormat = Format.text,
    timeout: TimeoutS = D.timeout,
    dhchap_secret: DhchapSecret = D.dhchap_secret,
    dhchap_ctrl_secret: DhchapCtrlSecret = D.dhchap_ctrl_secret,
    config: ConfigFile = D.config,
    dump_config: DumpConfig = D.dump_config,
):
    from nvmecontrol.api.addresses import parse_address
    from nvmecontrol.api.hosts import DISCOVERY_NQN, validate_nqn
    from nvmecontrol.cli import fabrics_config

    check_transport(transport)
    check_flow_control(flow_control, disable_sqflow)
    validate_nqn(subnqn, strict=False, what="subsystem NQN")
    if subnqn == DISCOVERY_NQN:
        raise UsageError("cannot connect to the discovery subsystem; use discover or connect-all")
    addr = parse_address(address, default_port=None, command="connect")
    tuning = Tuning.from_options(
        nr_io_queues=nr_io_queues, queue_size=queue_size, keep_alive_tmo=keep_alive_tmo,
        reconnect_delay=reconnect_delay, ctrl_loss_tmo=ctrl_loss_tmo, hdr_digests=hdr_digests,
        data_digests=data_digests, flow_control=flow_control, timeout=timeout,
        dhchap_secret=dhchap_secret, dhchap_ctrl_secret=dhchap_ctrl_secret)
    # config.json: the matching port's settings for what the command line left out.
    port = fabrics_config.port_for_address(fabrics_config.load(config), subnqn, address, addr,
                                           hostnqn)
    tuning = fabrics_config.tuning_for(ctx, port, tuning)
    if port is not None:
        # An empty -q is a mistake to report, not "not given".
        hostnqn = port.hostnqn if hostnqn is None else hostnqn
        hostid = port.hostid if hostid is None else hostid
    check_dhchap(tuning.dhchap_secret, tuning.dhchap_ctrl_secret)
    chosen = backend_choice.choose(backend, nbd_listen=nbd_listen, attach=not no_attach)
    result = establish(chosen, addr, subnqn, host_for(hostnqn, hostid), tuning,
                       cntlid=parse_cntlid(cntlid))
    backend_choice.report(backend, [result], not no_attach)
    if dump_config:
        emit_json(fabrics_config.dump([result.info]))
    else:
        emit_connected([result], fmt)
