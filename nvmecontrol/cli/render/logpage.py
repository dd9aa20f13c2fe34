"""Render log pages: FreeBSD ``nvmecontrol logpage`` text, JSON, hex dumps.

Printers follow FreeBSD ``sbin/nvmecontrol/logpage.c``: 01h Error
Information, 02h SMART/Health, 03h Firmware Slot, 04h Changed Namespace List
and 05h Commands Supported and Effects, plus a printer of our own for 0Ch
ANA (FreeBSD only hex dumps it).  :data:`PAGE_PRINTERS` is the registry
behind ``logpage -p`` and ``logpage -v help``: page id -> name, size rule,
decoder, text printer, JSON converter.  Pages FreeBSD knows without a printer are
listed with ``text=None``; they, and unknown pages, fall back to
:func:`hexdump`.

A page is decoded once, where it is fetched (:func:`decode_logpage`, with
:mod:`nvmecontrol.wire.logpages`, so a short page raises
:class:`~nvmecontrol.errors.PeerProtocolError`); printers take the decoded
structure and, when known, the controller's decoded Identify data (the
firmware printer needs OACS/FRMW, the size rules ELPE, NANAGRPID, ...).

Deliberate differences from FreeBSD: the Commands Supported and Effects
table covers opcode FFh too (FreeBSD stops at FEh); :func:`hexdump` falls
back to the byte layout when the length is not a multiple of 4 instead of
dropping the tail.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, NamedTuple

from nvmecontrol.api.structures import (
    ANA_HEADER_SIZE,
    CE_CCC,
    CE_CSE_MASK,
    CE_CSE_SHIFT,
    CE_CSUPP,
    CE_LBCC,
    CE_NCC,
    CE_NIC,
    CE_UUID,
    CHANGED_NS_LOG_SIZE,
    CMD_EFFECTS_LOG_SIZE,
    CW_READ_ONLY,
    CW_RELIABILITY,
    CW_SPARE,
    CW_TEMPERATURE,
    CW_VOLATILE_BACKUP,
    DEVICE_SELF_TEST_LOG_SIZE,
    FW_SLOT_LOG_SIZE,
    FW_SLOTS,
    RESERVATION_NOTIFICATION_LOG_SIZE,
    SANITIZE_STATUS_LOG_SIZE,
    SMART_LOG_SIZE,
    AnaLog,
    AnaState,
    ChangedNsList,
    CommandEffectsLog,
    ErrorLogEntry,
    FirmwareSlotLog,
    IdentifyController,
    LogPage,
    SmartLog,
    ana_log_size,
    decode_ana_log,
    decode_changed_ns_list,
    decode_cmd_effects_log,
    decode_error_log,
    decode_fw_slot_log,
    decode_smart_log,
    error_log_size,
    status_to_json,
)
from nvmecontrol.cli.render import strvis

# FreeBSD's DEFAULT_SIZE: what it fetches for pages without a size rule.
DEFAULT_SIZE = 4096
# FreeBSD's MAX_FW_SLOTS.
_MAX_FW_SLOTS = FW_SLOTS

_U32 = struct.Struct("<I")
_F32 = struct.Struct("<f")

# --- hex dumps ------------------------------------------------------------------


def hexdump(data: Any) -> str:
    """FreeBSD ``print_hex``: ``%03x: `` offset then eight little-endian
    dwords as ``%08x `` per line, and a blank line at the end.

    When the length is not a multiple of 4 the byte layout of
    :func:`hexdump_bytes` is used (FreeBSD would silently drop the tail)."""
    data = bytes(data)
    if len(data) % 4:
        return hexdump_bytes(data)
    words = [w for (w,) in _U32.iter_unpack(data)]
    lines = []
    for i in range(0, len(words), 8):
        lines.append(f"{i * 4:03x}: " + "".join(f"{w:08x} " for w in words[i : i + 8]) + "\n")
    return "".join(lines) + "\n"


def hexdump_bytes(data: Any) -> str:
    """FreeBSD ``print_bytes``: ``%03x: `` then 16 bytes as ``%02x `` per line."""
    data = bytes(data)
    lines = [
        f"{off:03x}: " + "".join(f"{b:02x} " for b in data[off : off + 16])
        for off in range(0, len(data), 16)
    ]
    return "\n".join(lines) + "\n"


# --- 01h Error Information ------------------------------------------------------


def _live_errors(entries: list[ErrorLogEntry]) -> list[ErrorLogEntry]:
    out = []
    for e in entries:
        if e.error_count == 0:
            break
        out.append(e)
    return out


def render_error_log(entries: list[ErrorLogEntry]) -> str:
    o = ["Error Information Log\n", "=====================\n"]
    live = _live_errors(entries)
    if not live:
        o.append("No error entries found\n")
        return "".join(o)
    for i, e in enumerate(live):
        st = e.status
        o.append(f"Entry {i + 1:02d}\n")
        o.append("=========\n")
        o.append(f" Error count:          {e.error_count}\n")
        o.append(f" Submission queue ID:  {e.sqid}\n")
        o.append(f" Command ID:           {e.cid}\n")
        o.append(" Status:\n")
        o.append(f"  Phase tag:           {e.phase}\n")
        o.append(f"  Status code:         {st & 0xFF}\n")
        o.append(f"  Status code type:    {(st >> 8) & 0x7}\n")
        o.append(f"  More:                {(st >> 13) & 1}\n")
        o.append(f"  DNR:                 {(st >> 14) & 1}\n")
        o.append(f" Error location:       {e.pel}\n")
        o.append(f" LBA:                  {e.lba}\n")
        o.append(f" Namespace ID:         {e.nsid}\n")
        o.append(f" Vendor specific info: {e.vs}\n")
        o.append(f" Transport type:       {e.trtype}\n")
        o.append(f" Command specific info:{e.cs}\n")
        o.append(f" Transport specific:   {e.ttsi}\n")
    return "".join(o)


# Fabrics commands (Connect, Property Get/Set, Authentication) use opcode 7Fh.
_FABRICS_OPCODE = 0x7F


def _status_context(e: ErrorLogEntry) -> str:
    # SCT 1 codes 80h-BFh mean different things for Fabrics/admin commands
    # and for NVM I/O commands; the queue (and, since NVMe 2.0, the opcode)
    # of the failed command tells which table applies.
    if e.opc == _FABRICS_OPCODE or e.sqid == 0:
        return "fabrics"
    return "nvm"


def error_log_to_json(entries: list[ErrorLogEntry]) -> dict[str, Any]:
    """Entries up to the first empty one (as the text printer)."""
    return {
        "entries": [
            {
                "error_count": e.error_count,
                "sqid": e.sqid,
                "cid": e.cid,
                "status": status_to_json(e.status, context=_status_context(e)),
                "phase": e.phase,
                "pel": e.pel,
                "lba": e.lba,
                "nsid": e.nsid,
                "vs": e.vs,
                "trtype": e.trtype,
                "csi": e.csi,
                "opc": e.opc,
                "cs": e.cs,
                "ttsi": e.ttsi,
            }
            for e in _live_errors(entries)
        ]
    }


# --- 02h SMART / Health -----------------------------------------------------------


def _f32(x: float) -> float:
    return _F32.unpack(_F32.pack(x))[0]


def format_temp(kelvin: int) -> str:
    """FreeBSD ``print_temp``: ``"%u K, %2.2f C, %3.2f F"``.  The Fahrenheit
    value goes through single precision as in the C expression."""
    c = kelvin - 273.15
    f = _f32(_f32(float(kelvin) * 9) / 5) - 459.67
    return f"{kelvin} K, {c:2.2f} C, {f:3.2f} F"


def render_smart_log(h: SmartLog) -> str:
    w = h.critical_warning
    o = ["SMART/Health Information Log\n", "============================\n"]
    o.append(f"Critical Warning State:         0x{w:02x}\n")
    o.append(f" Available spare:               {int(bool(w & CW_SPARE))}\n")
    o.append(f" Temperature:                   {int(bool(w & CW_TEMPERATURE))}\n")
    o.append(f" Device reliability:            {int(bool(w & CW_RELIABILITY))}\n")
    o.append(f" Read only:                     {int(bool(w & CW_READ_ONLY))}\n")
    o.append(f" Volatile memory backup:        {int(bool(w & CW_VOLATILE_BACKUP))}\n")
    o.append(f"Temperature:                    {format_temp(h.temperature)}\n")
    o.append(f"Available spare:                {h.avail_spare}\n")
    o.append(f"Available spare threshold:      {h.spare_thresh}\n")
    o.append(f"Percentage used:                {h.percent_used}\n")
    o.append(f"Data units (512,000 byte) read: {h.data_units_read}\n")
    o.append(f"Data units written:             {h.data_units_written}\n")
    o.append(f"Host read commands:             {h.host_read_commands}\n")
    o.append(f"Host write commands:            {h.host_write_commands}\n")
    o.append(f"Controller busy time (minutes): {h.controller_busy_time}\n")
    o.append(f"Power cycles:                   {h.power_cycles}\n")
    o.append(f"Power on hours:                 {h.power_on_hours}\n")
    o.append(f"Unsafe shutdowns:               {h.unsafe_shutdowns}\n")
    o.append(f"Media errors:                   {h.media_errors}\n")
    o.append(f"No. error info log entries:     {h.num_err_log_entries}\n")
    o.append(f"Warning Temp Composite Time:    {h.warning_temp_time}\n")
    o.append(f"Error Temp Composite Time:      {h.critical_comp_time}\n")
    for i, t in enumerate(h.temp_sensor):
        if t == 0:
            continue
        o.append(f"Temperature Sensor {i + 1}:           {format_temp(t)}\n")
    o.append(f"Temperature 1 Transition Count: {h.thm_temp1_trans_count}\n")
    o.append(f"Temperature 2 Transition Count: {h.thm_temp2_trans_count}\n")
    o.append(f"Total Time For Temperature 1:   {h.thm_temp1_total_time}\n")
    o.append(f"Total Time For Temperature 2:   {h.thm_temp2_total_time}\n")
    return "".join(o)


def smart_log_to_json(h: SmartLog) -> dict[str, Any]:
    out = {name: getattr(h, name) for name in SmartLog.__slots__}
    out["temp_sensor"] = list(h.temp_sensor)
    return out


# --- 03h Firmware Slot ---------------------------------------------------------------


def render_fw_slot_log(fw: FirmwareSlotLog, cdata: IdentifyController | None = None) -> str:
    """Slots shown: 1 when the controller lacks firmware commands (OACS bit
    2), else FRMW's slot count; all seven when Identify data is unknown."""
    o = ["Firmware Slot Log\n", "=================\n"]
    if cdata is None:
        slots = _MAX_FW_SLOTS
    elif not cdata.oacs & 0x4:
        slots = 1
    else:
        slots = min((cdata.frmw >> 1) & 0x7, _MAX_FW_SLOTS)
    for i in range(slots):
        rev = fw.frs[i]
        status = "  Active" if fw.active_slot == i + 1 else "Inactive"
        if rev == "":
            o.append(f"Slot {i + 1}: Empty\n")
        elif " " <= rev[0] < "\x7f":
            o.append(f"Slot {i + 1}: [{status}] {strvis(rev)[:8]}\n")
        else:
            # FreeBSD prints the 8 bytes as one little-endian 64-bit number.
            raw = rev.encode("ascii", "surrogateescape").ljust(8, b" ")[:8]
            o.append(f"Slot {i + 1}: [{status}] {int.from_bytes(raw, 'little'):016x}\n")
    return "".join(o)


