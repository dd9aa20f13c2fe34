"""The options connect, connect-all and reconnect share (FreeBSD connect.c).

Their spellings, defaults, bounds and help are the option table's
(``nvmecontrol/options.py``); here they become typer options, and the
values a command was given become one :class:`Tuning`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Optional

import typer

from nvmecontrol.cli.numbers import parse_number
from nvmecontrol.cli.options import table_option
from nvmecontrol.errors import UsageError
from nvmecontrol.options import CNTLID_DYNAMIC, default, record_fields

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


@dataclass(slots=True)
class Tuning:
    """The association tuning a user gave on the command line (the table's defaults otherwise)."""

    num_io_queues: int = default("num_io_queues")
    queue_size: int = default("queue_size")
    kato_s: int = default("kato_s")
    reconnect_delay_s: int = default("reconnect_delay_s")
    ctrl_loss_tmo_s: int = default("ctrl_loss_tmo_s")
    hdgst: bool = default("hdgst")
    ddgst: bool = default("ddgst")
    sq_flow_control: bool = default("sq_flow_control")
    timeout_s: float = default("timeout_s")
    # DH-HMAC-CHAP secrets, DHHC-1 text (checked by options.check_dhchap).
    dhchap_secret: str | None = default("dhchap_secret")
    dhchap_ctrl_secret: str | None = default("dhchap_ctrl_secret")

    @classmethod
    def from_options(cls, **values) -> "Tuning":
        """The tuning of a command's option values, by parameter name
        (``keep_alive_tmo=...``); options that tune nothing are ignored."""
        fields = record_fields()
        return cls(**{fields[k]: v for k, v in values.items() if k in fields})

    def params(self, traddr: str, trsvcid: str, subnqn: str, host, *,
               cntlid: int = CNTLID_DYNAMIC):
        """The ConnectParams of this tuning for one subsystem at one address."""
        from nvmecontrol.backends.model import ConnectParams

        return ConnectParams(traddr, str(trsvcid), subnqn, host.hostnqn, str(host.hostid),
                             cntlid=cntlid, **dataclasses.asdict(self))


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
