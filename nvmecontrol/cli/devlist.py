"""``nvmecontrol devlist``: every controller of every backend, with its namespaces.

FreeBSD's format when piped (``-h`` for human sizes), a table on a
terminal, JSON with ``-o json``.  With nothing found it says so and exits
EX_UNAVAILABLE, as FreeBSD does (JSON: an empty list, status 0).
"""

from __future__ import annotations

from typing import Annotated

import typer

from nvmecontrol.backends import select
from nvmecontrol.backends.model import ControllerInfo
from nvmecontrol.cli.exitcodes import EX_UNAVAILABLE
from nvmecontrol.cli.options import OutputFormat
from nvmecontrol.cli.output import Format, emit, emit_json
from nvmecontrol.cli.render.devices import (DEVLIST_COLUMNS, devlist_json, devlist_rows,
                                            render_devlist_text)
from nvmecontrol.cli.table import is_terminal, print_table

NAME = "devlist"
HELP = "List NVMe controllers (kernel and userspace sessions) and their namespaces."
NO_ARGS_IS_HELP = False


def run() -> list[ControllerInfo]:
    out = []
    for backend in select.present():
        out += backend.list()
    return out


def command(
    human: Annotated[bool, typer.Option("-h", "--human", help="Human-readable sizes.")] = False,
    fmt: OutputFormat = Format.text,
):
    controllers = run()
    if fmt is Format.json:
        emit_json(devlist_json(controllers))
        return 0
    if not controllers:
        emit("No NVMe controllers found.")
        return EX_UNAVAILABLE
    if is_terminal():
        print_table(DEVLIST_COLUMNS, devlist_rows(controllers, human=human))
    else:
        emit(render_devlist_text(controllers, human=human))
    return 0