def fw_slot_log_to_json(fw: FirmwareSlotLog) -> dict[str, Any]:
    return {
        "afi": fw.afi,
        "active_slot": fw.active_slot,
        "next_slot": fw.next_slot,
        "frs": [strvis(r) for r in fw.frs],
    }


# --- 04h Changed Namespace List ---------------------------------------------------------


def render_changed_ns_list(log: ChangedNsList) -> str:
    o = ["Changed Namespace List\n", "======================\n"]
    if log.overflow:
        # What FreeBSD shows: the FFFFFFFFh marker itself.
        o.append("ffffffff\n")
    o.extend(f"{nsid:08x}\n" for nsid in log.nsids)
    return "".join(o)


def changed_ns_list_to_json(log: ChangedNsList) -> dict[str, Any]:
    return {"overflow": log.overflow, "nsids": list(log.nsids)}


# --- 05h Commands Supported and Effects --------------------------------------------------


def _yn(bit: int) -> str:
    return "Yes" if bit else "No"


def render_cmd_effects_log(ce: CommandEffectsLog) -> str:
    o = ["Commands Supported and Effects\n", "==============================\n",
         "  Command\tLBCC\tNCC\tNIC\tCCC\tCSE\tUUID\n"]
    for kind, table in (("Admin", ce.acs), ("I/O", ce.iocs)):
        for opc, s in enumerate(table):
            if not s & CE_CSUPP:
                continue
            o.append(f"{kind}\t{opc:02x}\t{_yn(s & CE_LBCC)}\t{_yn(s & CE_NCC)}\t{_yn(s & CE_NIC)}"
                     f"\t{_yn(s & CE_CCC)}\t{(s >> CE_CSE_SHIFT) & CE_CSE_MASK}\t{_yn(s & CE_UUID)}\n")
    return "".join(o)


