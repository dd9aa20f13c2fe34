"""``nvmecontrol reconnect``: a new association for an existing controller.

FreeBSD syntax: ``reconnect <device>`` redials with the saved parameters;
``reconnect [options] <device> <address>`` uses the new address and the
options given (subsystem and controller ID stay as saved; the host NQN and
ID too, unless -q/-I say otherwise).  A
userspace session keeps its NBD clients' requests parked meanwhile and
replays them; the kernel backend resets the controller, or moves it to the
new address.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from nvmecontrol.cli.connect_options import (CtrlLossTmo, DisableSqflow, FlowControl,
                                             KeepAliveTmo, NrIoQueues, QueueSize, ReconnectDelay,
                                             Tuning, check_flow_control)
from nvmecontrol.cli.options import DEFAULTS as D  # the option table's defaults
from nvmecontrol.cli.options import (DataDigest, HdrDigest, HostId, HostNqn, OutputFormat,
                                     TimeoutS, Transport, check_transport)
from nvmecontrol.cli.output import Format, emit, emit_json


def command(
    device: Annotated[str, typer.Argument(metavar="DEVICE", help="nvmeX or a session nvmeuN.")],
    address: Annotated[Optional[str], typer.Argument(metavar="[ADDRESS]",
                                                     help="New host:port (port required).")] = None,
    flow_control: FlowControl = D.flow_control,
    disable_sqflow: DisableSqflow = D.disable_sqflow,
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
    fmt: OutputFormat = Format.text,
    timeout: TimeoutS = D.timeout,
):
    from nvmecontrol.api.fabrics import reconnect
    from nvmecontrol.cli.render.devices import address_text

    check_transport(transport)
    check_flow_control(flow_control, disable_sqflow)
    tuning = Tuning.from_options(
        nr_io_queues=nr_io_queues, queue_size=queue_size, keep_alive_tmo=keep_alive_tmo,
        reconnect_delay=reconnect_delay, ctrl_loss_tmo=ctrl_loss_tmo, hdr_digests=hdr_digests,
        data_digests=data_digests, flow_control=flow_control, timeout=timeout)
    # Without an address the saved parameters are used and the options are not.
    info = reconnect(device, address, tuning=tuning, hostnqn=hostnqn, hostid=hostid)
    if fmt is Format.json:
        emit_json({"controller": info.to_json()})
    else:
        emit(f"{info.name}: reconnected to {info.subnqn} at {address_text(info)}")
