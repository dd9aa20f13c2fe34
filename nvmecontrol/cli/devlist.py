"""``nvmecontrol devlist``: the options; the work is in ``listing``.

FreeBSD syntax (``devlist [-h]``), plus ``-v`` (topology) and ``-o json``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from nvmecontrol.cli import listing
from nvmecontrol.cli.options import OutputFormat
from nvmecontrol.cli.output import Format


def command(
    human: Annotated[bool, typer.Option("-h", "--human", help="Human-readable sizes.")] = False,
    verbose: Annotated[bool, typer.Option(
        "-v", "--verbose", help="The topology: subsystems, their paths (controllers) and "
        "namespaces, as nvme list-subsys shows it.")] = False,
    fmt: OutputFormat = Format.text,
):
    return listing.show(human, fmt, verbose)
