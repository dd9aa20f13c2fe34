"""The typer signature of ``nvmecontrol gen-dhchap-key``: its options, their help.

The body is ``execute`` in ``cli/gen_dhchap_key.py``; see ``cli/signatures/__init__.py``.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from nvmecontrol.cli import gen_dhchap_key
from nvmecontrol.cli.numbers import NumberOption
from nvmecontrol.cli.options import OutputFormat
from nvmecontrol.cli.output import Format


def command(
    secret: Annotated[Optional[str], typer.Option(
        "-s", "--secret", help="Secret in hexadecimal (default: random).")] = None,
    # Numbers as strtoul(..., 0) reads them (cli/numbers.py); the bounds are only
    # a sanity check, generate_secret says which lengths and HMACs exist.
    key_length: Annotated[int, NumberOption(
        "-l", "--key-length", lo=0, hi=0xFFFF, help="Key length in bytes: 32, 48 or 64 (default: the HMAC's "
        "size, else 32).")] = 0,
    nqn: Annotated[Optional[str], typer.Option(
        "-n", "--nqn", help="NQN the HMAC transforms the key with (default: the host NQN).")] = None,
    hmac: Annotated[int, NumberOption(
        "-m", "--hmac", lo=0, hi=0xFF, help="Transform HMAC: 0 none, 1 SHA-256, 2 SHA-384, 3 SHA-512.")] = 0,
    fmt: OutputFormat = Format.text,
):
    return gen_dhchap_key.execute(**locals())  # the body's parameters, by name
