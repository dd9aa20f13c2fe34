"""The typer signature of ``nvmecontrol hostnqn``: its options, their help.

The body is ``execute`` in ``cli/hostnqn.py``; see ``cli/signatures/__init__.py``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from nvmecontrol.cli import hostnqn as body
from nvmecontrol.cli.options import HostId, HostNqn, OutputFormat
from nvmecontrol.cli.output import Format


def command(
    generate: Annotated[bool, typer.Option("--generate", help="Print a new random host NQN.")] = False,
    write: Annotated[bool, typer.Option("--write", help="With --generate: store it in /etc/nvme/hostnqn and hostid.")] = False,
    force: Annotated[bool, typer.Option("--force", help="With --write: replace existing files.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Also show the host ID and the sources.")] = False,
    hostnqn: HostNqn = None,
    hostid: HostId = None,
    fmt: OutputFormat = Format.text,
):
    return body.execute(**locals())  # the body's parameters, by name