def _effects_json(table: tuple[int, ...]) -> list[dict[str, Any]]:
    return [
        {
            "opcode": opc,
            "effects": s,
            "lbcc": bool(s & CE_LBCC),
            "ncc": bool(s & CE_NCC),
            "nic": bool(s & CE_NIC),
            "ccc": bool(s & CE_CCC),
            "cse": (s >> CE_CSE_SHIFT) & CE_CSE_MASK,
            "uuid": bool(s & CE_UUID),
        }
        for opc, s in enumerate(table)
        if s & CE_CSUPP
    ]


def cmd_effects_log_to_json(ce: CommandEffectsLog) -> dict[str, Any]:
    """Supported commands only: ``{"acs": [...], "iocs": [...]}``."""
    return {"acs": _effects_json(ce.acs), "iocs": _effects_json(ce.iocs)}


# --- 0Ch ANA (our layout, FreeBSD style) ----------------------------------------------------

_ANA_TEXT = {
    AnaState.OPTIMIZED: "Optimized",
    AnaState.NON_OPTIMIZED: "Non-Optimized",
    AnaState.INACCESSIBLE: "Inaccessible",
    AnaState.PERSISTENT_LOSS: "Persistent Loss",
    AnaState.CHANGE: "Change",
}
# nvme-cli's ana-log JSON vocabulary.
_ANA_JSON = {
    AnaState.OPTIMIZED: "optimized",
    AnaState.NON_OPTIMIZED: "non-optimized",
    AnaState.INACCESSIBLE: "inaccessible",
    AnaState.PERSISTENT_LOSS: "persistent-loss",
    AnaState.CHANGE: "change",
}


