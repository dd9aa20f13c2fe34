"""Commands through a running session's control socket: admin (identify, logpage), I/O (resv)."""

from __future__ import annotations

import base64
import os

from nvmecontrol.backends.userspace.backend import (UserspaceBackend, parse_session_name,
                                                    process_alive)
from nvmecontrol.backends.userspace.control import SessionClient
from nvmecontrol.errors import CommandFailed, DeviceError, NotFound
from nvmecontrol.wire import admin
from nvmecontrol.wire.capsule import encode_sqe
from nvmecontrol.wire.identify import IDENTIFY_DATA_SIZE
from nvmecontrol.wire.status import describe_status, status_is_error


class SessionAdmin:
    """Commands through a session's control socket: admin (identify, logpage), I/O (resv)."""

    def __init__(self, name: str, *, environ=None):
        backend = UserspaceBackend(environ=environ)
        parsed = parse_session_name(name)
        if parsed is None:
            raise NotFound(f"{name} is not a session name")
        info = backend.get(name)
        if not process_alive(info.pid):
            raise NotFound(f"session {info.name} is not running (its process exited)")
        self.name = info.name
        self.nsid = parsed[1]
        self.client = SessionClient(str(backend.paths(info.name).control), info.name)
        self.cdata_raw = None

    def _execute(self, sqe, what: str, read_len: int) -> bytes:
        reply = self.client.request("admin", sqe=encode_sqe(sqe).hex(), read_len=read_len)
        if status_is_error(reply["status"]):
            raise CommandFailed(f"{what} failed: {describe_status(reply['status'])}",
                                reply["status"])
        return base64.b64decode(reply["data"])

    def identify(self, cns: int, nsid: int = 0, cntid: int = 0) -> bytes:
        return self._execute(admin.build_identify(cns, nsid, cntid), f"Identify CNS {cns:#04x}",
                             IDENTIFY_DATA_SIZE)

    def get_log_page(self, g: admin.GetLogPage) -> bytes:
        return self._execute(admin.build_get_log_page(g), f"Get Log Page {g.lid:#04x}", g.length)

    def io_command(self, sqe, what: str, *, write_data: bytes | None = None,
                   read_len: int = 0) -> tuple[int, bytes]:
        """An I/O command on the session's first I/O queue: (DW0, data read).

        DW0 does not travel back (the data path keeps no completion dwords):
        it is reported as 0, which no reservation command uses.
        """
        reply = self.client.request(
            "io", sqe=encode_sqe(sqe).hex(), read_len=read_len,
            data=base64.b64encode(write_data).decode() if write_data else None)
        status = reply["status"]
        if status_is_error(status):
            raise CommandFailed(f"{what} failed: {describe_status(status, context='nvm')}",
                                status)
        if reply.get("errno"):
            raise DeviceError(f"{what} failed in session {self.name}: "
                              f"{os.strerror(reply['errno'])} (no NVMe status)")
        return 0, base64.b64decode(reply["data"])

    def close(self) -> None:
        self.client.close()
