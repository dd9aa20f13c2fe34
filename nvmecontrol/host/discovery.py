"""Fetching discovery log pages and walking referrals.

NVMe over Fabrics 1.1, 5 (Discovery Service).  The log changes under us when
subsystems come and go, so it is read as header, entries, header again, and
retried until GENCTR stands still (as FreeBSD and nvme-cli do).  A
discovery controller may also answer "restart discovery", which means the
same thing.  Referrals (SUBTYPE 1/3) point at other discovery controllers;
walking them is bounded and remembers where it has been.
"""

from __future__ import annotations

import time

from nvmecontrol.errors import CommandFailed, NvmeControlError, PeerProtocolError
from nvmecontrol.host.association import (Association, AssociationParams,
                                          connect_association)
from nvmecontrol.hostid import HostIdentity
from nvmecontrol.nqn import DISCOVERY_NQN
from nvmecontrol.transport.address import Address, format_address
from nvmecontrol.wire import admin
from nvmecontrol.wire.records import Record
from nvmecontrol.wire.status import decode_status

TYPE_CHECKING = False  # typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from nvmecontrol.wire.discovery import DiscoveryHeader, DiscoveryLogEntry

# The discovery log's records (wire.discovery: eight enums and its records)
# are imported when a log page arrives: a discover that cannot reach its
# controller ends without them (start-up, issue 13).

# GENCTR kept changing this many times: give up rather than loop forever
# against a controller whose log never settles (nvme-cli uses 10).
MAX_GENCTR_RETRIES = 10
# Referral walk bounds: depth and controllers visited, against referral
# loops and fan-out bombs (nvme-cli 2.x recursed until it crashed).
MAX_REFERRAL_DEPTH = 8
MAX_DISCOVERY_CONTROLLERS = 64
# Status codes meaning "read the log again from the start".
_RESTART = {(1, 0x83), (1, 0x90)}  # Connect Restart Discovery, Discover Restart
# One Get Log Page transfers at most this much; longer logs are read in pieces.
_CHUNK = 256 * 1024


class LogPageSource:
    """What the log is read from: an association, or a controller the kernel
    or a session holds (``backends.admin_access``); any object with this
    method (a protocol, written without typing: start-up)."""

    def get_log_page(self, g: admin.GetLogPage) -> bytes: ...


class DiscoveryLog(Record):
    """A discovery log page: its header and entries."""

    __slots__ = ("header", "entries", "raw")
    _NOT_COMPARED = ("raw",)  # nor shown in the repr

    def __init__(self, header: DiscoveryHeader, entries: list[DiscoveryLogEntry],
                 raw: bytes = b""):
        self.header = header
        self.entries = entries
        # The page as read (header and records), for hex and binary dumps.
        self.raw = raw


def _read(source: LogPageSource, offset: int, length: int, lsp: int, rae: bool) -> bytes:
    from nvmecontrol.wire.discovery import LID_DISCOVERY

    out = bytearray()
    while length > 0:
        n = min(length, _CHUNK)
        out += source.get_log_page(admin.GetLogPage(lid=LID_DISCOVERY, length=n,
                                                    offset=offset, nsid=0, lsp=lsp, rae=rae))
        offset += n
        length -= n
    return bytes(out)


def _restartable(e: CommandFailed) -> bool:
    st = decode_status(e.status)
    return (int(st.sct), st.sc) in _RESTART


