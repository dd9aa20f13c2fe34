"""``nvmecontrol gen-dhchap-key``: make a DH-HMAC-CHAP secret in the DHHC-1 form.

Options as nvme-cli's ``gen-dhchap-key``: -s hex secret, -l key length,
-m transform HMAC (0 none, 1 SHA-256, 2 SHA-384, 3 SHA-512), -n NQN.  With
an HMAC the secret is stored transformed with the NQN (the host NQN by
default), as nvme-cli 2.x does, so both tools print the same key for the
same -s, -m and -n.
The options and their help: ``cli/signatures/gen_dhchap_key.py``.
"""

from __future__ import annotations

from nvmecontrol.cli.output import Format, emit, emit_json


def execute(*, secret: str | None, key_length: int, nqn: str | None, hmac: int, fmt: Format):
    """The command, from the typer signature or the fast path."""

    from nvmecontrol.api.keys import generate_key
    from nvmecontrol.errors import UsageError

    raw = None
    if secret is not None:
        try:
            raw = bytes.fromhex(secret)
        except ValueError:
            raise UsageError("--secret is not hexadecimal") from None
    if nqn is not None:
        from nvmecontrol.api.hosts import validate_nqn
        validate_nqn(nqn, strict=False, what="NQN (-n)")
    elif hmac:
        from nvmecontrol.api.hosts import resolve_host
        nqn = resolve_host(None, None).hostnqn
    key = generate_key(key_length=key_length, hmac=hmac, secret=raw, nqn=nqn)
    if fmt is Format.json:
        emit_json({"key": key.text, "hmac": key.hmac, "key_length": key.key_length})
    else:
        emit(key.text)
