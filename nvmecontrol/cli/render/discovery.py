"""Render the discovery log page: FreeBSD ``nvmecontrol discover`` text and JSON.

Text follows FreeBSD ``sbin/nvmecontrol/discover.c`` (``dump_discovery_log_page``
and ``print_discovery_entry``): a ``Discovery`` header, ``No entries found``
for an empty log, then one block per entry numbered from 1, labels indented
by one space with values starting at column 23 (0-based).  Unknown values
print as ``0x%02x``.  FreeBSD's version appends a newline inside those
unknown values (``"0x%02x\\n"``), which leaves a blank line in the output;
we do not copy that bug.

JSON (our choice, documented in the man page): keys are the spec mnemonics
``genctr``, ``numrec``, ``recfmt`` and ``records``; each record has
``trtype``, ``adrfam``, ``subtype``, ``treq``, ``portid``, ``cntlid``,
``asqsz``, ``eflags``, ``trsvcid``, ``subnqn``, ``traddr`` plus ``sectype``
for TCP entries or ``rdma_qptype``/``rdma_prtype``/``rdma_cms``/``rdma_pkey``
for RDMA entries (TSAS means different things per transport, so we never
print a field that does not apply).  Enumerated values use nvme-cli's
lowercase strings (``"tcp"``, ``"ipv4"``, ``"nvme subsystem"``, ``treq``
and ``eflags`` as nvme-cli's comma-joined phrases) so scripts written for
``nvme discover -o json`` keep working; a value nvme-cli has no name for is
emitted as its raw integer instead of nvme-cli's lossy ``"unrecognized"``.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's, without importing typing (discover's start-up)
if TYPE_CHECKING:
    from typing import Any, Sequence

from nvmecontrol.api.structures import (
    CNTLID_DYNAMIC,
    CNTLID_STATIC_ANY,
    EFLAGS_DUPRETINFO,
    EFLAGS_EPCSD,
    EFLAGS_NCC,
    TREQ_DISABLE_SQFLOW,
    TREQ_SECURE_CHANNEL_MASK,
    AdrFam,
    DiscoveryHeader,
    DiscoveryLogEntry,
    RdmaCms,
    RdmaPrType,
    RdmaQpType,
    SubType,
    TcpSecType,
    TrType,
)
from nvmecontrol.cli.render import strvis

# --- FreeBSD text -------------------------------------------------------------

_FB_TRTYPE = {
    TrType.RDMA: "RDMA",
    TrType.FC: "Fibre Channel",
    TrType.TCP: "TCP",
    TrType.LOOP: "Intra-host",
}
_FB_ADRFAM = {
    AdrFam.IPV4: "AF_INET",
    AdrFam.IPV6: "AF_INET6",
    AdrFam.IB: "InfiniBand",
    AdrFam.FC: "Fibre Channel",
    AdrFam.LOOP: "Intra-host",
}
_FB_SUBTYPE = {SubType.DISCOVERY: "Discovery", SubType.NVME: "NVMe"}
_FB_SECURE_CHANNEL = {0: "Not specified", 1: "Required", 2: "Not required", 3: "0x03"}
_FB_QPTYPE = {RdmaQpType.CONNECTED: "Reliable connected", RdmaQpType.DATAGRAM: "Reliable datagram"}
_FB_PRTYPE = {
    RdmaPrType.NOT_SPECIFIED: "None",
    RdmaPrType.IB: "InfiniBand",
    RdmaPrType.ROCE: "RoCE (v1)",
    RdmaPrType.ROCEV2: "RoCE (v2)",
    RdmaPrType.IWARP: "iWARP",
}
_FB_CMS = {RdmaCms.RDMA_CM: "RDMA_IP_CM"}
_FB_SECTYPE = {TcpSecType.NONE: "None", TcpSecType.TLS12: "TLS 1.2", TcpSecType.TLS13: "TLS 1.3"}


def _name(table: dict[int, str], value: int) -> str:
    name = table.get(value)
    return name if name is not None else f"0x{value:02x}"


def _controller_id(cntlid: int) -> str:
    if cntlid == CNTLID_DYNAMIC:
        return "Dynamic"
    if cntlid == CNTLID_STATIC_ANY:
        return "Static"
    return str(cntlid)


def _line(label: str, value: object) -> str:
    # " Label:" then pad so the value starts at column 23.
    return f" {label + ':':<22}{value}\n"


def render_discovery_entry(index: int, e: DiscoveryLogEntry) -> str:
    """One entry; ``index`` is 0-based (printed 1-based, ``%02d``)."""
    out = [f"Entry {index + 1:02d}\n", "========\n"]
    out.append(_line("Transport type", _name(_FB_TRTYPE, e.trtype)))
    out.append(_line("Address family", _name(_FB_ADRFAM, e.adrfam)))
    out.append(_line("Subsystem type", _name(_FB_SUBTYPE, e.subtype)))
    out.append(_line("SQ flow control", "optional" if e.treq & TREQ_DISABLE_SQFLOW else "required"))
    out.append(_line("Secure Channel", _FB_SECURE_CHANNEL[e.treq & TREQ_SECURE_CHANNEL_MASK]))
    out.append(_line("Port ID", e.portid))
    out.append(_line("Controller ID", _controller_id(e.cntlid)))
    out.append(_line("Max Admin SQ Size", e.asqsz))
    out.append(_line("Sub NQN", strvis(e.subnqn)))
    out.append(_line("Transport address", strvis(e.traddr)))
    out.append(_line("Service identifier", strvis(e.trsvcid)))
    if e.trtype == TrType.RDMA:
        out.append(_line("RDMA Service Type", _name(_FB_QPTYPE, e.rdma_qptype)))
        out.append(_line("RDMA Provider Type", _name(_FB_PRTYPE, e.rdma_prtype)))
        out.append(_line("RDMA CMS", _name(_FB_CMS, e.rdma_cms)))
        out.append(_line("Partition key", e.rdma_pkey))
    elif e.trtype == TrType.TCP:
        out.append(_line("Security Type", _name(_FB_SECTYPE, e.sectype)))
    return "".join(out)


def render_discovery_text(header: DiscoveryHeader | None, entries: Sequence[DiscoveryLogEntry]) -> str:
    """The whole ``discover`` output.  GENCTR/NUMREC are not printed (as in
    FreeBSD); ``header`` is accepted for symmetry with the JSON form."""
    out = ["Discovery\n", "=========\n"]
    if not entries:
        out.append("No entries found\n")
    for i, e in enumerate(entries):
        out.append(render_discovery_entry(i, e))
    return "".join(out)


# --- JSON (nvme-cli vocabulary) --------------------------------------------------

_JS_TRTYPE = {TrType.RDMA: "rdma", TrType.FC: "fc", TrType.TCP: "tcp", TrType.LOOP: "loop"}
_JS_ADRFAM = {
    0: "pci",
    AdrFam.IPV4: "ipv4",
    AdrFam.IPV6: "ipv6",
    AdrFam.IB: "infiniband",
    AdrFam.FC: "fibre-channel",
    AdrFam.LOOP: "loop",
}
_JS_SUBTYPE = {
    SubType.REFERRAL: "discovery subsystem referral",
    SubType.NVME: "nvme subsystem",
    SubType.CURRENT_DISCOVERY: "current discovery subsystem",
}
_JS_SECURE_CHANNEL = {0: "not specified", 1: "required", 2: "not required"}
_JS_SECTYPE = {TcpSecType.NONE: "none", TcpSecType.TLS12: "tls", TcpSecType.TLS13: "tls13"}
_JS_QPTYPE = {RdmaQpType.CONNECTED: "connected", RdmaQpType.DATAGRAM: "datagram"}
_JS_PRTYPE = {
    RdmaPrType.NOT_SPECIFIED: "not specified",
    RdmaPrType.IB: "infiniband",
    RdmaPrType.ROCE: "roce",
    RdmaPrType.ROCEV2: "roce-v2",
    RdmaPrType.IWARP: "iwarp",
}
_JS_CMS = {RdmaCms.RDMA_CM: "rdma-cm"}
# nvme-cli's order of the eflags phrases.
_JS_EFLAGS = (
    (EFLAGS_EPCSD, "explicit discovery connections"),
    (EFLAGS_DUPRETINFO, "duplicate discovery information"),
    (EFLAGS_NCC, "no cdc connectivity"),
)


def _js(table: dict[int, str], value: int) -> str | int:
    name = table.get(value)
    return name if name is not None else int(value)


def treq_to_json(treq: int) -> str | int:
    """nvme-cli's phrase, e.g. ``"not specified, sq flow control disable supported"``."""
    if treq & ~(TREQ_SECURE_CHANNEL_MASK | TREQ_DISABLE_SQFLOW):
        return treq
    base = _JS_SECURE_CHANNEL.get(treq & TREQ_SECURE_CHANNEL_MASK)
    if base is None:
        return treq
    if treq & TREQ_DISABLE_SQFLOW:
        base += ", sq flow control disable supported"
    return base