def fetch_discovery_log(source: LogPageSource, *, lsp: int = 0, rae: bool = False) -> DiscoveryLog:
    """The whole log, consistent under one GENCTR.

    ``lsp`` and ``rae`` go into every Get Log Page (``logpage -f``/``-r``).
    """
    from nvmecontrol.wire.discovery import (DISCOVERY_ENTRY_SIZE, DISCOVERY_HEADER_SIZE,
                                            check_record_count, decode_discovery_entries,
                                            decode_discovery_header)

    for _attempt in range(MAX_GENCTR_RETRIES):
        try:
            head_raw = _read(source, 0, DISCOVERY_HEADER_SIZE, lsp, rae)
            head = decode_discovery_header(head_raw)
            if head.recfmt != 0:
                raise PeerProtocolError(f"unsupported discovery log format {head.recfmt}")
            # Before fetching: a hostile NUMREC would otherwise have us read
            # (and hold) NUMREC KiB first.
            check_record_count(head.numrec)
            raw = _read(source, DISCOVERY_HEADER_SIZE, head.numrec * DISCOVERY_ENTRY_SIZE,
                        lsp, rae) if head.numrec else b""
            entries = decode_discovery_entries(raw, head.numrec) if head.numrec else []
            again = decode_discovery_header(_read(source, 0, DISCOVERY_HEADER_SIZE, lsp, rae))
        except CommandFailed as e:
            if _restartable(e):
                continue
            raise
        if again.genctr == head.genctr and again.numrec == head.numrec:
            return DiscoveryLog(head, entries, head_raw + raw)
    raise PeerProtocolError(f"discovery log kept changing (GENCTR) over {MAX_GENCTR_RETRIES} reads")


def discover(address: Address, host: HostIdentity, params: AssociationParams | None = None,
             *, verbose: bool = False) -> tuple[DiscoveryLog, Association | None]:
    """Connect to a discovery controller, fetch its log, shut down.

    With ``verbose`` the association is returned open, so the caller can show
    the controller's identify data, and must shut it down.
    """
    assoc = connect_association(address, DISCOVERY_NQN, host, params)
    try:
        log = fetch_discovery_log(assoc)
    except BaseException:
        assoc.shutdown()
        raise
    if verbose:
        return log, assoc
    assoc.shutdown()
    return log, None


def is_referral(e: DiscoveryLogEntry) -> bool:
    from nvmecontrol.wire.discovery import SubType

    return e.subtype in (SubType.REFERRAL, SubType.CURRENT_DISCOVERY) or \
        e.subnqn == DISCOVERY_NQN


class WalkResult(Record):
    """Every I/O subsystem entry found, and the discovery controllers visited."""

    __slots__ = ("entries", "visited", "errors")

    def __init__(self, entries: list[DiscoveryLogEntry] | None = None,
                 visited: list[str] | None = None, errors: list[str] | None = None):
        self.entries = [] if entries is None else entries
        self.visited = [] if visited is None else visited
        self.errors = [] if errors is None else errors


def walk_referrals(address: Address, host: HostIdentity,
                   params: AssociationParams | None = None) -> WalkResult:
    """Discover from ``address`` and every referral reachable from it.

    Cycle detection keys controllers by (traddr, trsvcid); the first error at
    the starting address is raised, later ones are collected in ``errors``.
    """
    result = WalkResult()
    seen_entries: set[tuple] = set()
    queue = [(address, 0)]
    seen = {(address.host, address.port)}
    while queue:
        addr, depth = queue.pop(0)
        result.visited.append(format_address(addr.host, addr.port))
        # The timeout bounds each controller's whole exchange, as without a walk.
        own = (params or AssociationParams()).copy()
        own.deadline = time.monotonic() + own.timeout_s
        try:
            log, _ = discover(addr, host, own)
        except NvmeControlError as e:
            if depth == 0:
                raise
            result.errors.append(f"{format_address(addr.host, addr.port)}: {e}")
            continue
        for e in log.entries:
            if is_referral(e):
                key = (e.traddr, int(e.trsvcid) if e.trsvcid.isdigit() else e.trsvcid)
                if (key in seen or depth + 1 > MAX_REFERRAL_DEPTH
                        or len(seen) >= MAX_DISCOVERY_CONTROLLERS):
                    continue
                seen.add(key)
                if isinstance(key[1], int):
                    queue.append((Address(e.traddr, key[1], f"{e.traddr}:{key[1]}"), depth + 1))
                continue
            ident = (e.trtype, e.traddr, e.trsvcid, e.subnqn)
            if ident not in seen_entries:
                seen_entries.add(ident)
                result.entries.append(e)
    return result
