"""nvmfd's defaults that its command line shows, importable without the server.

``nvmfd --help`` and the control subcommands need these; the server stack
(configuration parsing, DH-HMAC-CHAP, the target itself) is imported only
when a daemon starts.
"""

from __future__ import annotations

import os

from nvmecontrol.errors import UsageError

BLOCK_SIZES = (512, 4096)
DEFAULT_BLOCK_SIZE = 512


class ConfigRefused(UsageError):
    """A configuration nvmfd cannot honour (TLS, RDMA, protection information, -K).

    Refused rather than served weaker than asked: nvmfd exits with
    EX_CONFIG (78) for it at start-up, and a reload keeps the running
    configuration.  Here so the entry point maps it without importing the
    server stack.
    """


def default_socket_path() -> str:
    """``/run/nvmfd/nvmfd.sock`` for root, else ``$XDG_RUNTIME_DIR/nvmfd.sock`` or /tmp."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return "/run/nvmfd/nvmfd.sock"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, "nvmfd.sock")
    uid = os.geteuid() if hasattr(os, "geteuid") else 0
    return f"/tmp/nvmfd-{uid}.sock"
