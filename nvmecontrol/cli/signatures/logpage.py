"""The typer signature of ``nvmecontrol logpage``: its options, their help.

The body is ``execute`` in ``cli/logpage.py``; see ``cli/signatures/__init__.py``.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from nvmecontrol.cli import logpage
from nvmecontrol.cli.numbers import NumberOption
from nvmecontrol.cli.options import DEFAULTS as D  # the option table's defaults
from nvmecontrol.cli.options import (DataDigest, DhchapCtrlSecret, DhchapSecret, HdrDigest, HostId,
                                     HostNqn, OutputFormat, TimeoutS)
from nvmecontrol.cli.output import Format


def command(
    ctx: typer.Context,
    target: Annotated[Optional[str], typer.Argument(metavar="DEVICE|ADDRESS", help="nvmeX, nvmeXnY, or host:port of a controller.")] = None,
    subnqn: Annotated[Optional[str], typer.Argument(metavar="[SUBNQN]", help="Subsystem NQN (with an address).")] = None,
    page: Annotated[Optional[str], typer.Option("-p", "--page", help="Log page: number (2, 0x02) or name (smart, error, fw, changed-ns, effects, ana, discovery).")] = None,
    hex_: Annotated[bool, typer.Option("-x", "--hex", help="Print a hex dump.")] = False,
    binary: Annotated[bool, typer.Option("-b", "--binary", help="Write the raw page to stdout.")] = False,
    vendor: Annotated[Optional[str], typer.Option("-v", "--vendor", help="Vendor pages; 'help' lists the known pages.")] = None,
    lsp: Annotated[int, NumberOption("-f", "--lsp", lo=0, hi=0x7F, help="Log Specific Parameter.")] = 0,
    lsi: Annotated[int, NumberOption("-i", "--lsi", lo=0, hi=0xFFFF, help="Log Specific Identifier.")] = 0,
    rae: Annotated[bool, typer.Option("-r", "--rae", help="Retain Asynchronous Event.")] = False,
    nsid: Annotated[Optional[int], NumberOption("-n", "--nsid", lo=0, hi=0xFFFFFFFF,
                                                help="Namespace ID (SMART per namespace).")] = None,
    hostnqn: HostNqn = D.hostnqn,
    hostid: HostId = D.hostid,
    hdr_digests: HdrDigest = D.hdr_digests,
    data_digests: DataDigest = D.data_digests,
    fmt: OutputFormat = Format.text,
    timeout: TimeoutS = D.timeout,
    dhchap_secret: DhchapSecret = D.dhchap_secret,
    dhchap_ctrl_secret: DhchapCtrlSecret = D.dhchap_ctrl_secret,
):
    return logpage.execute(**locals())  # the body's parameters, by name