def render_ana_log(log: AnaLog) -> str:
    o = ["Asymmetric Namespace Access Log\n", "===============================\n"]
    o.append(f"Change count:         {log.chgcnt}\n")
    o.append(f"Number of groups:     {len(log.groups)}\n")
    for g in log.groups:
        title = f"Group {g.grpid}"
        o.append(f"{title}\n{'=' * len(title)}\n")
        o.append(f" ANA state:           {_ANA_TEXT.get(g.state, f'0x{int(g.state):02x}')}\n")
        o.append(f" Change count:        {g.chgcnt}\n")
        o.append(f" Namespaces:          {len(g.nsids)}\n")
        o.extend(f"  {nsid:08x}\n" for nsid in g.nsids)
    return "".join(o)


def ana_log_to_json(log: AnaLog) -> dict[str, Any]:
    return {
        "chgcnt": log.chgcnt,
        "ngrps": len(log.groups),
        "groups": [
            {
                "grpid": g.grpid,
                "chgcnt": g.chgcnt,
                "state": _ANA_JSON.get(g.state, int(g.state)),
                "nnsids": len(g.nsids),
                "nsids": list(g.nsids),
            }
            for g in log.groups
        ],
    }


# --- registry ---------------------------------------------------------------------------------

SizeRule = Callable[[IdentifyController | None], int]
Decoder = Callable[[Any], Any]
TextPrinter = Callable[[Any, IdentifyController | None], str]
JsonConverter = Callable[[Any], Any]


