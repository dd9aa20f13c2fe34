"""FreeBSD-style address parsing, formatting and resolution (transport.address)."""

import socket

import pytest

from nvmecontrol.errors import ConnectError, UsageError
from nvmecontrol.transport import address as addr
from nvmecontrol.transport.address import Address, parse_address


def test_well_known_ports():
    assert addr.DISCOVERY_PORT == 8009
    assert addr.IO_PORT == 4420


# (text, host, port) with an explicit port: the default must not be used.
EXPLICIT_PORT = [
    ("[::1]:4420", "::1", 4420),
    ("[fe80::1%eth0]:4420", "fe80::1%eth0", 4420),
    ("[2001:db8::10]:1", "2001:db8::10", 1),
    ("10.0.0.1:4420", "10.0.0.1", 4420),
    ("192.168.1.2:65535", "192.168.1.2", 65535),
    ("target.example.com:8009", "target.example.com", 8009),
    ("localhost:4421", "localhost", 4421),
]


@pytest.mark.parametrize(("text", "host", "port"), EXPLICIT_PORT)
@pytest.mark.parametrize("default", [None, 7])
def test_forms_with_port(text, host, port, default):
    assert parse_address(text, default_port=default) == Address(host, port, text)


NO_PORT = [
    ("[::1]", "::1"),
    ("[fe80::1%eth0]", "fe80::1%eth0"),
    ("::1", "::1"),
    ("2001:db8::1", "2001:db8::1"),
    ("fe80::1%eth0", "fe80::1%eth0"),
    ("::ffff:10.0.0.1", "::ffff:10.0.0.1"),
    ("10.0.0.1", "10.0.0.1"),
    ("target.example.com", "target.example.com"),
    ("localhost", "localhost"),
]


@pytest.mark.parametrize(("text", "host"), NO_PORT)
def test_forms_without_port_take_the_default(text, host):
    for default in (addr.DISCOVERY_PORT, addr.IO_PORT):
        assert parse_address(text, default_port=default) == Address(host, default, text)


@pytest.mark.parametrize(("text", "host"), NO_PORT)
def test_missing_port_without_default_is_an_error(text, host):
    with pytest.raises(UsageError) as info:
        parse_address(text, default_port=None, command="connect")
    assert str(info.value) == (
        f'address "{text}" has no port: connect needs an explicit port, '
        f"e.g. {addr.format_address(host, 4420)}"
    )


def test_missing_port_message_example():
    with pytest.raises(UsageError) as info:
        parse_address("10.0.0.1", default_port=None, command="connect")
    assert str(info.value) == (
        'address "10.0.0.1" has no port: connect needs an explicit port, e.g. 10.0.0.1:4420'
    )
    with pytest.raises(UsageError, match=r"e\.g\. \[fe80::1\]:4420$"):
        parse_address("fe80::1", default_port=None)
    with pytest.raises(UsageError, match="this command needs an explicit port"):
        parse_address("h", default_port=None)


def test_bare_ipv6_cannot_carry_a_port():
    # "fe80::1:4420" is a valid IPv6 address; the last group is not a port.
    a = parse_address("fe80::1:4420", default_port=8009)
    assert a.host == "fe80::1:4420"
    assert a.port == 8009


# (text, the problem expected in the message)
INVALID = [
    ("", "empty"),
    ("[::1", 'missing "]"'),
    ("[::1:4420", 'missing "]"'),
    ("[]", 'empty IPv6 address between "[" and "]"'),
    ("[]:4420", 'empty IPv6 address between "[" and "]"'),
    ("[::1]:", 'empty port after ":"'),
    ("[::1]4420", 'unexpected "4420" after "]"'),
    ("[::1]]:4420", 'unexpected "]:4420" after "]"'),
    ("[10.0.0.1]:4420", '"10.0.0.1" is not an IPv6 address'),
    ("[host]:4420", '"host" is not an IPv6 address'),
    (":4420", 'empty host before ":"'),
    ("10.0.0.1:", 'empty port after ":"'),
    ("host:", 'empty port after ":"'),
    ("host:abc", 'port "abc" is not a decimal number'),
    ("host:-1", 'port "-1" is not a decimal number'),
    ("host:+1", 'port "+1" is not a decimal number'),
    ("host: 1", 'port " 1" is not a decimal number'),
    ("host:4420 ", 'port "4420 " is not a decimal number'),
    ("host:\u0663", 'is not a decimal number'),  # Arabic-Indic digit three
    ("host:0", "port 0 is not in 1-65535"),
    ("host:65536", "port 65536 is not in 1-65535"),
    ("host:99999999999999999999", "is not in 1-65535"),
    ("[::1]:0", "port 0 is not in 1-65535"),
    ("a:b:c", "not a valid IPv6 address"),
    ("10.0.0.1:4420:1", "not a valid IPv6 address"),
    ("::1]:4420", 'unexpected "]"'),
    ("host]:4420", 'unexpected "]"'),
    ("ho st:4420", "host contains the character ' '"),
    ("host\t", "host contains the character '\\t'"),
]


@pytest.mark.parametrize(("text", "problem"), INVALID)
@pytest.mark.parametrize("default", [None, 8009])
def test_invalid_addresses(text, problem, default):
    with pytest.raises(UsageError) as info:
        parse_address(text, default_port=default)
    message = str(info.value)
    assert message.startswith(f'invalid address "{text}": ')
    assert problem in message


def test_out_of_range_default_is_a_programming_error():
    with pytest.raises(ValueError):
        parse_address("h", default_port=0)


def test_address_is_a_named_tuple():
    a = parse_address("[::1]:4420", default_port=None)
    host, port, text = a
    assert (host, port, text) == (a.host, a.port, a.text) == ("::1", 4420, "[::1]:4420")


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("10.0.0.1", 4420, "10.0.0.1:4420"),
        ("::1", 4420, "[::1]:4420"),
        ("fe80::1%eth0", 8009, "[fe80::1%eth0]:8009"),
        ("example.com", "8009", "example.com:8009"),
        ("::1", None, "[::1]"),
        ("example.com", None, "example.com"),
    ],
)
def test_format_address(host, port, expected):
    assert addr.format_address(host, port) == expected


@pytest.mark.parametrize("text", [t for t, _, _ in EXPLICIT_PORT])
def test_format_then_parse_round_trip(text):
    a = parse_address(text, default_port=None)
    again = parse_address(addr.format_address(a.host, a.port), default_port=None)
    assert (again.host, again.port) == (a.host, a.port)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("10.0.0.1", 1),
        ("0.0.0.0", 1),
        ("::1", 2),
        ("fe80::1%eth0", 2),
        ("::ffff:10.0.0.1", 2),
        ("localhost", None),
        ("example.com", None),
        ("10.1", None),
        ("", None),
    ],
)
def test_adrfam_of(host, expected):
    assert addr.adrfam_of(host) == expected


def test_adrfam_constants_are_the_discovery_log_values():
    assert (addr.ADRFAM_IPV4, addr.ADRFAM_IPV6) == (1, 2)


# --- resolution ------------------------------------------------------------------


def test_resolve_ipv4_literal():
    result = addr.resolve(parse_address("127.0.0.1:4420", default_port=None))
    assert result == [(socket.AF_INET, ("127.0.0.1", 4420))]


def test_resolve_ipv6_literal():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 support in this Python")
    result = addr.resolve(parse_address("[::1]:8009", default_port=None))
    assert len(result) == 1
    family, sockaddr = result[0]
    assert family == socket.AF_INET6
    assert sockaddr[:2] == ("::1", 8009)


def test_resolve_scoped_ipv6_keeps_the_interface():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 support in this Python")
    try:
        index = socket.if_nametoindex("lo")
    except OSError:
        pytest.skip("no interface named lo")
    for text in ("[fe80::1%lo]:4420", "fe80::1%lo"):
        [(family, sockaddr)] = addr.resolve(parse_address(text, default_port=4420))
        assert family == socket.AF_INET6
        assert sockaddr[0].split("%")[0] == "fe80::1"
        assert sockaddr[1] == 4420
        assert sockaddr[3] == index


def test_resolve_localhost_by_name():
    result = addr.resolve(parse_address("localhost:4420", default_port=None))
    assert result, "localhost resolved to nothing"
    assert len(result) == len(set(result)), "duplicates were not removed"
    for family, sockaddr in result:
        assert family in (socket.AF_INET, socket.AF_INET6)
        assert sockaddr[1] == 4420
        assert sockaddr[0] in ("127.0.0.1", "::1")


def test_resolve_honours_family():
    a = parse_address("127.0.0.1:4420", default_port=None)
    with pytest.raises(ConnectError, match="^cannot resolve 127.0.0.1: "):
        addr.resolve(a, family=socket.AF_INET6)
    assert addr.resolve(a, family=socket.AF_INET) == [(socket.AF_INET, ("127.0.0.1", 4420))]


def test_resolve_unknown_name():
    # RFC 6761 reserves .invalid: it never resolves.
    a = parse_address("no-such-host.invalid:4420", default_port=None)
    with pytest.raises(ConnectError, match=r"^cannot resolve no-such-host\.invalid: \S"):
        addr.resolve(a)


def test_resolve_unencodable_name():
    a = parse_address("a" * 64 + ".example:4420", default_port=None)
    with pytest.raises(ConnectError, match="^cannot resolve a{64}"):
        addr.resolve(a)


def test_resolve_requires_a_port():
    with pytest.raises(ValueError):
        addr.resolve(Address("127.0.0.1", None, "127.0.0.1"))


def test_a_listening_address_may_ask_for_any_port():
    # Port 0 is for listeners (bind picks a free port); a peer's address never has it.
    assert parse_address("127.0.0.1:0", default_port=10809, listen=True).port == 0
    assert parse_address("[::1]:0", default_port=10809, listen=True).port == 0
    assert parse_address("127.0.0.1", default_port=10809, listen=True).port == 10809
    with pytest.raises(UsageError, match="port 65536 is not in 0-65535"):
        parse_address("127.0.0.1:65536", default_port=10809, listen=True)
    with pytest.raises(UsageError, match="port 0 is not in 1-65535"):
        parse_address("127.0.0.1:0", default_port=10809)


@pytest.mark.parametrize("host, numeric", [
    ("127.0.0.1", True), ("::1", True), ("fe80::1%lo", True), ("::ffff:10.0.0.1", True),
    ("fe80::1%", False),  # a scope must name something
    ("10.0.0.1%lo", False),  # only IPv6 has a scope
    ("localhost", False), ("a..b", False), ("1.2.3.4.5", False), ("", False),
])
def test_numeric_literals_skip_the_idna_codec(host, numeric):
    """resolve() hands a numeric host to getaddrinfo as bytes (no IDNA codec):
    only what inet_pton reads as an address is numeric."""
    from nvmecontrol.transport.address import _numeric

    assert _numeric(socket, host) is numeric
