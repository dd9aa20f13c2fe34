"""The control socket of a running nvmfd: a JSON-lines protocol, both ends.

A Unix stream socket (mode 0600: it can end associations and export any
file the daemon can open).  Each request is one JSON object on one line,
each answer one line back; a client may send several requests on one
connection.

    {"op": "list"}
        -> {"ok": true, "associations": [{"id", "transport", "hostnqn", "subnqn",
            "cntlid", "peer", "local", "queues", "kato_ms", "discovery", "since"}]}
    {"op": "terminate", "id": N} | {"op": "terminate", "host": NQN} | {"op": "terminate", "all": true}
        -> {"ok": true, "terminated": count}
    {"op": "ns-add", "device": PATH, "nsid": N?, "subsystem": NQN?, "read_only": bool?,
     "block_size": 512|4096?}
        -> {"ok": true, "subsystem": NQN, "nsid": N}
    {"op": "ns-remove", "nsid": N, "subsystem": NQN?}
        -> {"ok": true, "subsystem": NQN, "nsid": N}
    {"op": "config"}
        -> {"ok": true, "config": <nvmetcli saved-config JSON of what is served>}

Errors: {"ok": false, "error": "message", "kind": "usage" | "notfound" | "internal"}.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import stat
import threading

from nvmecontrol.errors import ConnectError, NotFound, NvmeControlError, UsageError
from nvmecontrol.target import constants as K

log = logging.getLogger("nvmfd")

CONTROL_TIMEOUT_S = 30.0


def default_socket_path() -> str:
    """``/run/nvmfd/nvmfd.sock`` for root, else ``$XDG_RUNTIME_DIR/nvmfd.sock`` or /tmp."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return "/run/nvmfd/nvmfd.sock"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, "nvmfd.sock")
    uid = os.geteuid() if hasattr(os, "geteuid") else 0
    return f"/tmp/nvmfd-{uid}.sock"


# --- server side --------------------------------------------------------------

class ControlServer:
    def __init__(self, server, path: str):
        self.server = server
        self.path = path
        self.sock: socket.socket | None = None
        self.thread: threading.Thread | None = None
        self._clients = threading.BoundedSemaphore(K.MAX_CONTROL_CLIENTS)
        self._stopping = False

    def start(self) -> None:
        self.bind()
        self.serve()

    def bind(self) -> None:
        path = self.path
        directory = os.path.dirname(path)
        if directory and not os.path.isdir(directory):
            os.makedirs(directory, mode=0o755, exist_ok=True)
        if os.path.exists(path):
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                raise UsageError(f"control socket path {path} exists and is not a socket")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.settimeout(1.0)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # stale, from a daemon that died
            else:
                raise UsageError(f"another nvmfd is running (control socket {path} answers)")
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(8)
        self.sock = sock

    def serve(self) -> None:
        self.thread = threading.Thread(target=self._accept, name="nvmfd-control", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self._stopping = True
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._stopping:
            try:
                client, _ = self.sock.accept()
            except OSError:
                if self._stopping:
                    return
                continue
            if not self._clients.acquire(blocking=False):
                client.close()
                continue
            threading.Thread(target=self._serve, args=(client,), name="nvmfd-control-client",
                             daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            client.settimeout(CONTROL_TIMEOUT_S)
            f = client.makefile("rb")
            while True:
                line = f.readline(K.MAX_CONTROL_LINE + 1)
                if not line:
                    return
                if len(line) > K.MAX_CONTROL_LINE:
                    client.sendall(_encode({"ok": False, "kind": "usage",
                                            "error": "request line too long"}))
                    return
                client.sendall(_encode(self.handle_line(line)))
        except OSError:
            pass
        finally:
            client.close()
            self._clients.release()

    def handle_line(self, line: bytes) -> dict:
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise UsageError("a request is a JSON object")
            return {"ok": True, **self.handle(req)}
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return {"ok": False, "kind": "usage", "error": f"request is not JSON: {e}"}
        except NotFound as e:
            return {"ok": False, "kind": "notfound", "error": str(e)}
        except UsageError as e:
            return {"ok": False, "kind": "usage", "error": str(e)}
        except (NvmeControlError, OSError) as e:
            return {"ok": False, "kind": "internal", "error": str(e)}
        except Exception as e:  # keep the daemon up, say what happened
            log.exception("control request failed")
            return {"ok": False, "kind": "internal", "error": f"internal error: {e}"}

    def handle(self, req: dict) -> dict:
        op = req.get("op")
        srv = self.server
        if op == "list":
            return {"associations": srv.associations()}
        if op == "terminate":
            if req.get("all"):
                n = srv.terminate(all=True)
            elif req.get("id") is not None:
                n = srv.terminate(assoc_id=_int(req["id"], "id"))
            elif req.get("host"):
                n = srv.terminate(hostnqn=str(req["host"]))
            else:
                raise UsageError("terminate needs an id, a host or all")
            return {"terminated": n}
        if op == "ns-add":
            device = req.get("device")
            if not isinstance(device, str) or not device:
                raise UsageError("ns-add needs a device")
            nsid = req.get("nsid")
            subnqn, nsid = srv.add_namespace(
                device, nsid=_int(nsid, "nsid") if nsid is not None else None,
                subnqn=req.get("subsystem"), read_only=bool(req.get("read_only", False)),
                block_size=_int(req.get("block_size", 512), "block_size"))
            return {"subsystem": subnqn, "nsid": nsid}
        if op == "ns-remove":
            subnqn, nsid = srv.remove_namespace(_int(req.get("nsid"), "nsid"),
                                                subnqn=req.get("subsystem"))
            return {"subsystem": subnqn, "nsid": nsid}
        if op == "config":
            return {"config": srv.dump_config()}
        raise UsageError(f"unknown operation {op!r}")


def _int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise UsageError(f"{what} must be a number")
    try:
        return int(value, 0) if isinstance(value, str) else value
    except ValueError:
        raise UsageError(f"{what} must be a number") from None


def _encode(obj: dict) -> bytes:
    return (json.dumps(obj, sort_keys=True) + "\n").encode()


# --- client side ----------------------------------------------------------------

class ControlClient:
    """Talks to a running nvmfd; raises ConnectError when nothing answers."""

    def __init__(self, path: str | None = None, timeout: float = CONTROL_TIMEOUT_S):
        self.path = path or default_socket_path()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(self.path)
        except OSError as e:
            self.sock.close()
            if e.errno in (errno.ENOENT, errno.ECONNREFUSED):
                raise ConnectError(f"nvmfd is not running (no answer on {self.path})") from None
            raise ConnectError(f"cannot reach nvmfd at {self.path}: {e.strerror or e}") from None
        self._file = self.sock.makefile("rb")

    def request(self, op: str, **args) -> dict:
        self.sock.sendall(_encode({"op": op, **args}))
        line = self._file.readline()
        if not line:
            raise ConnectError("nvmfd closed the control connection")
        reply = json.loads(line)
        if not reply.get("ok"):
            kind = reply.get("kind")
            msg = reply.get("error", "request failed")
            if kind == "notfound":
                raise NotFound(msg)
            if kind == "usage":
                raise UsageError(msg)
            raise NvmeControlError(msg)
        reply.pop("ok", None)
        return reply

    def close(self) -> None:
        self._file.close()
        self.sock.close()

    def __enter__(self) -> "ControlClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
