"""The ``nbd`` backend: associations kept by session processes, found in the runtime directory.

Each session lives in ``<runtime>/nvmeuN/`` (state file, control and NBD
sockets); its log is ``<runtime>/log/nvmeuN.log``.  Names are allocated
under a lock, lowest free number first, as the kernel numbers nvmeX.  A
session whose process died is reported as ``dead`` by devlist and cleaned
up by disconnect.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from nvmecontrol.backends import presence
from nvmecontrol.backends.base import AssociationBackend
from nvmecontrol.backends.model import ControllerInfo, NamespaceInfo
from nvmecontrol.backends.runtime import locked, runtime_dir
from nvmecontrol.backends.names import _NAME_RE, parse_session_name  # noqa: F401 (re-exported)
from nvmecontrol.backends.userspace.paths import NBD_PORT, SessionPaths
from nvmecontrol.errors import ConnectError, NotFound, PeerTimeout

TYPE_CHECKING = False  # typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from nvmecontrol.backends.model import ConnectParams

PREFIX = "nvmeu"
# How long disconnect waits for a session process to finish its shutdown.
EXIT_TIMEOUT_S = 20.0


def process_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a recycled PID is not our session
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"nvmecontrol.backends.userspace" in cmdline


def _info_from_state(data: dict, alive: bool, mtime: float) -> ControllerInfo:
    from nvmecontrol.backends.model import ConnectParams

    namespaces = [NamespaceInfo(**ns) for ns in data.get("namespaces", [])]
    params = ConnectParams.from_json(data["params"]) if data.get("params") else None
    info = ControllerInfo(**{k: v for k, v in data.items()
                             if k in ControllerInfo.__slots__ and k not in ("namespaces", "params")},
                          namespaces=namespaces, params=params)
    if not alive:
        info.state = "dead"
        info.connected = False
        info.disconnected_since = info.disconnected_since or mtime
    return info


class UserspaceBackend(AssociationBackend):
    name = "nbd"

    def __init__(self, *, environ=None, nbd_tcp: str | None = None, attach: bool = True):
        if nbd_tcp:
            # Checked here, before connect builds an association for nothing
            # (the session process would only find it bad after the handoff).
            from nvmecontrol.transport.address import parse_address

            parse_address(nbd_tcp, default_port=NBD_PORT, listen=True)
        self.environ = environ
        self.nbd_tcp = nbd_tcp
        self.attach = attach

    @classmethod
    def available(cls) -> bool:
        return presence.userspace()

    def owns(self, name: str) -> bool:
        return parse_session_name(name) is not None

    @property
    def rundir(self) -> Path:
        return runtime_dir(self.environ)

    def paths(self, name: str) -> SessionPaths:
        return SessionPaths(self.rundir, name)

    # -- enumeration --
    def _read(self, name: str) -> ControllerInfo | None:
        import json  # only with a session to read (devlist's start-up)

        paths = self.paths(name)
        try:
            data = json.loads(paths.state.read_text())
            mtime = paths.state.stat().st_mtime
        except (OSError, ValueError):
            if not paths.dir.is_dir():
                return None
            # A directory without state: a session that died while starting.
            return ControllerInfo(name=name, backend=self.name, state="dead", connected=False)
        return _info_from_state(data, process_alive(data.get("pid")), mtime)

    def list(self) -> list[ControllerInfo]:
        try:
            names = [p.name for p in self.rundir.iterdir()
                     if p.is_dir() and _NAME_RE.match(p.name)]
        except OSError:
            return []
        infos = [self._read(n) for n in sorted(names, key=lambda n: int(n[len(PREFIX):]))]
        return [i for i in infos if i is not None]

    def get(self, name: str) -> ControllerInfo:
        parsed = parse_session_name(name)
        info = self._read(parsed[0]) if parsed else None
        if info is None:
            raise NotFound(f"no session {name} (see nvmecontrol devlist)")
        return info

    # -- connect --
    def _allocate(self) -> str:
        with locked("sessions", environ=self.environ):
            n = 0
            while True:
                name = f"{PREFIX}{n}"
                try:
                    self.paths(name).dir.mkdir(mode=0o700)
                    return name
                except FileExistsError:
                    n += 1

    def find(self, params: ConnectParams) -> ControllerInfo | None:
        # A session whose process exited holds no association: connecting
        # again must make a new one, not answer "already connected".
        for info in self.list():
            if info.state != "dead" and info.params is not None \
                    and info.params.same_association(params):
                return info
        return None

    def connect(self, assoc, params: ConnectParams, dle: bytes | None = None) -> ControllerInfo:
        name = self._allocate()
        # Held until the session serves: meanwhile its directory has no state and
        # looks like a dead session, which a concurrent disconnect must not remove.
        with locked(name, environ=self.environ):
            try:
                self.paths(name).check()
                from nvmecontrol.backends.userspace.daemon import spawn  # (the data path)

                ready = spawn(name, self.rundir, assoc, params, nbd_tcp=self.nbd_tcp,
                              attach=self.attach)
            except BaseException:
                self._remove_dir(name)
                raise
        info = self.get(name)
        info.warnings = ready.get("warnings", [])
        return info

    def _remove_dir(self, name: str) -> None:
        self.paths(name).remove()

    # -- disconnect, reconnect --
    def _resolve(self, target: str) -> list[ControllerInfo]:
        if self.owns(target):
            return [self.get(target)]
        return [i for i in self.list() if i.subnqn == target]

    def disconnect(self, name: str) -> list[str]:
        infos = self._resolve(name)
        if not infos:
            raise NotFound(f"no session matches {name}")
        done = []
        for info in infos:
            with locked(info.name, environ=self.environ):
                # Read again under the lock: what we listed may have changed while
                # we waited (a connect finished starting it, another disconnect ended it).
                info = self._read(info.name)
                if info is None:
                    continue
                self._disconnect_one(info)
            done.append(info.name)
        if not done:
            raise NotFound(f"no session matches {name} (any more)")
        return done

    def disconnect_all(self) -> list[str]:
        names = []
        for info in self.list():
            try:
                names.extend(self.disconnect(info.name))
            except NotFound:
                pass  # ended meanwhile by another disconnect
        return names

    def _disconnect_one(self, info: ControllerInfo) -> None:
        # Imported when used: listing sessions needs none of them.
        import signal

        from nvmecontrol.backends.userspace import attach as nbd_attach
        from nvmecontrol.backends.userspace.control import SessionClient

        paths = self.paths(info.name)
        if info.state != "dead" and process_alive(info.pid):
            try:
                with SessionClient(str(paths.control), info.name) as c:
                    c.request("disconnect")
            except (ConnectError, PeerTimeout):
                os.kill(info.pid, signal.SIGTERM)
            deadline = time.monotonic() + EXIT_TIMEOUT_S
            while process_alive(info.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if process_alive(info.pid):
                os.kill(info.pid, signal.SIGKILL)
        else:
            # The process is gone: its /dev/nbdX (if any) no longer works either.
            for ns in info.namespaces:
                if ns.path:
                    nbd_attach.detach(ns.path)
        self._remove_dir(info.name)

    def reconnect(self, name: str, params: ConnectParams | None = None) -> ControllerInfo:
        info = self.get(name)
        if info.state == "dead" or not process_alive(info.pid):
            raise NotFound(f"session {info.name} is not running (its process exited); "
                           "disconnect it and connect again")
        from nvmecontrol.backends.userspace.control import RECONNECT_TIMEOUT_S, SessionClient

        with locked(info.name, environ=self.environ):
            with SessionClient(str(self.paths(info.name).control), info.name,
                               timeout=RECONNECT_TIMEOUT_S + 10) as c:
                c.request("reconnect", params=params.to_json() if params else None,
                          timeout=RECONNECT_TIMEOUT_S)
        return self.get(info.name)
