"""``nvmecontrol disconnect-all``: end every fabrics association of every backend.

PCIe controllers are never touched (the kernel backend only deletes fabrics
controllers); userspace sessions end with an orderly shutdown.
"""

from __future__ import annotations

from nvmecontrol.cli.disconnect import emit_disconnected
from nvmecontrol.cli.options import OutputFormat
from nvmecontrol.cli.output import Format


def command(fmt: OutputFormat = Format.text):
    from nvmecontrol.api.fabrics import disconnect_all

    emit_disconnected(disconnect_all(), fmt)
