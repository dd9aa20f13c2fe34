"""``nvmecontrol check-dhchap-key``: check a DHHC-1 secret's form, length and CRC.

Option as nvme-cli's ``check-dhchap-key`` (-k); a bad key is one line
saying what is wrong, with exit status 64 (a bad argument).
"""

from __future__ import annotations

from typing import Annotated

import typer

from nvmecontrol.cli.options import OutputFormat
from nvmecontrol.cli.output import Format, emit, emit_json


def command(
    key: Annotated[str, typer.Option("-k", "--key", help="The DHHC-1:NN:<base64>: secret.")],
    fmt: OutputFormat = Format.text,
):
    from nvmecontrol.errors import UsageError
    from nvmecontrol.wire.dhchap_key import BadSecret, key_crc, parse_secret

    try:
        parsed = parse_secret(key.strip())
    except BadSecret as exc:
        raise UsageError(f"invalid key: {exc}") from None
    crc = key_crc(parsed.secret)
    if fmt is Format.json:
        emit_json({"valid": True, "hmac": parsed.transform, "key_length": len(parsed.secret),
                   "crc": f"{crc:08x}"})
    else:
        # nvme-cli's wording, so scripts that grep it keep working.
        emit(f"Key is valid (HMAC {parsed.transform}, length {len(parsed.secret)}, CRC {crc:08x})")
