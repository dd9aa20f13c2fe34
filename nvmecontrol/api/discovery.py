"""Discovery: a discovery controller's log, optionally with every referral's (NVMe-oF 1.1, 5).

What ``nvmecontrol discover`` does, as calls.  One association per
discovery controller, without keep-alive (KATO 0, as FreeBSD's discover)
and without digests; DH-HMAC-CHAP when a secret is given.  The log is read
as header, entries, header again until GENCTR stands still.  The records
(``log.header``, ``log.entries``: :class:`~nvmecontrol.wire.discovery.DiscoveryHeader`
and :class:`~nvmecontrol.wire.discovery.DiscoveryLogEntry` records) are
the data ``discover -o json`` prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from nvmecontrol.api.admin import parse_secrets
from nvmecontrol.host.association import AssociationParams
from nvmecontrol.host.discovery import DiscoveryLog, is_referral, walk_referrals
from nvmecontrol.host.discovery import discover as _discover
from nvmecontrol.hostid import resolve_host_identity
from nvmecontrol.options import DISCOVERY_KATO_S, OPTIONS, default
from nvmecontrol.transport.address import DISCOVERY_PORT, format_address, parse_address
from nvmecontrol.wire.records import Record

TYPE_CHECKING = False  # typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from nvmecontrol.wire.discovery import DiscoveryLogEntry
    from nvmecontrol.wire.identify import IdentifyController

__all__ = ["Discovery", "DiscoveryLog", "discover", "read_discovery", "is_referral",
           "subsystems_by_address", "DISCOVERY_PORT"]


class Discovery(Record):
    """What one ``discover`` found.

    ``controller``: the discovery controller's Identify data, when asked
    for (``identify=True``); ``visited`` and ``errors`` when referrals were
    walked: the discovery controllers asked, in order, and one line per
    referral that could not be read (the first controller's failure is
    raised instead).
    """

    __slots__ = ("log", "controller", "visited", "errors")

    def __init__(self, log: DiscoveryLog, controller: IdentifyController | None = None,
                 visited: list[str] | None = None, errors: list[str] | None = None):
        self.log = log
        self.controller = controller
        self.visited = visited
        self.errors = errors


def discover(address: str, *, hostnqn: str | None = OPTIONS["hostnqn"].default,
             hostid: str | None = OPTIONS["hostid"].default, walk: bool = False,
             timeout: float = default("timeout_s"),
             dhchap_secret: str | None = default("dhchap_secret"),
             dhchap_ctrl_secret: str | None = default("dhchap_ctrl_secret")) -> DiscoveryLog:
    """The discovery log at ``address`` (``host[:port]``, port 8009 by default).

    With ``walk``, the I/O subsystem entries of every discovery controller
    reachable through referrals (bounded, loop-free; the header then counts
    them, GENCTR 0); :func:`read_discovery` also says which were visited.
    """
    return read_discovery(address, hostnqn=hostnqn, hostid=hostid, walk=walk, timeout=timeout,
                          dhchap_secret=dhchap_secret,
                          dhchap_ctrl_secret=dhchap_ctrl_secret).log


def read_discovery(address: str, *, hostnqn: str | None = OPTIONS["hostnqn"].default,
                   hostid: str | None = OPTIONS["hostid"].default, identify: bool = False,
                   walk: bool = False, timeout: float = default("timeout_s"),
                   dhchap_secret: str | None = default("dhchap_secret"),
                   dhchap_ctrl_secret: str | None = default("dhchap_ctrl_secret"),
                   warn: Callable[[str], None] | None = None) -> Discovery:
    """:func:`discover`, with the controller's Identify data (``identify``) or the walk's trail.

    ``timeout`` bounds the whole exchange with one discovery controller (not
    each of its commands); when walking, with each controller in turn.  ``warn`` is
    called, before connecting, with what resolving the host identity noticed
    (an unreadable ``/etc/nvme/hostnqn``...).
    """
    host_key, ctrl_key = parse_secrets(dhchap_secret, dhchap_ctrl_secret)
    addr = parse_address(address, default_port=DISCOVERY_PORT)
    host = resolve_host_identity(hostnqn, hostid)
    if warn is not None:
        for w in host.warnings:
            warn(w)
    params = AssociationParams(kato_s=DISCOVERY_KATO_S, timeout_s=timeout,
                               dhchap_secret=host_key, dhchap_ctrl_secret=ctrl_key)
    if walk:
        from nvmecontrol.wire.discovery import DiscoveryHeader

        res = walk_referrals(addr, host, params)
        header = DiscoveryHeader(0, len(res.entries), 0)
        return Discovery(DiscoveryLog(header, res.entries), visited=res.visited,
                         errors=res.errors)
    params.deadline = time.monotonic() + timeout
    log, assoc = _discover(addr, host, params, verbose=identify)
    cdata = None
    if assoc is not None:
        cdata = assoc.cdata
        assoc.shutdown()
    return Discovery(log, cdata)


def subsystems_by_address(entries: Iterable[DiscoveryLogEntry]) -> dict[str, list[str]]:
    """The I/O subsystems' NQNs by the address to connect to (``traddr:trsvcid``, IPv6 in
    brackets), referrals left out."""
    out: dict[str, list[str]] = {}
    for e in entries:
        if not is_referral(e) and e.traddr and e.trsvcid:
            out.setdefault(format_address(e.traddr, e.trsvcid), []).append(e.subnqn)
    return out