class PagePrinter(NamedTuple):
    """How ``logpage`` fetches, decodes and shows one page."""

    name: str
    size: SizeRule  # bytes to request, given the controller's Identify data
    decode: Decoder | None  # raw page -> its structure; None: shown as hex
    text: TextPrinter | None  # the structure (and Identify data) -> text
    json: JsonConverter | None  # the structure -> JSON


class DecodedPage(NamedTuple):
    """A fetched page, decoded once: renderers take this, never the bytes alone."""

    lid: int
    raw: bytes  # for -x, -b and pages without a decoder
    log: Any  # the decoded structure, None when the page has no decoder


def _fixed(n: int) -> SizeRule:
    return lambda cdata: n


def _error_size(cdata: IdentifyController | None) -> int:
    # FreeBSD: (ELPE + 1) entries; one entry when Identify data is unknown.
    return error_log_size(cdata.elpe if cdata is not None else 0)


def _ana_size(cdata: IdentifyController | None) -> int:
    # Room for every group and every namespace once (NANAGRPID groups,
    # MNAN or else NN namespaces); at least the header.
    if cdata is None:
        return DEFAULT_SIZE
    nsids = cdata.mnan or cdata.nn
    return max(ana_log_size(cdata.nanagrpid, nsids), ANA_HEADER_SIZE)


