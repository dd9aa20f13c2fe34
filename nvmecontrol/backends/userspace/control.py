"""The control socket of a session: what ``nvmecontrol`` asks a session.

    {"op": "status"}                    -> {"info": ControllerInfo as JSON}
    {"op": "admin", "sqe": HEX64, "read_len": N, "data": B64?}
                                        -> {"status": S, "dw0": D, "dw1": D, "data": B64}
    {"op": "io", "sqe": HEX64, "read_len": N, "data": B64?}
                                        -> {"status": S, "errno": E, "data": B64}
                                           (an NVM command on the first I/O queue; status 0
                                           with an errno: failed without an NVMe status)
    {"op": "reconnect", "params": {...}?, "timeout": S?}
                                        -> {"reconnected": true} or an error
    {"op": "disconnect"}                -> {"disconnecting": true}; the session then ends

Errors travel as on every JSON-lines channel (``transport/jsonlines.py``),
with their exact class: ``reconnect`` to a dead address is EX_NOHOST in the
CLI, not an internal error.
"""

from __future__ import annotations

import base64

from nvmecontrol.backends.model import ConnectParams
from nvmecontrol.errors import ConnectError, UsageError
from nvmecontrol.transport.jsonlines import JsonLineClient, JsonLineServer

RECONNECT_TIMEOUT_S = 120.0


class SessionControl(JsonLineServer):
    def __init__(self, session, path: str):
        super().__init__(path, self.handle, name="session-control", client_timeout=None)
        self.session = session

    def handle(self, req: dict) -> dict:
        op = req.get("op")
        s = self.session
        if op == "status":
            return {"info": s.info().to_json(), "last_error": s.last_error}
        if op == "admin":
            try:
                sqe = bytearray.fromhex(req["sqe"])
                read_len = int(req.get("read_len", 0))
                data = base64.b64decode(req["data"]) if req.get("data") else None
            except (KeyError, ValueError, TypeError) as e:
                raise UsageError(f"bad admin request: {e}") from None
            if len(sqe) != 64 or not 0 <= read_len <= 1 << 20:
                raise UsageError("an admin command is 64 bytes and reads at most 1 MiB")
            cqe, out = s.admin_command(sqe, read_len, data)
            return {"status": cqe.status, "dw0": cqe.dw0, "dw1": cqe.dw1,
                    "data": base64.b64encode(out).decode()}
        if op == "io":
            return self._io(req)
        if op == "reconnect":
            params = ConnectParams.from_json(req["params"]) if req.get("params") else None
            result = s.request_reconnect(params, float(req.get("timeout", RECONNECT_TIMEOUT_S)))
            if not result.get("ok"):
                raise ConnectError(f"reconnect failed: {result.get('error') or 'unknown error'}")
            return {"reconnected": True}
        if op == "disconnect":
            s.request_stop()
            return {"disconnecting": True}
        raise UsageError(f"unknown operation {op!r}")

    def _io(self, req: dict) -> dict:
        try:
            sqe = bytes.fromhex(req["sqe"])
            read_len = int(req.get("read_len", 0))
            data = base64.b64decode(req["data"]) if req.get("data") else None
        except (KeyError, ValueError, TypeError) as e:
            raise UsageError(f"bad I/O request: {e}") from None
        status, err, out = self.session.io_command(sqe, read_len, data)
        return {"status": status, "errno": err, "data": base64.b64encode(out).decode()}


class SessionClient(JsonLineClient):
    def __init__(self, path: str, name: str, timeout: float = 30.0):
        super().__init__(path, not_running=f"session {name} is not running", timeout=timeout)
