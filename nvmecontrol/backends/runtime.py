"""The runtime directory: session state, control sockets and locks.

``/run/nvmecontrol`` for root (as nvme-cli keeps /run/nvme), else
``$XDG_RUNTIME_DIR/nvmecontrol``, else a private directory under /tmp;
``NVMECONTROL_RUNTIME_DIR`` overrides all of them (tests, several users).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from nvmecontrol.errors import DeviceError

ENV_RUNTIME_DIR = "NVMECONTROL_RUNTIME_DIR"


def runtime_dir(environ=None, *, create: bool = True) -> Path:
    env = os.environ if environ is None else environ
    if env.get(ENV_RUNTIME_DIR):
        path = Path(env[ENV_RUNTIME_DIR])
    elif os.geteuid() == 0:
        path = Path("/run/nvmecontrol")
    elif env.get("XDG_RUNTIME_DIR"):
        path = Path(env["XDG_RUNTIME_DIR"]) / "nvmecontrol"
    else:
        path = Path(f"/tmp/nvmecontrol-{os.geteuid()}")
    if create:
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise DeviceError(f"cannot create the runtime directory {path}: {e.strerror}") from None
    return path


@contextlib.contextmanager
def locked(name: str, *, environ=None):
    """Hold an exclusive lock named ``name`` (one per controller, or the name allocator).

    Operations on one controller (connect, disconnect, reconnect) are
    serialized across processes with flock on ``<runtime>/locks/<name>``.
    """
    locks = runtime_dir(environ) / "locks"
    locks.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(locks / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