PAGE_PRINTERS: dict[int, PagePrinter] = {
    LogPage.ERROR: PagePrinter(
        "Drive Error Log", _error_size, decode_error_log,
        lambda log, c: render_error_log(log),
        error_log_to_json,
    ),
    LogPage.SMART: PagePrinter(
        "Health/SMART Data", _fixed(SMART_LOG_SIZE), decode_smart_log,
        lambda log, c: render_smart_log(log),
        smart_log_to_json,
    ),
    LogPage.FW_SLOT: PagePrinter(
        "Firmware Information", _fixed(FW_SLOT_LOG_SIZE), decode_fw_slot_log,
        lambda log, c: render_fw_slot_log(log, c),
        fw_slot_log_to_json,
    ),
    LogPage.CHANGED_NS: PagePrinter(
        "Changed Namespace List", _fixed(CHANGED_NS_LOG_SIZE), decode_changed_ns_list,
        lambda log, c: render_changed_ns_list(log),
        changed_ns_list_to_json,
    ),
    LogPage.CMD_EFFECTS: PagePrinter(
        "Commands Supported and Effects", _fixed(CMD_EFFECTS_LOG_SIZE), decode_cmd_effects_log,
        lambda log, c: render_cmd_effects_log(log),
        cmd_effects_log_to_json,
    ),
    LogPage.DEVICE_SELF_TEST: PagePrinter(
        "Device Self-test", _fixed(DEVICE_SELF_TEST_LOG_SIZE), None, None, None),
    LogPage.TELEMETRY_HOST: PagePrinter(
        "Telemetry Host-Initiated", _fixed(DEFAULT_SIZE), None, None, None),
    LogPage.TELEMETRY_CTRL: PagePrinter(
        "Telemetry Controller-Initiated", _fixed(DEFAULT_SIZE), None, None, None),
    LogPage.ENDURANCE_GROUP: PagePrinter(
        "Endurance Group Information", _fixed(DEFAULT_SIZE), None, None, None),
    LogPage.PREDICTABLE_LAT_NVMSET: PagePrinter(
        "Predictable Latency Per NVM Set", _fixed(DEFAULT_SIZE), None, None, None),
    LogPage.PREDICTABLE_LAT_AGG: PagePrinter(
        "Predictable Latency Event Aggregate", _fixed(DEFAULT_SIZE), None, None, None),
    LogPage.ANA: PagePrinter(
        "Asymmetric Namespace Access", _ana_size, decode_ana_log,
        lambda log, c: render_ana_log(log),
        ana_log_to_json,
    ),
    LogPage.PERSISTENT_EVENT: PagePrinter(
        "Persistent Event Log", _fixed(DEFAULT_SIZE), None, None, None),
    LogPage.LBA_STATUS: PagePrinter(
        "LBA Status Information", _fixed(DEFAULT_SIZE), None, None, None),
    LogPage.ENDURANCE_GROUP_EVENT: PagePrinter(
        "Endurance Group Event Aggregate", _fixed(DEFAULT_SIZE), None, None, None),
    LogPage.RESERVATION_NOTIFICATION: PagePrinter(
        "Reservation Notification", _fixed(RESERVATION_NOTIFICATION_LOG_SIZE), None, None, None),
    LogPage.SANITIZE_STATUS: PagePrinter(
        "Sanitize Status", _fixed(SANITIZE_STATUS_LOG_SIZE), None, None, None),
}


def logpage_size(page: int, cdata: IdentifyController | None = None) -> int:
    """Bytes ``logpage -p page`` requests (FreeBSD: DEFAULT_SIZE if unknown)."""
    entry = PAGE_PRINTERS.get(page)
    return entry.size(cdata) if entry is not None else DEFAULT_SIZE


def decode_logpage(lid: int, raw: Any) -> DecodedPage:
    """Decode ``raw`` with the page's decoder, if it has one (short pages raise
    :class:`~nvmecontrol.errors.PeerProtocolError`)."""
    entry = PAGE_PRINTERS.get(lid)
    raw = bytes(raw)
    return DecodedPage(lid, raw, entry.decode(raw) if entry and entry.decode else None)


def render_logpage_text(page: DecodedPage, cdata: IdentifyController | None = None) -> str:
    """The pretty form if a printer exists, else the FreeBSD hex dump."""
    entry = PAGE_PRINTERS.get(page.lid)
    if entry is None or entry.text is None or page.log is None:
        return hexdump(page.raw)
    return entry.text(page.log, cdata)


def logpage_to_json(page: DecodedPage) -> dict[str, Any]:
    """``{"lid": page, "name": ..., "log": ...}``; pages without a converter
    carry ``"data"``, the raw page as a hex string."""
    entry = PAGE_PRINTERS.get(page.lid)
    out: dict[str, Any] = {"lid": page.lid, "name": entry.name if entry else None}
    if entry is None or entry.json is None or page.log is None:
        out["data"] = page.raw.hex()
    else:
        out["log"] = entry.json(page.log)
    return out


def render_logpage_help() -> str:
    """``logpage -v help`` (FreeBSD writes it to stderr)."""
    o = ["\n", f"{'Page':<8} {'Vendor':<10} Page Name\n", "-------- ---------- ----------\n"]
    for page in sorted(PAGE_PRINTERS):
        o.append(f"0x{page:02x}     {'-':<10} {PAGE_PRINTERS[page].name}\n")
    return "".join(o)
