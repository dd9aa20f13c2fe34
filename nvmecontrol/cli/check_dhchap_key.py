"""``nvmecontrol check-dhchap-key``: check a DHHC-1 secret's form, length and CRC.

Option as nvme-cli's ``check-dhchap-key`` (-k); a bad key is one line
saying what is wrong, with exit status 64 (a bad argument).
The options and their help: ``cli/signatures/check_dhchap_key.py``.
"""

from __future__ import annotations

from nvmecontrol.cli.output import Format, emit, emit_json


def execute(*, key: str, fmt: Format):
    """The command, from the typer signature or the fast path."""

    from nvmecontrol.api.keys import check_key
    from nvmecontrol.errors import UsageError

    try:
        checked = check_key(key.strip())
    except UsageError as exc:
        raise UsageError(f"invalid key: {exc}") from None
    if fmt is Format.json:
        emit_json({"valid": True, "hmac": checked.hmac, "key_length": checked.key_length,
                   "crc": f"{checked.crc:08x}"})
    else:
        # nvme-cli's wording, so scripts that grep it keep working.
        emit(f"Key is valid (HMAC {checked.hmac}, length {checked.key_length}, "
             f"CRC {checked.crc:08x})")
