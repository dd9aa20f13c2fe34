"""The typer signature of ``nvmecontrol discover``: its options, their help.

The body is ``execute`` in ``cli/discover.py``; see ``cli/signatures/__init__.py``.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from nvmecontrol.cli import discover
from nvmecontrol.cli.options import DEFAULTS as D  # the option table's defaults
from nvmecontrol.cli.options import (DhchapCtrlSecret, DhchapSecret, HostId, HostNqn, OutputFormat,
                                     TimeoutS, Transport)
from nvmecontrol.cli.output import Format


def command(
    ctx: typer.Context,
    address: Annotated[Optional[str], typer.Argument(
        help="host[:port], [v6addr][:port]; port defaults to 8009 (none: every discovery "
             "controller of /etc/nvme/discovery.conf).")] = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Show the discovery controller's identify data first.")] = False,
    transport: Transport = D.transport,
    hostnqn: HostNqn = D.hostnqn,
    hostid: HostId = D.hostid,
    walk: Annotated[bool, typer.Option("--walk", help="Follow referrals to other discovery controllers.")] = False,
    fmt: OutputFormat = Format.text,
    timeout: TimeoutS = D.timeout,
    dhchap_secret: DhchapSecret = D.dhchap_secret,
    dhchap_ctrl_secret: DhchapCtrlSecret = D.dhchap_ctrl_secret,
):
    return discover.execute(**locals())  # the body's parameters, by name
