"""The discovery log page (70h) the discovery controller serves.

NVMe over Fabrics 1.1, 5.3 and the Linux target's behaviour:

* The log describes the port the host is connected through: one entry per
  subsystem linked to that port that the host may connect to (a host never
  learns of subsystems it is not allowed on), then one entry per enabled
  referral of the port.
* A wildcard listening address (0.0.0.0, ::) is replaced by the address the
  host reached us on, as FreeBSD nvmfd and nvmet-tcp do: a host cannot dial
  0.0.0.0.  IPv4-mapped IPv6 addresses are shown as plain IPv4.
* Subsystem entries: TRTYPE TCP, SUBTYPE NVMe (2), TREQ with "SQ flow
  control disable supported" (bit 2), CNTLID FFFFh (dynamic model), ASQSZ
  32, SECTYPE none.  Referral entries: SUBTYPE 1, the discovery NQN.
* GENCTR is the server's configuration generation, bumped on every change,
  so a host reading header / entries / header sees a consistent log.
"""

from __future__ import annotations

import ipaddress
import logging

from nvmecontrol.nqn import DISCOVERY_NQN
from nvmecontrol.target.config import ADRFAM_NAMES, TREQ_NAMES
from nvmecontrol.wire.discovery import (MAX_DISCOVERY_RECORDS, CNTLID_DYNAMIC, AdrFam,
                                        DiscoveryLogEntry, SubType, TREQ_DISABLE_SQFLOW, TrType,
                                        encode_discovery_log, tcp_tsas)

log = logging.getLogger("nvmfd")

# Admin queue size advertised in every entry (Linux's NVME_AQ_DEPTH).
DISCOVERY_ASQSZ = 32
_TSAS_NONE = tcp_tsas()


def is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def unmap(host: str) -> str:
    """``::ffff:192.0.2.1`` -> ``192.0.2.1``; scope IDs and others unchanged."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return host


def adrfam_for(host: str, configured: str) -> int:
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return ADRFAM_NAMES.get(configured, AdrFam.IPV4)
    return AdrFam.IPV4 if ip.version == 4 else AdrFam.IPV6


def build_entries(port, local_host: str, hostnqn: str, subsystems: dict) -> list[DiscoveryLogEntry]:
    """Entries of the log for a host connected through ``port`` at ``local_host``."""
    traddr = port.traddr
    if is_wildcard(traddr):
        traddr = unmap(local_host)
    adrfam = adrfam_for(traddr, port.adrfam)
    treq = TREQ_NAMES.get(port.treq, 0) | TREQ_DISABLE_SQFLOW
    entries = []
    for nqn in port.subsystems:
        sub = subsystems.get(nqn)
        if sub is None or not sub.host_allowed(hostnqn):
            continue
        entries.append(DiscoveryLogEntry(
            trtype=TrType.TCP, adrfam=adrfam, subtype=SubType.NVME, treq=treq,
            portid=port.portid, cntlid=CNTLID_DYNAMIC, asqsz=DISCOVERY_ASQSZ,
            trsvcid=str(port.trsvcid), subnqn=nqn, traddr=traddr, tsas=_TSAS_NONE))
    for r in port.referrals:
        if not r.enable:
            continue
        entries.append(DiscoveryLogEntry(
            trtype=TrType.TCP, adrfam=ADRFAM_NAMES.get(r.adrfam, AdrFam.IPV4),
            subtype=SubType.REFERRAL, treq=TREQ_NAMES.get(r.treq, 0), portid=r.portid,
            cntlid=CNTLID_DYNAMIC, asqsz=DISCOVERY_ASQSZ, trsvcid=str(r.trsvcid),
            subnqn=DISCOVERY_NQN, traddr=r.traddr, tsas=_TSAS_NONE))
    if len(entries) > MAX_DISCOVERY_RECORDS:
        log.warning("discovery log for port %d has %d entries; hosts accept %d, the rest "
                    "are left out", port.portid, len(entries), MAX_DISCOVERY_RECORDS)
        del entries[MAX_DISCOVERY_RECORDS:]
    return entries


def build_discovery_log(genctr: int, port, local_host: str, hostnqn: str,
                        subsystems: dict) -> bytes:
    return encode_discovery_log(genctr, build_entries(port, local_host, hostnqn, subsystems))
