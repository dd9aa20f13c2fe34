"""``nvmecontrol connect-all``: connect every I/O subsystem a discovery controller lists.

FreeBSD syntax, default port 8009.  Beyond FreeBSD: referrals are followed
(without loops, bounded like ``discover --walk``), existing associations are
reported instead of duplicated, and one result per entry is printed (a
table on a terminal).  Entries this host cannot use (another transport,
address family or a TLS requirement) are skipped with the reason.

DH-HMAC-CHAP secrets, as nvme-cli's connect-all uses them (libnvme's
``nvmf_add_ctrl``): ``--dhchap-secret`` is the host's secret for the
discovery controller and every subsystem; ``--dhchap-ctrl-secret``
authenticates the discovery controller (one controller secret cannot fit
every subsystem).  For each entry connected, a port of config.json for that
subsystem and address gives its own host and controller secrets, which win
over the command line's host-wide one.  The discovery controller's secrets
come from the command line, else its discovery.conf line or config.json port.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from nvmecontrol.cli import backend_choice
from nvmecontrol.cli.connect import establish, host_for, refusal_explained
from nvmecontrol.cli.connect_options import (Backend, ConfigFile, CtrlLossTmo, DisableSqflow,
                                             DumpConfig, FlowControl, KeepAliveTmo, NbdListen,
                                             NoAttach, NrIoQueues, QueueSize, ReconnectDelay,
                                             Tuning, check_flow_control, parse_cntlid)
from nvmecontrol.cli.exitcodes import exit_code_for
from nvmecontrol.cli.options import DEFAULTS as D  # the option table's defaults
from nvmecontrol.cli.options import (DataDigest, DhchapCtrlSecret, DhchapSecret, HdrDigest, HostId,
                                     HostNqn, OutputFormat, TimeoutS, Transport, check_dhchap,
                                     check_transport, table_option)
from nvmecontrol.cli.output import Format, emit, emit_json, warn
from nvmecontrol.errors import NvmeControlError
from nvmecontrol.options import CNTLID_DYNAMIC

if TYPE_CHECKING:
    from nvmecontrol.api.fabrics import Connected


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


def command(
    ctx: typer.Context,
    address: Annotated[Optional[str], typer.Argument(
        help="host[:port] of a discovery controller (port 8009 by default; none: every one "
             "of /etc/nvme/discovery.conf, and every port of /etc/nvme/config.json).")] = None,
    flow_control: FlowControl = D.flow_control,
    disable_sqflow: DisableSqflow = D.disable_sqflow,
    cntlid: Annotated[Optional[str], table_option(
        "cntlid", help="Controller ID to ask every subsystem for (default: each entry's).")
    ] = None,
    hdr_digests: HdrDigest = D.hdr_digests,
    data_digests: DataDigest = D.data_digests,
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
    from nvmecontrol.api.addresses import DISCOVERY_PORT, format_address, parse_address
    from nvmecontrol.api.discovery import read_discovery
    from nvmecontrol.api.fabrics import connect_entry, unusable
    from nvmecontrol.cli import fabrics_config
    from nvmecontrol.cli.discover import remember_nqns
    from nvmecontrol.cli.table import progress

    check_transport(transport)
    check_flow_control(flow_control, disable_sqflow)
    # FreeBSD's connect-all takes -c (its option table is connect's) and ignores
    # it; here it replaces the controller ID of every entry.
    forced_cntlid = parse_cntlid(cntlid) if cntlid is not None else None
    check_dhchap(dhchap_secret, dhchap_ctrl_secret)
    found = []  # (discovery log entry, the host identity that discovered it, host secret)
    hosts: dict = {}
    unreachable: list[NvmeControlError] = []
    # With no address, nvme-cli's files say what to connect: config.json's ports
    # directly, discovery.conf's discovery controllers through their logs.
    config_ports = fabrics_config.load(config)
    ports = config_ports if address is None else []
    for where_, line_hostnqn, line_hostid, line_secret in _discovery_controllers(address,
                                                                                bool(ports)):
        # The command line's wins; an empty -q is a mistake to report, not "not given".
        key = (line_hostnqn if hostnqn is None else hostnqn,
               line_hostid if hostid is None else hostid)
        if key not in hosts:  # each identity resolved (and warned about) once
            hosts[key] = host_for(*key)
        try:
            disc_address = parse_address(where_, default_port=DISCOVERY_PORT)
            disc_secret, disc_ctrl_secret = _discovery_secrets(
                config_ports, where_, disc_address, hosts[key].hostnqn, dhchap_secret,
                dhchap_ctrl_secret, line_secret)
            check_dhchap(disc_secret, disc_ctrl_secret)
            walk = read_discovery(where_, hostnqn=hosts[key].hostnqn,
                                  hostid=str(hosts[key].hostid), walk=True, timeout=timeout,
                                  dhchap_secret=disc_secret, dhchap_ctrl_secret=disc_ctrl_secret)
        except NvmeControlError as err:
            if address is not None:
                raise
            # discovery.conf: one controller down does not stop the others.
            warn(f"{where_}: {err}")
            unreachable.append(err)
            continue
        remember_nqns(where_, walk.log.entries)
        for err in walk.errors:
            warn(f"referral skipped: {err}")
        found += [(e, hosts[key], disc_secret) for e in walk.log.entries]
    tuning = Tuning.from_options(
        nr_io_queues=nr_io_queues, queue_size=queue_size, keep_alive_tmo=keep_alive_tmo,
        reconnect_delay=reconnect_delay, ctrl_loss_tmo=ctrl_loss_tmo, hdr_digests=hdr_digests,
        data_digests=data_digests, flow_control=flow_control, timeout=timeout,
        dhchap_secret=dhchap_secret, dhchap_ctrl_secret=dhchap_ctrl_secret)
    chosen = backend_choice.choose(backend, nbd_listen=nbd_listen, attach=not no_attach)
    results = []
    for port in ports:
        results.append(_connect_port(ctx, chosen, port, tuning, forced_cntlid,
                                     host_for_key=lambda k: hosts.setdefault(k, host_for(*k)),
                                     hostnqn=hostnqn, hostid=hostid))
    bar = progress(len(found), "connecting")
    if bar:
        bar.start()
    try:
        for e, host, host_secret in found:
            where = format_address(e.traddr, e.trsvcid)
            r = EntryResult(e.subnqn, where)
            r.skipped = unusable(e)
            if not r.skipped:
                try:
                    t = _entry_tuning(tuning, config_ports, e, host.hostnqn, host_secret)
                    cntlid_ = e.cntlid if forced_cntlid is None else forced_cntlid
                    with refusal_explained(e.subnqn, host, t, cntlid_):
                        r.connected = connect_entry(e, backend=chosen, host=host, tuning=t,
                                                    cntlid=cntlid_)
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
    backend_choice.report(backend, [r.connected for r in results if r.connected], not no_attach)
    if dump_config:
        emit_json(fabrics_config.dump([r.connected.info for r in results if r.connected]))
    else:
        render(results, fmt)
    failed = unreachable + [r.error for r in results if r.error is not None]
    return exit_code_for(failed[0]) if failed else 0


def _connect_port(ctx, chosen, port, tuning: Tuning, forced_cntlid, *, host_for_key, hostnqn,
                  hostid) -> EntryResult:
    """One port of config.json, with its settings where the command line gave none."""
    from nvmecontrol.api.addresses import parse_address
    from nvmecontrol.cli import fabrics_config

    r = EntryResult(port.subnqn, port.address)
    try:
        host = host_for_key((port.hostnqn if hostnqn is None else hostnqn,
                             port.hostid if hostid is None else hostid))
        t = fabrics_config.tuning_for(ctx, port, tuning)
        check_dhchap(t.dhchap_secret, t.dhchap_ctrl_secret)
        addr = parse_address(port.address, default_port=None, command="connect")
        r.connected = establish(chosen, addr, port.subnqn, host, t,
                                cntlid=CNTLID_DYNAMIC if forced_cntlid is None else forced_cntlid)
    except NvmeControlError as err:
        r.error = err
    return r


def _discovery_secrets(config_ports, where: str, address, hostnqn: str, secret, ctrl_secret,
                       line_secret) -> tuple[str | None, str | None]:
    """(host secret, controller secret) for one discovery controller, DHHC-1 text.

    The command line's, else the discovery.conf line's host secret, else
    those of config.json's port of the discovery subsystem at that address.
    """
    from nvmecontrol.api.hosts import DISCOVERY_NQN
    from nvmecontrol.cli import fabrics_config

    port = fabrics_config.port_for_address(config_ports, DISCOVERY_NQN, where, address, hostnqn)
    configured = port.options if port is not None else {}
    return (secret or line_secret or configured.get("dhchap_secret"),
            ctrl_secret or configured.get("dhchap_ctrl_secret"))


def _entry_tuning(tuning: Tuning, config_ports, e, hostnqn: str, host_secret) -> Tuning:
    """The tuning one discovery log entry is connected with: its own secrets (see module notes)."""
    from nvmecontrol.cli import fabrics_config

    own = fabrics_config.secrets_for_entry(config_ports, e.subnqn, e.traddr, e.trsvcid, hostnqn)
    t = dataclasses.replace(tuning, dhchap_secret=own.get("dhchap_secret", host_secret),
                            dhchap_ctrl_secret=own.get("dhchap_ctrl_secret"))
    check_dhchap(t.dhchap_secret, t.dhchap_ctrl_secret)
    return t


def _discovery_controllers(address: str | None, have_ports: bool = False):
    """``(address, hostnqn, hostid, secret)`` to ask: the one given, else discovery.conf's."""
    if address is not None:
        return [(address, None, None, None)]
    from nvmecontrol.cli import discovery_conf

    entries, warnings = discovery_conf.load()
    for w in warnings:
        warn(w)
    if not entries and not have_ports:
        raise discovery_conf.missing_address("connect-all")
    return [(e.address, e.hostnqn, e.hostid, e.dhchap_secret) for e in entries]


def render(results: list[EntryResult], fmt: Format) -> None:
    from nvmecontrol.cli.render.devices import connect_line
    from nvmecontrol.cli.table import is_terminal, print_table

    if fmt is Format.json:
        emit_json({"entries": [r.to_json() for r in results]})
    elif is_terminal():
        print_table(["Subsystem NQN", "Address", "Result"],
                    [[r.subnqn, r.address, r.outcome()] for r in results],
                    long=("Address", "Result"))
    else:
        for r in results:
            if r.connected:
                emit(connect_line(r.connected.info, r.connected.existing))
            else:
                emit(f"{r.subnqn} at {r.address}: {r.outcome()}")
    if not results:
        warn("the discovery log lists no NVMe subsystems")
