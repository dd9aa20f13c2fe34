"""The options connect, connect-all and reconnect share (FreeBSD connect.c).

Their spellings, defaults, bounds and help are the option table's
(``nvmecontrol/options.py``); here they become typer options, and the
values a command was given become one :class:`nvmecontrol.api.tuning.Tuning`.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from nvmecontrol.api.tuning import Tuning  # noqa: F401 - the commands' record, named here too
from nvmecontrol.cli.numbers import parse_number
from nvmecontrol.cli.options import table_option
from nvmecontrol.errors import UsageError
from nvmecontrol.options import CNTLID_DYNAMIC

# Only annotations at import time: `connect --help` must not load the backends.
CNTLID_STATIC = 0xFFFE
CNTLID_STATIC_MAX = 0xFFEF

FlowControl = Annotated[bool, table_option("flow_control")]
DisableSqflow = Annotated[bool, table_option("disable_sqflow")]
NrIoQueues = Annotated[int, table_option("nr_io_queues")]
KeepAliveTmo = Annotated[int, table_option("keep_alive_tmo")]
CtrlLossTmo = Annotated[int, table_option("ctrl_loss_tmo")]
ReconnectDelay = Annotated[int, table_option("reconnect_delay")]
QueueSize = Annotated[int, table_option("queue_size")]
Cntlid = Annotated[str, table_option("cntlid")]
Backend = Annotated[str, table_option("backend")]
NbdListen = Annotated[Optional[str], table_option("nbd_listen")]
NoAttach = Annotated[bool, table_option("no_attach")]
ConfigFile = Annotated[Optional[str], table_option("config")]
DumpConfig = Annotated[bool, table_option("dump_config")]


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
