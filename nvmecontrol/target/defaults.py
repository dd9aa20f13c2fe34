"""nvmfd's defaults that its command line shows, importable without the server.

``nvmfd --help`` and the control subcommands need these; the server stack
(configuration parsing, DH-HMAC-CHAP, the target itself) is imported only
when a daemon starts.
"""

from __future__ import annotations

import os

BLOCK_SIZES = (512, 4096)
DEFAULT_BLOCK_SIZE = 512


def default_socket_path() -> str:
    """``/run/nvmfd/nvmfd.sock`` for root, else ``$XDG_RUNTIME_DIR/nvmfd.sock`` or /tmp."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return "/run/nvmfd/nvmfd.sock"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, "nvmfd.sock")
    uid = os.geteuid() if hasattr(os, "geteuid") else 0
    return f"/tmp/nvmfd-{uid}.sock"
