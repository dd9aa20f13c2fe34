"""The control socket of a session: what ``nvmecontrol`` asks a session.

    {"op": "status"}                    -> {"info": ControllerInfo as JSON}
    {"op": "admin", "sqe": HEX64, "read_len": N, "data": B64?}
                                        -> {"status": S, "dw0": D, "dw1": D, "data": B64}
    {"op": "reconnect", "params": {...}?, "timeout": S?}
                                        -> {"reconnected": true} or an error
    {"op": "disconnect"}                -> {"disconnecting": true}; the session then ends

What goes wrong between the session and its controller (reconnect refused,
connection lost, no answer in time) comes back as ``{"failed": CLASS,
"error": ...}`` with CLASS an exception of ``nvmecontrol.errors``: the
JSON-lines channel itself only tells usage/notfound/unsupported/timeout
apart from "internal", and the CLI needs the family for its exit status
(``reconnect`` to a dead address is EX_NOHOST, not an internal error).
"""

from __future__ import annotations

import base64

from nvmecontrol import errors
from nvmecontrol.backends.model import ConnectParams
from nvmecontrol.errors import ConnectError, NotFound, NvmeControlError, UsageError
from nvmecontrol.transport.jsonlines import JsonLineClient, JsonLineServer

RECONNECT_TIMEOUT_S = 120.0


class SessionControl(JsonLineServer):
    def __init__(self, session, path: str):
        super().__init__(path, self._handle_typed, name="session-control", client_timeout=None)
        self.session = session

    def _handle_typed(self, req: dict) -> dict:
        try:
            return self.handle(req)
        except (UsageError, NotFound):
            raise  # the channel's own kinds carry these
        except NvmeControlError as e:
            return {"failed": type(e).__name__, "error": str(e)}

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


class SessionClient(JsonLineClient):
    def __init__(self, path: str, name: str, timeout: float = 30.0):
        super().__init__(path, not_running=f"session {name} is not running", timeout=timeout)

    def request(self, op: str, **args) -> dict:
        reply = super().request(op, **args)
        if "failed" in reply:
            cls = getattr(errors, str(reply["failed"]), None)
            if not (isinstance(cls, type) and issubclass(cls, NvmeControlError)):
                cls = NvmeControlError
            raise cls(reply.get("error") or f"{op} failed")
        return reply
