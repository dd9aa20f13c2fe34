"""The options connect, connect-all and reconnect share (FreeBSD connect.c).

Defaults are FreeBSD's: one I/O queue, KATO 120 s, reconnect every 10 s,
give up after 600 s, queue size CAP.MQES+1, dynamic controller ID.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Optional

import typer

from nvmecontrol.backends.model import (DEFAULT_CTRL_LOSS_TMO_S, DEFAULT_KATO_S,
                                        DEFAULT_NUM_IO_QUEUES, DEFAULT_RECONNECT_DELAY_S,
                                        ConnectParams)
from nvmecontrol.errors import UsageError
from nvmecontrol.hostid import HostIdentity
from nvmecontrol.wire.fabrics import CNTLID_DYNAMIC

CNTLID_STATIC = 0xFFFE
CNTLID_STATIC_MAX = 0xFFEF

FlowControl = Annotated[bool, typer.Option("-F", "--flow-control", "--flow_control",
                                           help="Ask the controller to keep SQ flow control.")]
NrIoQueues = Annotated[int, typer.Option("-i", "--nr-io-queues", min=1, max=65535,
                                         help="Number of I/O queues.")]
# KATO goes on the wire in milliseconds in 32 bits; the Linux kernel keeps the
# other two in an int.
KeepAliveTmo = Annotated[int, typer.Option("-k", "--keep-alive-tmo", min=0, max=0xFFFFFFFF // 1000,
                                           metavar="SECONDS",
                                           help="Keep-alive timeout (KATO), seconds.")]
CtrlLossTmo = Annotated[int, typer.Option("-l", "--ctrl-loss-tmo", min=0, max=2**31 - 1,
                                          metavar="SECONDS",
                                          help="Seconds disconnected before the controller is deleted (0: never deleted).")]
ReconnectDelay = Annotated[int, typer.Option("-r", "--reconnect-delay", min=0, max=2**31 - 1,
                                             metavar="SECONDS",
                                             help="Seconds between reconnect attempts (0: no automatic attempts, only nvmecontrol reconnect).")]
QueueSize = Annotated[int, typer.Option("-Q", "--queue-size", min=0, max=65536, metavar="ENTRIES",
                                        help="I/O queue entries (0: the controller's maximum).")]
Backend = Annotated[str, typer.Option("--backend", metavar="auto|kernel|nbd|freebsd",
                                      help="Where the association goes (auto: the kernel when it "
                                           "can, else a userspace NBD session).")]
NbdListen = Annotated[Optional[str], typer.Option(
    "--nbd-listen", metavar="HOST:PORT",
    help="Also serve a session's NBD exports on this TCP address.")]
NoAttach = Annotated[bool, typer.Option("--no-attach",
                                        help="Do not attach a session's exports to /dev/nbdX.")]


@dataclass(slots=True)
class Tuning:
    """The association tuning a user gave on the command line."""

    num_io_queues: int = DEFAULT_NUM_IO_QUEUES
    queue_size: int = 0
    kato_s: int = DEFAULT_KATO_S
    reconnect_delay_s: int = DEFAULT_RECONNECT_DELAY_S
    ctrl_loss_tmo_s: int = DEFAULT_CTRL_LOSS_TMO_S
    hdgst: bool = False
    ddgst: bool = False
    sq_flow_control: bool = False
    timeout_s: float = 30.0

    def params(self, traddr: str, trsvcid: str, subnqn: str, host: HostIdentity, *,
               cntlid: int = CNTLID_DYNAMIC) -> ConnectParams:
        return ConnectParams(traddr, str(trsvcid), subnqn, host.hostnqn, str(host.hostid),
                             num_io_queues=self.num_io_queues, queue_size=self.queue_size,
                             kato_s=self.kato_s, reconnect_delay_s=self.reconnect_delay_s,
                             ctrl_loss_tmo_s=self.ctrl_loss_tmo_s, hdgst=self.hdgst,
                             ddgst=self.ddgst, sq_flow_control=self.sq_flow_control,
                             cntlid=cntlid, timeout_s=self.timeout_s)


def parse_cntlid(text: str) -> int:
    """``dynamic``, ``static`` or a number up to 0xFFEF (FreeBSD -c)."""
    t = text.strip().lower()
    if t == "dynamic":
        return CNTLID_DYNAMIC
    if t == "static":
        return CNTLID_STATIC
    try:
        value = int(t, 0)
    except ValueError:
        value = -1
    if not 0 <= value <= CNTLID_STATIC_MAX:
        raise UsageError(f"invalid controller ID {text!r} (dynamic, static or 0..{CNTLID_STATIC_MAX:#x})")
    return value
