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

    from nvmecontrol.target.daemon_log import SafeFormatter

    path = tmp_path / "nvmfd.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(SafeFormatter("%(message)s"))
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


# --- FreeBSD's -P (a discovery-only port), per-port parameters, half-open connections ---

def test_discovery_port_lists_the_io_port(nvmfd_factory):
    """-P: the discovery controller on its own port lists the subsystems at the
    I/O port; an I/O Connect there is refused (FreeBSD: Invalid Parameter, SUBNQN)."""
    from tests.conftest import simple_config
    from nvmecontrol.errors import CommandFailed
    from nvmecontrol.target.server import Server
    from nvmecontrol.transport.address import Address

    server = Server(simple_config(), discovery_trsvcid="0")
    server.start()
    try:
        io_port, disc_port = server.bound_ports()
        assert io_port != disc_port

        class Disc:
            subnqn = server.config.subsystems[0].nqn
            address = Address("127.0.0.1", disc_port, f"127.0.0.1:{disc_port}")
        d = connect_discovery(Disc)
        try:
            (e,) = fetch_discovery_log(d).entries
            assert (e.subnqn, e.trsvcid, e.traddr, e.portid) == (Disc.subnqn, str(io_port),
                                                                 "127.0.0.1", 1)
        finally:
            d.shutdown()
        with pytest.raises(CommandFailed):
            connect(Disc)

        class Io(Disc):
            address = Address("127.0.0.1", io_port, f"127.0.0.1:{io_port}")
        a = connect(Io, num_io_queues=1)
        a.shutdown()
    finally:
        server.stop()


def test_discovery_port_option(tmp_path):
    cfg = M.build_config(_args("-P", "8009", "-p", "4421", "mem:1M"))
    assert [p.trsvcid for p in cfg.ports] == ["4421"]  # -P is a listener beside the port


def test_port_parameters_apply_to_new_connections(nvmfd_factory):
    from tests.conftest import simple_config
    from nvmecontrol.errors import CommandFailed
    from .helpers import raw_queue

    cfg = simple_config()
    cfg.ports[0].param = {"inline_data_size": "1024", "max_queue_size": "32",
                          "maxh2cdata": "16384"}
    h = nvmfd_factory(config=cfg)
    q = raw_queue(h)
    try:
        assert q.qp.maxh2cdata == 16384
    finally:
        q.close()
    a = connect(h, num_io_queues=1)
    try:
        assert a.cap.mqes == 31
        assert a.cdata.ioccsz == (64 + 1024) // 16
        assert a.io_queue_size == 32
    finally:
        a.shutdown()
    with pytest.raises((CommandFailed, UsageError)):
        connect(h, num_io_queues=1, io_queue_size=64)


def test_connections_that_never_send_connect_are_capped(nvmfd_server, monkeypatch):
    """Past MAX_HANDSHAKING connections that sent their ICReq but no Connect,
    the oldest is closed for a new one."""
    from nvmecontrol.target import server as S
    from .helpers import raw_queue, wait_for

    monkeypatch.setattr(S, "MAX_HANDSHAKING", 2)
    queues = [raw_queue(nvmfd_server) for _ in range(3)]
    try:
        first = queues[0].sock
        first.settimeout(5.0)
        assert first.recv(1) == b""  # closed by nvmfd
        assert wait_for(lambda: nvmfd_server.server.connection_count() == 2)
        a = connect(nvmfd_server)  # a host that connects at once still gets in
        a.shutdown()
    finally:
        for q in queues:
            q.close()


def test_keep_alive_is_per_association(nvmfd_factory):
    """One association's keep-alive timer running out ends that one only."""
    from .helpers import wait_for

    now = [1000.0]
    h = nvmfd_factory(clock=lambda: now[0])
    short = connect(h, kato_s=1)
    long = connect(h, kato_s=100)
    try:
        now[0] += 5
        h.server.check_keep_alive()
        assert wait_for(lambda: [x["kato_ms"] for x in h.server.associations()] == [100_000])
    finally:
        short.close()
        long.shutdown()
