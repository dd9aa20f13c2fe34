"""The options connect, connect-all and reconnect share (FreeBSD connect.c).

Defaults are FreeBSD's: one I/O queue, KATO 120 s, reconnect every 10 s,
give up after 600 s, queue size CAP.MQES+1, dynamic controller ID.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Optional

import typer

from nvmecontrol.cli.numbers import NumberOption, parse_number
from nvmecontrol.errors import UsageError

# Only annotations at import time: `connect --help` must not load the backends.
CNTLID_DYNAMIC = 0xFFFF  # as wire.fabrics.CNTLID_DYNAMIC (a test keeps them equal)
CNTLID_STATIC = 0xFFFE
CNTLID_STATIC_MAX = 0xFFEF

FlowControl = Annotated[bool, typer.Option("-F", "--flow-control", "--flow_control",
                                           help="Ask the controller to keep SQ flow control.")]
# nvme-cli's --disable-sqflow asks for what is already the default here (FreeBSD
# asks to keep SQ flow control only with -F): accepted, and at odds with -F.
DisableSqflow = Annotated[bool, typer.Option(
    "--disable-sqflow", help="Let the controller disable SQ flow control (the default; "
    "nvme-cli's spelling).")]
NrIoQueues = Annotated[int, NumberOption("-i", "--nr-io-queues", lo=1, hi=65535,
                                         help="Number of I/O queues.")]
# KATO goes on the wire in milliseconds in 32 bits; the Linux kernel keeps the
# other two in an int.
KeepAliveTmo = Annotated[int, NumberOption("-k", "--keep-alive-tmo", lo=0, hi=0xFFFFFFFF // 1000,
                                           metavar="SECONDS",
                                           help="Keep-alive timeout (KATO), seconds.")]
CtrlLossTmo = Annotated[int, NumberOption("-l", "--ctrl-loss-tmo", lo=0, hi=2**31 - 1,
                                          metavar="SECONDS",
                                          help="Seconds disconnected before the controller is deleted (0: never deleted).")]
ReconnectDelay = Annotated[int, NumberOption("-r", "--reconnect-delay", lo=0, hi=2**31 - 1,
                                             metavar="SECONDS",
                                             help="Seconds between reconnect attempts (0: no automatic attempts, only nvmecontrol reconnect).")]
# A queue holds at least 2 entries (one command); 0 asks for the largest the
# controller allows (CAP.MQES + 1, at most 128).
QueueSize = Annotated[int, NumberOption("-Q", "--queue-size", lo=2, hi=65536, also=(0,),
                                        metavar="ENTRIES",
                                        help="I/O queue entries, 2..65536 (0: the controller's "
                                             "maximum, at most 128).")]
Backend = Annotated[str, typer.Option("--backend", metavar="auto|kernel|nbd|freebsd",
                                      help="Where the association goes (auto: the kernel when it "
                                           "can, else a userspace NBD session).")]
NbdListen = Annotated[Optional[str], typer.Option(
    "--nbd-listen", metavar="HOST:PORT",
    help="Also serve a session's NBD exports on this TCP address.")]
NoAttach = Annotated[bool, typer.Option("--no-attach",
                                        help="Do not attach a session's exports to /dev/nbdX.")]
# nvme-cli's config.json (-J/--config, -O/--dump-config): see cli/fabrics_config.py.
ConfigFile = Annotated[Optional[str], typer.Option(
    "-J", "--config", metavar="FILE|none",
    help="nvme-cli JSON config of hosts, subsystems and ports (default: /etc/nvme/config.json "
         "when it exists; none: no file).")]
DumpConfig = Annotated[bool, typer.Option(
    "-O", "--dump-config", help="Print the connections made as nvme-cli JSON config.")]


@dataclass(slots=True)
class Tuning:
    """The association tuning a user gave on the command line."""

    num_io_queues: int
    queue_size: int
    kato_s: int
    reconnect_delay_s: int
    ctrl_loss_tmo_s: int
    hdgst: bool
    ddgst: bool
    sq_flow_control: bool
    timeout_s: float
    # DH-HMAC-CHAP secrets, DHHC-1 text (checked by options.check_dhchap).
    dhchap_secret: str | None = None
    dhchap_ctrl_secret: str | None = None

    def params(self, traddr: str, trsvcid: str, subnqn: str, host, *,
               cntlid: int = CNTLID_DYNAMIC):
        from nvmecontrol.backends.model import ConnectParams

        return ConnectParams(traddr, str(trsvcid), subnqn, host.hostnqn, str(host.hostid),
                             num_io_queues=self.num_io_queues, queue_size=self.queue_size,
                             kato_s=self.kato_s, reconnect_delay_s=self.reconnect_delay_s,
                             ctrl_loss_tmo_s=self.ctrl_loss_tmo_s, hdgst=self.hdgst,
                             ddgst=self.ddgst, sq_flow_control=self.sq_flow_control,
                             cntlid=cntlid, timeout_s=self.timeout_s,
                             dhchap_secret=self.dhchap_secret,
                             dhchap_ctrl_secret=self.dhchap_ctrl_secret)


def parse_cntlid(text: str) -> int:
    """``dynamic``, ``static`` or a number up to 0xFFEF (FreeBSD -c)."""
    t = text.strip().lower()
    if t == "dynamic":
        return CNTLID_DYNAMIC
    if t == "static":
        return CNTLID_STATIC
    try:
        value = parse_number(t)
    except ValueError:
        value = -1
    if not 0 <= value <= CNTLID_STATIC_MAX:
        raise UsageError(f"invalid controller ID {text!r} (dynamic, static or 0..{CNTLID_STATIC_MAX:#x})")
    return value


def check_flow_control(flow_control: bool, disable_sqflow: bool) -> None:
    if flow_control and disable_sqflow:
        raise UsageError("-F (keep SQ flow control) and --disable-sqflow contradict each other")
