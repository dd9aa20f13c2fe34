"""Network addresses as users type them: ``host:port``, ``[IPv6]:port``, a bare host.

FreeBSD nvmecontrol's forms (nvmecontrol(8), NETWORK ADDRESSES), checked
before anything is dialled: a port is a decimal number 1-65535, brackets
hold an IPv6 address.  A bad address is a
:class:`nvmecontrol.errors.UsageError` quoting it.
"""

from __future__ import annotations

from nvmecontrol.transport.address import (DISCOVERY_PORT, IO_PORT, Address, format_address,
                                           parse_address)

__all__ = ["Address", "parse_address", "format_address", "DISCOVERY_PORT", "IO_PORT"]