def eflags_to_json(eflags: int) -> str | int:
    """nvme-cli's phrase: ``"none"`` or comma-joined flag names."""
    if eflags & ~(EFLAGS_EPCSD | EFLAGS_DUPRETINFO | EFLAGS_NCC):
        return eflags
    names = [name for bit, name in _JS_EFLAGS if eflags & bit]
    return ", ".join(names) if names else "none"


def discovery_entry_to_json(e: DiscoveryLogEntry) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "trtype": _js(_JS_TRTYPE, e.trtype),
        "adrfam": _js(_JS_ADRFAM, e.adrfam),
        "subtype": _js(_JS_SUBTYPE, e.subtype),
        "treq": treq_to_json(e.treq),
        "portid": e.portid,
        "cntlid": e.cntlid,
        "asqsz": e.asqsz,
        "eflags": eflags_to_json(e.eflags),
        "trsvcid": strvis(e.trsvcid),
        "subnqn": strvis(e.subnqn),
        "traddr": strvis(e.traddr),
    }
    if e.trtype == TrType.TCP:
        rec["sectype"] = _js(_JS_SECTYPE, e.sectype)
    elif e.trtype == TrType.RDMA:
        rec["rdma_qptype"] = _js(_JS_QPTYPE, e.rdma_qptype)
        rec["rdma_prtype"] = _js(_JS_PRTYPE, e.rdma_prtype)
        rec["rdma_cms"] = _js(_JS_CMS, e.rdma_cms)
        rec["rdma_pkey"] = e.rdma_pkey
    return rec


def discovery_to_json(header: DiscoveryHeader, entries: Sequence[DiscoveryLogEntry]) -> dict[str, Any]:
    """``{"genctr", "numrec", "recfmt", "records": [...]}`` (see module doc)."""
    return {
        "genctr": header.genctr,
        "numrec": header.numrec,
        "recfmt": header.recfmt,
        "records": [discovery_entry_to_json(e) for e in entries],
    }
