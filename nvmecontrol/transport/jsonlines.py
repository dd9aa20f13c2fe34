"""A local control channel: JSON objects, one per line, over a Unix socket.

nvmfd and the userspace sessions are both driven this way (``nvmfd list``,
``nvmecontrol identify nvmeu0``...).  The socket is mode 0600: whoever can
use it can end associations.  Each request is one JSON object on one line,
each answer one line back; a client may send several requests on one
connection.  Errors travel as ``{"ok": false, "error": "...", "kind": K,
"class": C}``: K one of usage, notfound, unsupported, timeout, internal (what
nvmfd documents), C the exact exception of ``nvmecontrol.errors``, which the
client raises again so the CLI keeps the cause's exit status.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import stat
import threading
from typing import NoReturn

from nvmecontrol import errors
from nvmecontrol.errors import (ConnectError, NotFound, NvmeControlError, PeerTimeout, Unsupported,
                                UsageError)

MAX_LINE = 64 * 1024
MAX_CLIENTS = 16
TIMEOUT_S = 30.0

_KINDS = ((NotFound, "notfound"), (UsageError, "usage"), (Unsupported, "unsupported"),
          (PeerTimeout, "timeout"))


def error_reply(e: BaseException) -> dict:
    """How ``e`` travels: the coarse kind and, for our own errors, the exact class."""
    kind = next((k for cls, k in _KINDS if isinstance(e, cls)), "internal")
    reply = {"ok": False, "kind": kind, "error": str(e) or type(e).__name__}
    if isinstance(e, NvmeControlError):
        reply["class"] = type(e).__name__
    return reply


def raise_error(reply: dict, default: str = "request failed") -> NoReturn:
    """Raise the exception an error reply describes."""
    cls = getattr(errors, str(reply.get("class")), None)
    if not (isinstance(cls, type) and issubclass(cls, NvmeControlError)):
        cls = next((c for c, k in _KINDS if k == reply.get("kind")), NvmeControlError)
    raise cls(reply.get("error") or default)


def encode(obj: dict) -> bytes:
    return (json.dumps(obj, sort_keys=True) + "\n").encode()


class JsonLineServer:
    """Serves ``handler(request) -> dict`` on a Unix socket, one thread per client."""

    def __init__(self, path: str, handler, *, name: str = "control", log: logging.Logger | None = None,
                 max_clients: int = MAX_CLIENTS, max_line: int = MAX_LINE,
                 client_timeout: float | None = TIMEOUT_S):
        self.path = path
        self.handler = handler
        self.name = name
        self.log = log or logging.getLogger(name)
        self.max_line = max_line
        self.client_timeout = client_timeout
        self.sock: socket.socket | None = None
        self.thread: threading.Thread | None = None
        self._clients = threading.BoundedSemaphore(max_clients)
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
                os.unlink(path)  # stale, left by a process that died
            else:
                raise UsageError(f"another {self.name} is running (control socket {path} answers)")
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
        self.thread = threading.Thread(target=self._accept, name=self.name, daemon=True)
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
            threading.Thread(target=self._serve, args=(client,), name=f"{self.name}-client",
                             daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            client.settimeout(self.client_timeout)
            f = client.makefile("rb")
            while True:
                line = f.readline(self.max_line + 1)
                if not line:
                    return
                if len(line) > self.max_line:
                    client.sendall(encode({"ok": False, "kind": "usage",
                                           "error": "request line too long"}))
                    return
                client.sendall(encode(self.handle_line(line)))
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
            return {"ok": True, **self.handler(req)}
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return {"ok": False, "kind": "usage", "error": f"request is not JSON: {e}"}
        except (NvmeControlError, OSError) as e:
            return error_reply(e)
        except Exception as e:  # keep the process up, say what happened
            self.log.exception("control request failed")
            return {"ok": False, "kind": "internal", "error": f"internal error: {e}"}


class JsonLineClient:
    """Talks to a JsonLineServer; ConnectError (``not_running``) when nothing answers."""

    def __init__(self, path: str, *, not_running: str, timeout: float = TIMEOUT_S):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError as e:
            self.sock.close()
            if e.errno in (errno.ENOENT, errno.ECONNREFUSED):
                raise ConnectError(f"{not_running} (no answer on {path})") from None
            raise ConnectError(f"cannot reach {path}: {e.strerror or e}") from None
        self._file = self.sock.makefile("rb")

    def request(self, op: str, **args) -> dict:
        try:
            self.sock.sendall(encode({"op": op, **args}))
            line = self._file.readline()
        except socket.timeout:
            raise PeerTimeout(f"no answer on {self.path} in time") from None
        except OSError as e:
            raise ConnectError(f"control connection {self.path} failed: {e.strerror or e}") from None
        if not line:
            raise ConnectError(f"the control connection {self.path} was closed")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise_error(reply)
        reply.pop("ok", None)
        return reply

    def close(self) -> None:
        self._file.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
