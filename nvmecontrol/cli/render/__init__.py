"""Plain-text and JSON renderers for the structures of ``nvmecontrol.wire``.

Stdlib only (no typer/rich): each module turns decoded structures into the
exact text FreeBSD ``nvmecontrol`` prints (``render_*``) or into JSON-ready
dicts with spec-mnemonic keys (``*_to_json``).  Renderers never print; the
commands in ``nvmecontrol.cli`` write the returned strings.
"""

from __future__ import annotations


def strvis(text: str) -> str:
    """Make a decoded device string safe to print, like FreeBSD ``nvme_strvis``:
    leading and trailing spaces/NULs trimmed, anything outside printable
    ASCII (including the surrogate escapes the wire decoders use for
    non-ASCII bytes) shown as ``?``."""
    text = text.strip(" \x00")
    return "".join(c if " " <= c < "\x7f" else "?" for c in text)

