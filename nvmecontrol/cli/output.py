"""Writing results: data to stdout, diagnostics to stderr, never mixed.

Text goes out exactly as the renderers made it (FreeBSD formats are
column-exact); JSON is indented, sorted as built, and never coloured.
"""

from __future__ import annotations

import enum
import sys


class Format(str, enum.Enum):
    text = "text"
    json = "json"
    normal = "normal"  # nvme-cli's name for text: the same output


def emit(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")


def emit_json(obj) -> None:
    import json  # not at start-up: the text output does not need it

    sys.stdout.write(json.dumps(obj, indent=2, default=_default) + "\n")


def emit_binary(data: bytes) -> None:
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def warn(message: str) -> None:
    sys.stderr.write(f"nvmecontrol: {message}\n")


def _default(o):
    if isinstance(o, (bytes, bytearray, memoryview)):
        return bytes(o).hex()
    if isinstance(o, enum.Enum):
        return o.value
    return str(o)
