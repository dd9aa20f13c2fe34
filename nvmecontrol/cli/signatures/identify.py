"""The typer signature of ``nvmecontrol identify``: its options, their help.

The body is ``execute`` in ``cli/identify.py``; see ``cli/signatures/__init__.py``.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from nvmecontrol.cli import identify
from nvmecontrol.cli.numbers import NumberOption
from nvmecontrol.cli.options import DEFAULTS as D  # the option table's defaults
from nvmecontrol.cli.options import (DataDigest, DhchapCtrlSecret, DhchapSecret, HdrDigest, HostId,
                                     HostNqn, OutputFormat, TimeoutS)
from nvmecontrol.cli.output import Format


def command(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(metavar="DEVICE|ADDRESS", help="nvmeX, nvmeXnY, or host:port of a controller.")],
    subnqn: Annotated[Optional[str], typer.Argument(metavar="[SUBNQN]", help="Subsystem NQN (with an address).")] = None,
    nsid: Annotated[Optional[int], NumberOption("-n", "--nsid", lo=0, hi=0xFFFFFFFF,
                                                help="Namespace ID (0: the controller).")] = None,
    hex_: Annotated[bool, typer.Option("-x", "--hex", help="Print a hex dump.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="With -x: dump the whole structure.")] = False,
    hostnqn: HostNqn = D.hostnqn,
    hostid: HostId = D.hostid,
    hdr_digests: HdrDigest = D.hdr_digests,
    data_digests: DataDigest = D.data_digests,
    fmt: OutputFormat = Format.text,
    timeout: TimeoutS = D.timeout,
    dhchap_secret: DhchapSecret = D.dhchap_secret,
    dhchap_ctrl_secret: DhchapCtrlSecret = D.dhchap_ctrl_secret,
):
    return identify.execute(**locals())  # the body's parameters, by the same names
