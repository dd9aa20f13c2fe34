"""``nvmecontrol disconnect``: end an association held by any backend.

FreeBSD syntax (``disconnect <device-id | namespace-id | SubNQN>``).  A
device or namespace name (nvme0, nvme0n1, nvmeu0, nvmeu0ns1) goes to the
backend that holds it; anything else is taken as a subsystem NQN and every
controller of that subsystem is disconnected, whichever backend holds it.
nvme-cli's ``-n NQN[,NQN...]`` and ``-d DEVICE[,DEVICE...]`` work too.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from nvmecontrol.cli.options import OutputFormat
from nvmecontrol.cli.output import Format, emit, emit_json
from nvmecontrol.errors import NotFound, UsageError


def disconnect_each(items: list[str], one) -> tuple[list[str], list[str]]:
    """``one(item)`` for every item of a list: (what was disconnected, what was not there).

    Like nvme-cli, an item that is not there does not stop the others; unlike
    it, what was disconnected before and after is still reported.
    """
    names, missing = [], []
    for item in items:
        try:
            names += one(item)
        except NotFound as e:
            missing.append(str(e))
    return names, missing


def _items(text: str) -> list[str]:
    """nvme-cli's comma-separated lists; empty items are mistakes, not wildcards."""
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise UsageError(f"empty item in the list {text!r}")
    return items


def emit_disconnected(names: list[str], fmt: Format) -> None:
    if fmt is Format.json:
        emit_json({"disconnected": names})
    else:
        for n in names:
            emit(f"{n}: disconnected")


def command(
    target: Annotated[Optional[str], typer.Argument(
        metavar="DEVICE|NAMESPACE|SUBNQN",
        help="nvmeX, nvmeXnY, nvmeuN, nvmeuNnsM or a subsystem NQN.")] = None,
    nqn: Annotated[Optional[str], typer.Option(
        "-n", "--nqn", metavar="NQN[,NQN...]",
        help="Disconnect every controller of these subsystems (nvme-cli's spelling).")] = None,
    device: Annotated[Optional[str], typer.Option(
        "-d", "--device", metavar="DEVICE[,DEVICE...]",
        help="Disconnect these controllers (nvme-cli's spelling; /dev/ optional).")] = None,
    fmt: OutputFormat = Format.text,
):
    from nvmecontrol.api.fabrics import disconnect, disconnect_subsystem, is_device_name

    given = sum(x is not None for x in (target, nqn, device))
    if given == 0:
        raise UsageError("Missing argument 'DEVICE|NAMESPACE|SUBNQN' (or -n NQN, -d DEVICE). "
                         "usage: nvmecontrol disconnect [OPTIONS] [DEVICE|NAMESPACE|SUBNQN]")
    if given > 1:
        raise UsageError("give only one of DEVICE|NAMESPACE|SUBNQN, -n NQN[,NQN...] and "
                         "-d DEVICE[,DEVICE...]")
    if target is not None:
        emit_disconnected(disconnect(target), fmt)
        return
    if nqn is not None:
        names, missing = disconnect_each(_items(nqn), disconnect_subsystem)
    else:
        devices = _items(device)
        for name in devices:  # every name checked before anything is disconnected
            if not is_device_name(name):
                raise UsageError(f"-d {name}: not a device name "
                                 "(nvmeX, nvmeXnY, nvmeuN, nvmeuNnsM)")
        names, missing = disconnect_each(devices, disconnect)
    emit_disconnected(names, fmt)
    if missing:
        raise NotFound("; ".join(missing))
