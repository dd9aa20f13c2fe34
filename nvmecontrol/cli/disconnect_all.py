"""``nvmecontrol disconnect-all``: end every fabrics association of every backend.

PCIe controllers are never touched (the kernel backend only deletes fabrics
controllers); userspace sessions end with an orderly shutdown.
"""

from __future__ import annotations

from nvmecontrol.cli.disconnect import emit_disconnected
from nvmecontrol.cli.options import OutputFormat
from nvmecontrol.cli.output import Format


def run() -> list[str]:
    from nvmecontrol.backends import select

    names = []
    for backend in select.present():
        names += backend.disconnect_all()
    return names


def command(fmt: OutputFormat = Format.text):
    emit_disconnected(run(), fmt)
