"""Where a userspace session keeps its files, and the names of its NBD exports.

Apart from the session itself so that listing sessions (devlist, shell
completion) reads them without importing the data path.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from nvmecontrol.backends.runtime import ENV_RUNTIME_DIR
from nvmecontrol.errors import DeviceError

# The IANA port of NBD, for --nbd-listen without one.
NBD_PORT = 10809
# sun_path holds 108 bytes including the terminating NUL (unix(7)).
MAX_SOCKET_PATH = 107


def export_name(nsid: int) -> str:
    return f"ns{nsid}"


def nbd_uri(socket_path: str, nsid: int) -> str:
    return f"nbd+unix:///{export_name(nsid)}?socket={socket_path}"


def nbd_tcp_uri(host: str, port: int, nsid: int) -> str:
    """The URI of an export on a --nbd-listen TCP listener (a wildcard host is
    shown as it was bound: clients put a reachable address there)."""
    shown = f"[{host}]" if ":" in host else host
    return f"nbd://{shown}:{port}/{export_name(nsid)}"


class SessionPaths:
    """Where one session keeps its files inside the runtime directory."""

    def __init__(self, rundir: Path, name: str):
        self.dir = rundir / name
        self.state = self.dir / "session.json"
        self.namespaces = self.dir / "namespaces"  # one NSID per line, for completions
        self.control = self.dir / "control.sock"
        self.nbd = self.dir / "nbd.sock"
        self.log = rundir / "log" / f"{name}.log"

    def check(self) -> None:
        """Refuse, before anything starts, a runtime directory too deep for the sockets
        (bind() would only say "AF_UNIX path too long", from inside the session)."""
        for sock in (self.nbd, self.control):
            if len(os.fsencode(sock)) > MAX_SOCKET_PATH:
                raise DeviceError(f"socket path {sock} is longer than AF_UNIX allows "
                                  f"({MAX_SOCKET_PATH} bytes): use a shorter runtime directory "
                                  f"({ENV_RUNTIME_DIR})")

    def remove(self) -> None:
        """Remove the session's directory and everything in it (not its log).

        Every entry, not just the files a session makes: a process killed in
        write_atomically leaves its temporary file behind, and a directory
        that cannot be removed would show as a dead session forever.
        """
        try:
            entries = list(self.dir.iterdir())
        except OSError:
            return
        for f in entries:
            try:
                f.unlink()
            except OSError:
                pass
        try:
            self.dir.rmdir()
        except OSError:
            pass


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step; several threads may write it at once
    (each through a temporary file of its own)."""
    import tempfile  # only writers need it, not listing (start-up)

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise

