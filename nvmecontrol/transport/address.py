"""Network addresses as users type them, and their resolution for NVMe/TCP.

Accepted forms are FreeBSD nvmecontrol's (fabrics.c ``nvmf_parse_address``,
nvmecontrol(8) "NETWORK ADDRESSES"): ``[IPv6]:port``, ``IPv4:port``,
``hostname:port``, ``[IPv6]``, bare ``IPv6`` (two or more colons, so it
cannot carry a port), ``IPv4`` and ``hostname``.  Scoped IPv6 addresses
(``fe80::1%eth0``) keep their scope and go to getaddrinfo as they are.

Differences from FreeBSD, all to fail early with a precise message rather
than at connect time: the port must be a decimal number 1-65535 (no service
names), brackets must hold an IPv6 address, and a bare address with two or
more colons must be a valid IPv6 address.
"""

from __future__ import annotations

import re
from collections import namedtuple

from nvmecontrol.errors import ConnectError, UsageError

# IANA "nvme-disc"; NVMe over Fabrics 1.1 section 7.4.9.3 names it the
# default port of a discovery controller over TCP.
DISCOVERY_PORT = 8009
# IANA "nvme"; the conventional NVMe/TCP I/O controller port.  FreeBSD's
# connect has no default and requires it explicitly, nvme-cli assumes it.
IO_PORT = 4420

# Discovery Log Page Entry ADRFAM (NVMe over Fabrics, Discovery Log Page).
ADRFAM_IPV4 = 1
ADRFAM_IPV6 = 2

PORT_MIN, PORT_MAX = 1, 65535

_PORT_RE = re.compile(r"[0-9]+")


# Not typing.NamedTuple, and socket only where it is used: every command that
# takes an address imports this module, and typing and socket cost start-up
# time (issue 13).
class Address(namedtuple("Address", "host port text")):
    """A parsed address: host without brackets (str), the port (int, or None),
    the text as typed (str)."""

    __slots__ = ()


def _fail(text: str, problem: str) -> UsageError:
    return UsageError(f'invalid address "{text}": {problem}')


def _is_ipv6(host: str) -> bool:
    import ipaddress  # only for the IPv6 forms (start-up of every other address)

    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


def _parse_port(text: str, port: str, lowest: int = PORT_MIN) -> int:
    if not port:
        raise _fail(text, 'empty port after ":"')
    if not _PORT_RE.fullmatch(port):
        raise _fail(text, f'port "{port}" is not a decimal number')
    value = int(port)
    if not lowest <= value <= PORT_MAX:
        raise _fail(text, f"port {value} is not in {lowest}-{PORT_MAX}")
    return value


def _check_host_chars(text: str, host: str) -> None:
    for c in host:
        if c.isspace() or not c.isprintable():
            raise _fail(text, f"host contains the character {c!r}")
        if c in "[]":
            raise _fail(text, f'unexpected "{c}"; brackets enclose a whole IPv6 address')


def parse_address(text: str, *, default_port: int | None, command: str | None = None,
                  listen: bool = False) -> Address:
    """Parse ``text`` in one of the FreeBSD forms (module doc).

    ``default_port`` fills in a missing port; None makes the port mandatory
    and ``command`` (e.g. ``"connect"``) then names who requires it.
    ``listen``: an address to listen on, where port 0 asks the system for
    a free one.  Raises UsageError naming the problem.
    """
    lowest = 0 if listen else PORT_MIN
    if not text:
        raise _fail(text, "empty")
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise _fail(text, 'missing "]"')
        host, after = text[1:close], text[close + 1:]
        if not host:
            raise _fail(text, 'empty IPv6 address between "[" and "]"')
        _check_host_chars(text, host)
        if not _is_ipv6(host):
            raise _fail(text, f'"{host}" is not an IPv6 address; brackets are only for IPv6')
        if after == "":
            port = None
        elif after.startswith(":"):
            port = _parse_port(text, after[1:], lowest)
        else:
            raise _fail(text, f'unexpected "{after}" after "]"; expected ":port"')
    elif text.count(":") >= 2:
        host, port = text, None
        _check_host_chars(text, host)
        if not _is_ipv6(host):
            raise _fail(
                text,
                "not a valid IPv6 address (an address with a port is written [IPv6]:port)",
            )
    elif ":" in text:
        host, _, port_text = text.partition(":")
        if not host:
            raise _fail(text, 'empty host before ":"')
        _check_host_chars(text, host)
        port = _parse_port(text, port_text, lowest)
    else:
        host, port = text, None
        _check_host_chars(text, host)

    if port is None:
        if default_port is None:
            who = command or "this command"
            raise UsageError(
                f'address "{text}" has no port: {who} needs an explicit port, '
                f"e.g. {format_address(host, IO_PORT)}"
            )
        if not PORT_MIN <= default_port <= PORT_MAX:
            raise ValueError(f"default_port {default_port} out of range")
        port = default_port
    return Address(host, port, text)


def format_address(host: str, port: int | str | None) -> str:
    """``[v6]:port`` or ``host:port`` for messages; ``[v6]``/``host`` without a port."""
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"


def format_sockaddr(sockaddr: tuple) -> str:
    """``[v6%scope]:port`` or ``v4:port`` of a socket address, for messages.

    An IPv6 sockaddr carries its scope as an interface index (4th item) that
    getpeername() does not fold into the host text; a link-local address means
    nothing without it, so the interface name goes back in.
    """
    host, port = sockaddr[0], sockaddr[1]
    if len(sockaddr) == 4 and sockaddr[3] and "%" not in host:
        import socket

        try:
            host = f"{host}%{socket.if_indextoname(sockaddr[3])}"
        except OSError:
            host = f"{host}%{sockaddr[3]}"
    return format_address(host, port)


def adrfam_of(host: str) -> int | None:
    """The ADRFAM of a numeric address (1 IPv4, 2 IPv6), None for a name."""
    import ipaddress  # as in _is_ipv6

    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return ADRFAM_IPV4 if ip.version == 4 else ADRFAM_IPV6


def _numeric(socket, host: str) -> bool:
    """Whether ``host`` is an IPv4 or IPv6 literal (with a scope), as
    inet_pton reads them: what the IDNA codec would leave as it is."""
    addr, pct, scope = host.partition("%")
    if pct and not scope:
        return False
    # Only IPv6 addresses have a scope.
    for family in (socket.AF_INET6,) if pct else (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, addr)
        except OSError:
            continue
        return True
    return False


def resolve(
    address: Address, *, family: int = 0
) -> list[tuple[int, tuple]]:
    """Every ``(family, sockaddr)`` for ``address`` over TCP, in getaddrinfo order.

    ``family`` 0 is AF_UNSPEC (any).  Callers try them in turn until one
    connects (as FreeBSD does).  Raises ConnectError when the name does not
    resolve.
    """
    import socket

    if address.port is None:
        raise ValueError(f"{address.text!r} has no port to resolve")
    # getaddrinfo runs a str host through the IDNA codec (encodings.idna,
    # stringprep, unicodedata: start-up time), which leaves a numeric address
    # as it is: that one goes as bytes.  Names still take the codec.
    host = address.host
    if host.isascii() and _numeric(socket, host):
        host = host.encode("ascii")
    try:
        infos = socket.getaddrinfo(
            host, address.port, family, socket.SOCK_STREAM, socket.IPPROTO_TCP
        )
    except socket.gaierror as exc:
        raise ConnectError(f"cannot resolve {address.host}: {exc.strerror}") from None
    except UnicodeError as exc:
        # IDNA encoding refuses labels over 63 characters and the like.
        raise ConnectError(f"cannot resolve {address.host}: {exc}") from None
    result: list[tuple[int, tuple]] = []
    for fam, _type, _proto, _canon, sockaddr in infos:
        entry = (int(fam), sockaddr)
        if entry not in result:
            result.append(entry)
    return result
