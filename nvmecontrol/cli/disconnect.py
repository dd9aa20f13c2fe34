"""``nvmecontrol disconnect``: end an association held by any backend.

FreeBSD syntax (``disconnect <device-id | namespace-id | SubNQN>``).  A
device or namespace name (nvme0, nvme0n1, nvmeu0, nvmeu0ns1) goes to the
backend that holds it; anything else is taken as a subsystem NQN and every
controller of that subsystem is disconnected, whichever backend holds it.
"""

from __future__ import annotations

from typing import Annotated

import typer

from nvmecontrol.backends import select
from nvmecontrol.cli.options import OutputFormat
from nvmecontrol.cli.output import Format, emit, emit_json
from nvmecontrol.errors import NotFound, UsageError
from nvmecontrol.nqn import looks_like_nqn

NAME = "disconnect"
HELP = "Disconnect a controller (device, namespace or subsystem NQN)."
NO_ARGS_IS_HELP = False


def run(target: str) -> list[str]:
    for backend in select.present():
        if backend.owns(target):
            return backend.disconnect(target)
    if not looks_like_nqn(target):
        raise UsageError(f"{target!r} is neither a device name (nvmeX, nvmeXnY, nvmeuN) "
                         "nor a subsystem NQN")
    names = []
    for backend in select.present():
        if any(c.subnqn == target for c in backend.list()):
            names += backend.disconnect(target)
    if not names:
        raise NotFound(f"no controller is connected to {target}")
    return names


def emit_disconnected(names: list[str], fmt: Format) -> None:
    if fmt is Format.json:
        emit_json({"disconnected": names})
    else:
        for n in names:
            emit(f"{n}: disconnected")


def command(
    target: Annotated[str, typer.Argument(metavar="DEVICE|NAMESPACE|SUBNQN",
                                          help="nvmeX, nvmeXnY, nvmeuN, nvmeuNnsM or a subsystem NQN.")],
    fmt: OutputFormat = Format.text,
):
    emit_disconnected(run(target), fmt)
