"""The nvmfd command line: options, defaults, subcommand split, listening addresses."""

from __future__ import annotations

import socket

import pytest

from nvmecontrol.errors import UsageError
from nvmecontrol.host.discovery import fetch_discovery_log
from nvmecontrol.target import main as M
from nvmecontrol.target.control import default_socket_path
from nvmecontrol.wire.discovery import AdrFam

from .helpers import connect, connect_discovery


def _args(*argv):
    return M._daemon_parser().parse_args(list(argv))


def test_split_subcommands():
    assert M._split(["list"]) == ("list", [])
    assert M._split(["-S", "/x", "terminate", "-a"]) == ("terminate", ["-S", "/x", "-a"])
    assert M._split(["--socket=/x", "ns-add", "mem:1M"]) == ("ns-add", ["--socket=/x", "mem:1M"])
    assert M._split(["-F", "mem:1M"]) == (None, ["-F", "mem:1M"])
    assert M._split(["-p", "0", "list"]) == (None, ["-p", "0", "list"])


def test_cli_config(tmp_path):
    img = tmp_path / "d.img"
    img.write_bytes(bytes(4096))
    cfg = M.build_config(_args("-a", "127.0.0.1", "-a", "::", "-p", "4421", "-n",
                               "nqn.2014-08.org.example:x", "--allow-host",
                               "nqn.2014-08.org.example:h", str(img), "ramdisk:1M"))
    sub = cfg.subsystems[0]
    assert sub.nqn == "nqn.2014-08.org.example:x"
    assert not sub.allow_any_host and sub.allowed_hosts == ["nqn.2014-08.org.example:h"]
    assert [(n.nsid, n.path) for n in sub.namespaces] == [(1, str(img)), (2, "ramdisk:1M")]
    assert [(p.portid, p.traddr, p.trsvcid, p.adrfam) for p in cfg.ports] == [
        (1, "127.0.0.1", "4421", "ipv4"), (2, "::", "4421", "ipv6")]
    assert all(p.subsystems == [sub.nqn] for p in cfg.ports)


def test_defaults(monkeypatch):
    cfg = M.build_config(_args("mem:1M"))
    assert cfg.ports[0].traddr == "0.0.0.0" and cfg.ports[0].trsvcid == "4420"
    assert cfg.subsystems[0].allow_any_host
    assert cfg.subsystems[0].nqn.startswith("nqn.2014-08.org.nvmexpress:uuid:")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/nonexistent-dir")
    path = default_socket_path()
    assert path.endswith(".sock")


def test_bad_options():
    with pytest.raises(UsageError):
        M.build_config(_args("-n", "nqn.2014-08.org.nvmexpress.discovery", "mem:1M"))
    with pytest.raises(UsageError):
        M.build_config(_args("-n", "", "mem:1M"))
    with pytest.raises(UsageError):
        M.build_config(_args("-p", "70000", "mem:1M"))
    assert M.main(["--block-size", "1000", "mem:1M"]) == 64
    assert M.main(["-F", "-a", "127.0.0.1", "-p", "0", "-n", "nqn.2014-08.org.example:x",
                   "/nonexistent/file"]) == 64
    assert M.main(["-F", "-a", "127.0.0.1", "-p", "0", "-n", "nqn.2014-08.org.example:x",
                   "mem:lots"]) == 64


def test_port_in_use(nvmfd_server, tmp_path):
    rc = M.main(["-F", "-a", "127.0.0.1", "-p", str(nvmfd_server.port), "-S",
                 str(tmp_path / "s.sock"), "-n", "nqn.2014-08.org.example:x", "mem:1M"])
    assert rc == 71


def test_second_daemon_on_same_socket(nvmfd_server):
    rc = M.main(["-F", "-a", "127.0.0.1", "-p", "0", "-S", nvmfd_server.socket_path, "-n",
                 "nqn.2014-08.org.example:x", "mem:1M"])
    assert rc == 64


def _has_ipv6() -> bool:
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback")
def test_ipv6_and_dual_addresses(nvmfd_factory):
    h = nvmfd_factory(addresses=["127.0.0.1", "::"])
    v6 = h.server.ports[1]
    from nvmecontrol.transport.address import Address

    class V6:
        subnqn = h.subnqn
        address = Address("::1", int(v6.trsvcid), "[::1]")
    d = connect_discovery(V6)
    try:
        e = fetch_discovery_log(d).entries[0]
        assert (e.traddr, e.adrfam, e.portid) == ("::1", AdrFam.IPV6, 2)
    finally:
        d.shutdown()
    a = connect(V6, num_io_queues=1)
    a.shutdown()


def test_render_list():
    text = M.render_list([{"id": 3, "transport": "TCP", "hostnqn": "nqn.h", "subnqn": "nqn.s",
                           "peer": "127.0.0.1:5"}])
    head, row = text.splitlines()
    assert head.startswith("  ID Transport ")
    assert row.split() == ["3", "TCP", "nqn.h", "nqn.s", "127.0.0.1:5"]


def test_log_lines_with_text_that_is_not_utf8_are_escaped_not_lost(tmp_path):
    """A host NQN of bytes that are not UTF-8 (decoded with surrogateescape)
    made the log handler fail: a traceback on stderr and the line lost."""
    import logging

    path = tmp_path / "nvmfd.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(M.SafeFormatter("%(message)s"))
    logger = logging.getLogger("nvmfd.test-safe-formatter")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        nqn = b"nqn.2014-08.org.example:\xff".decode("utf-8", "surrogateescape")
        logger.warning('host "%s" is not allowed', nqn)
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert path.read_text() == 'host "nqn.2014-08.org.example:\\udcff" is not allowed\n'
