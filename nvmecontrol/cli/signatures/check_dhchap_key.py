"""The typer signature of ``nvmecontrol check-dhchap-key``: its options, their help.

The body is ``execute`` in ``cli/check_dhchap_key.py``; see ``cli/signatures/__init__.py``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from nvmecontrol.cli import check_dhchap_key
from nvmecontrol.cli.options import OutputFormat
from nvmecontrol.cli.output import Format


def command(
    key: Annotated[str, typer.Option("-k", "--key", help="The DHHC-1:NN:<base64>: secret.")],
    fmt: OutputFormat = Format.text,
):
    return check_dhchap_key.execute(**locals())  # the body's parameters, by name
