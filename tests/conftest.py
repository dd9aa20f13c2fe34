"""Shared fixtures: an nvmfd target to test against.

``nvmfd_server``  an in-process target on 127.0.0.1, an ephemeral port, one
                  subsystem (``NvmfdHandle.subnqn``) with one 16 MiB RAM
                  namespace, any host allowed, a control socket in tmp_path.
``nvmfd_factory`` the same with your own configuration:
                  ``nvmfd_factory(config=TargetConfig(...), **Server options)``
                  or ``nvmfd_factory(namespaces=["mem:1M", path], allow_hosts=[nqn],
                  subnqn=..., addresses=["127.0.0.1", "::1"], read_only=...)``.
``nvmfd_process`` the real entry point in a subprocess
                  (``python -m nvmecontrol.target.main -F -a 127.0.0.1 -p 0
                  --port-file ... -S ... -n ... mem:16M``).
``host_identity`` a fresh random host NQN/ID (``HostIdentity``).

Every handle has ``host``, ``port``, ``subnqn``, ``socket_path``,
``address`` (an ``Address`` for ``connect_association``), ``control()``
(a ``ControlClient``) and ``stop()``; in-process handles also expose
``server`` (the ``nvmecontrol.target.server.Server``).  Fixtures stop what
they started.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from nvmecontrol.hostid import HostIdentity
from nvmecontrol.nqn import nqn_from_uuid
from nvmecontrol.target.config import (NamespaceConfig, PortConfig, SubsystemConfig,
                                       TargetConfig)
from nvmecontrol.target.control import ControlClient
from nvmecontrol.target.server import Server
from nvmecontrol.transport.address import Address

DEFAULT_SUBNQN = "nqn.2014-08.org.example:nvmfd-test"
REPO = Path(__file__).resolve().parents[1]


def make_host(nqn: str | None = None) -> HostIdentity:
    """A host identity with a random UUID (and that UUID's NQN unless given)."""
    u = uuid.uuid4()
    return HostIdentity(nqn or nqn_from_uuid(u), u, "test", "test")


@dataclass
class NvmfdHandle:
    host: str
    port: int
    subnqn: str
    socket_path: str
    server: Server | None = None
    proc: subprocess.Popen | None = None
    ports: list[int] = field(default_factory=list)

    @property
    def address(self) -> Address:
        return Address(self.host, self.port, f"{self.host}:{self.port}")

    def control(self) -> ControlClient:
        return ControlClient(self.socket_path)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def simple_config(*, subnqn: str = DEFAULT_SUBNQN, namespaces=("mem:16M",),
                  allow_hosts=None, addresses=("127.0.0.1",), block_size: int = 512,
                  referrals=()) -> TargetConfig:
    sub = SubsystemConfig(
        nqn=subnqn,
        namespaces=[NamespaceConfig(nsid=i, path=str(p), block_size=block_size)
                    for i, p in enumerate(namespaces, 1)],
        allow_any_host=allow_hosts is None,
        allowed_hosts=list(allow_hosts or []))
    ports = [PortConfig(portid=i, traddr=a, trsvcid="0", adrfam="ipv6" if ":" in a else "ipv4",
                        subsystems=[subnqn], referrals=list(referrals))
             for i, a in enumerate(addresses, 1)]
    return TargetConfig(hosts=list(allow_hosts or []), ports=ports, subsystems=[sub])


@pytest.fixture
def nvmfd_factory(tmp_path):
    started: list[NvmfdHandle] = []
    counter = [0]

    def start(config: TargetConfig | None = None, **kw) -> NvmfdHandle:
        server_opts = {k: kw.pop(k) for k in ("allow_hdgst", "allow_ddgst", "read_only",
                                              "log_associations", "clock") if k in kw}
        if config is None:
            config = simple_config(**kw)
        counter[0] += 1
        sock = str(tmp_path / f"nvmfd{counter[0]}.sock")
        server = Server(config, control_path=sock, **server_opts)
        server.start()
        first = server.ports[0]
        handle = NvmfdHandle(host=first.traddr if first.traddr not in ("0.0.0.0", "::")
                             else "127.0.0.1", port=int(first.trsvcid),
                             subnqn=config.subsystems[0].nqn if config.subsystems else "",
                             socket_path=sock, server=server, ports=server.bound_ports())
        started.append(handle)
        return handle

    yield start
    for h in started:
        h.stop()


@pytest.fixture
def nvmfd_server(nvmfd_factory) -> NvmfdHandle:
    return nvmfd_factory()


@pytest.fixture
def nvmfd_process(tmp_path):
    port_file = tmp_path / "port"
    sock = str(tmp_path / "nvmfd.sock")
    log = open(tmp_path / "nvmfd.log", "wb")
    cmd = [sys.executable, "-m", "nvmecontrol.target.main", "-F", "-a", "127.0.0.1", "-p", "0",
           "--port-file", str(port_file), "-S", sock, "-n", DEFAULT_SUBNQN, "mem:16M"]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
    deadline = time.monotonic() + 30
    while not (port_file.exists() and port_file.read_text().strip()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            pytest.fail("nvmfd did not start:\n" + (tmp_path / "nvmfd.log").read_text())
        time.sleep(0.05)
    port = int(port_file.read_text().split()[0])
    handle = NvmfdHandle(host="127.0.0.1", port=port, subnqn=DEFAULT_SUBNQN, socket_path=sock,
                         proc=proc, ports=[port])
    # The port file is written before the threads start; wait for the control socket too.
    while not os.path.exists(sock) and time.monotonic() < deadline:
        time.sleep(0.02)
    yield handle
    handle.stop()
    log.close()


@pytest.fixture
def host_identity() -> HostIdentity:
    return make_host()


@pytest.fixture(scope="session")
def _cache_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture(autouse=True)
def _private_cache_home(_cache_home, monkeypatch):
    """Keep ``discover``'s NQN cache (cli/discovery_cache.py) out of the user's home."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(_cache_home))


@pytest.fixture(autouse=True)
def _private_runtime_dir(monkeypatch):
    """Sessions, locks and their logs live in a per-test runtime directory.

    A short path: AF_UNIX socket paths are limited to 107 bytes.  Removed
    afterwards (tests that start sessions also end them).
    """
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="nvmc-run-", dir="/tmp"))
    monkeypatch.setenv("NVMECONTROL_RUNTIME_DIR", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)
