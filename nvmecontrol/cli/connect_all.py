"""``nvmecontrol connect-all``: connect every I/O subsystem a discovery controller lists.

FreeBSD syntax, default port 8009.  Beyond FreeBSD: referrals are followed
(without loops, bounded like ``discover --walk``), existing associations are
reported instead of duplicated, and one result per entry is printed (a
table on a terminal).  Entries this host cannot use (another transport,
address family or a TLS requirement) are skipped with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer

from nvmecontrol.backends import select
from nvmecontrol.cli.connect import Connected, establish, host_for
from nvmecontrol.cli.discover import remember_nqns
from nvmecontrol.cli.connect_options import (Backend, CtrlLossTmo, FlowControl, KeepAliveTmo,
                                             NbdListen, NoAttach, NrIoQueues, QueueSize,
                                             ReconnectDelay, Tuning)
from nvmecontrol.cli.exitcodes import exit_code_for
from nvmecontrol.cli.options import (DataDigest, HdrDigest, HostId, HostNqn, OutputFormat,
                                     TimeoutS, Transport, check_transport)
from nvmecontrol.cli.output import Format, emit, emit_json, warn
from nvmecontrol.cli.render.devices import connect_line
from nvmecontrol.cli.table import is_terminal, print_table, progress
from nvmecontrol.errors import NvmeControlError
from nvmecontrol.host.association import AssociationParams
from nvmecontrol.host.discovery import walk_referrals
from nvmecontrol.transport.address import DISCOVERY_PORT, Address, format_address, parse_address
from nvmecontrol.wire.discovery import AdrFam, TcpSecType, TrType, encode_discovery_entry

NAME = "connect-all"
HELP = "Connect to every NVMe subsystem a discovery controller lists (default port 8009)."
NO_ARGS_IS_HELP = False


@dataclass(slots=True)
class EntryResult:
    subnqn: str
    address: str
    connected: Connected | None = None
    skipped: str = ""
    error: NvmeControlError | None = None

    def to_json(self) -> dict:
        out = {"subnqn": self.subnqn, "address": self.address}
        if self.connected:
            out.update(result="existing" if self.connected.existing else "connected",
                       controller=self.connected.info.to_json())
        elif self.skipped:
            out.update(result="skipped", reason=self.skipped)
        else:
            out.update(result="failed", error=str(self.error))
        return out

    def outcome(self) -> str:
        if self.connected:
            info = self.connected.info
            names = ", ".join([info.name] + [ns.name for ns in info.namespaces])
            return ("already connected: " if self.connected.existing else "connected: ") + names
        return f"skipped: {self.skipped}" if self.skipped else f"failed: {self.error}"


def skip_reason(e) -> str:
    if e.trtype != TrType.TCP:
        return f"unsupported transport {e.trtype}"
    if e.adrfam not in (AdrFam.IPV4, AdrFam.IPV6):
        return f"unsupported address family {e.adrfam}"
    if e.sectype not in (TcpSecType.NONE,):
        return "requires TLS, which nvmecontrol does not support"
    return ""


def command(
    address: Annotated[str, typer.Argument(help="host[:port] of a discovery controller (port 8009 by default).")],
    flow_control: FlowControl = False,
    hdr_digests: HdrDigest = False,
    data_digests: DataDigest = False,
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
    disc = parse_address(address, default_port=DISCOVERY_PORT)
    host = host_for(hostnqn, hostid)
    walk = walk_referrals(disc, host, AssociationParams(kato_s=0, timeout_s=timeout))
    remember_nqns(address, walk.entries)
    for err in walk.errors:
        warn(f"referral skipped: {err}")
    tuning = Tuning(nr_io_queues, queue_size, keep_alive_tmo, reconnect_delay, ctrl_loss_tmo,
                    hdr_digests, data_digests, flow_control, timeout)
    chosen = select.choose(backend, nbd_tcp=nbd_listen, attach=not no_attach)
    results = []
    bar = progress(len(walk.entries), "connecting")
    if bar:
        bar.start()
    try:
        for e in walk.entries:
            where = format_address(e.traddr, e.trsvcid)
            r = EntryResult(e.subnqn, where)
            r.skipped = skip_reason(e)
            if not r.skipped:
                try:
                    a = Address(e.traddr, int(e.trsvcid), where)
                    r.connected = establish(chosen, a, e.subnqn, host, tuning, cntlid=e.cntlid,
                                            dle=encode_discovery_entry(e))
                except ValueError:
                    r.skipped = f"invalid port {e.trsvcid!r}"
                except NvmeControlError as err:
                    r.error = err
            results.append(r)
            if bar:
                bar.advance(bar.task_ids[0])
    finally:
        if bar:
            bar.stop()
    render(results, fmt)
    failed = [r.error for r in results if r.error is not None]
    return exit_code_for(failed[0]) if failed else 0


def render(results: list[EntryResult], fmt: Format) -> None:
    if fmt is Format.json:
        emit_json({"entries": [r.to_json() for r in results]})
    elif is_terminal():
        print_table(["Subsystem NQN", "Address", "Result"],
                    [[r.subnqn, r.address, r.outcome()] for r in results])
    else:
        for r in results:
            if r.connected:
                emit(connect_line(r.connected.info, r.connected.existing))
            else:
                emit(f"{r.subnqn} at {r.address}: {r.outcome()}")
    if not results:
        warn("the discovery log lists no NVMe subsystems")
