"""The shared options' values without typer: their defaults and the checks they need.

``cli/options.py`` makes the typer options (and re-exports these); the
command bodies, which the start-up fast path runs without typer
(``cli/fastpath.py``), import them from here.
"""

from __future__ import annotations

from types import SimpleNamespace

from nvmecontrol.errors import UsageError
from nvmecontrol.options import OPTIONS

# The parameter defaults of the commands, read from the table.
DEFAULTS = SimpleNamespace(**{name: o.default for name, o in OPTIONS.items()})


def check_transport(transport: str) -> None:
    from nvmecontrol.errors import Unsupported

    if transport.lower() != "tcp":
        raise Unsupported(f"unsupported or invalid transport {transport!r} (only tcp)")


def check_dhchap(secret: str | None, ctrl_secret: str | None) -> None:
    """Both secrets well formed (form, length, CRC), as one line naming the option."""
    if ctrl_secret and not secret:
        raise UsageError("--dhchap-ctrl-secret needs --dhchap-secret (the host authenticates "
                          "first)")
    if not secret:
        return  # without loading the key machinery (start-up)
    from nvmecontrol.api.keys import check_key

    for option, text in (("--dhchap-secret", secret), ("--dhchap-ctrl-secret", ctrl_secret)):
        if text:
            try:
                check_key(text)
            except UsageError as exc:
                raise UsageError(f"{option}: {exc}") from None
