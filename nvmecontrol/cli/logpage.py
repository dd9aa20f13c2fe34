"""``nvmecontrol logpage``: fetch and print a log page.

FreeBSD syntax: ``logpage -p page [-x] [-b] [-v vendor] [-f LSP] [-i LSI]
[-r] <device-id | namespace-id>``, plus the network form ``address subnqn``.
``-v help`` lists the known pages; ``-x`` dumps hex, ``-b`` writes the raw
page; pages without a printer fall back to hex.  The discovery log (0x70)
is readable here too (FreeBSD only shows it through ``discover``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Optional

import typer

from nvmecontrol.cli.device import ConnectOptions, open_controller
from nvmecontrol.cli.options import DataDigest, HdrDigest, HostId, HostNqn, OutputFormat, TimeoutS
from nvmecontrol.cli.output import Format, emit, emit_binary, emit_json
from nvmecontrol.cli.render.discovery import discovery_to_json, render_discovery_text
from nvmecontrol.cli.render.logpage import (PAGE_PRINTERS, hexdump, logpage_size, logpage_to_json,
                                            render_logpage_help, render_logpage_text)
from nvmecontrol.errors import UsageError
from nvmecontrol.wire.admin import GetLogPage
from nvmecontrol.wire.discovery import (DISCOVERY_ENTRY_SIZE, DISCOVERY_HEADER_SIZE,
                                        MAX_DISCOVERY_RECORDS, decode_discovery_entries,
                                        decode_discovery_header)
from nvmecontrol.wire.identify import NSID_BROADCAST, decode_identify_controller
from nvmecontrol.wire.logpages import LogPage

NAME = "logpage"
HELP = "Print a log page of a device or a remote controller (-p page; -v help lists pages)."
NO_ARGS_IS_HELP = False

# Names accepted by -p besides numbers (also offered by the completions).
PAGE_NAMES = {
    "error": LogPage.ERROR, "smart": LogPage.SMART, "health": LogPage.SMART,
    "fw": LogPage.FW_SLOT, "firmware": LogPage.FW_SLOT, "changed-ns": LogPage.CHANGED_NS,
    "effects": LogPage.CMD_EFFECTS, "ana": LogPage.ANA, "discovery": LogPage.DISCOVERY,
}


def parse_page(text: str) -> int:
    name = text.strip().lower()
    if name in PAGE_NAMES:
        return int(PAGE_NAMES[name])
    try:
        page = int(name, 0)
    except ValueError:
        raise UsageError(f"invalid log page {text!r}: a number (2, 0x02) or one of "
                         f"{', '.join(sorted(PAGE_NAMES))}") from None
    if not 0 <= page <= 0xFF:
        raise UsageError(f"invalid log page {text!r}: not in 0..255")
    return page


@dataclass(slots=True)
class LogPageResult:
    page: int
    data: bytes
    cdata_raw: bytes


def _fetch_discovery(ctrl, lsp: int, rae: bool) -> bytes:
    head = ctrl.get_log_page(GetLogPage(lid=LogPage.DISCOVERY, length=DISCOVERY_HEADER_SIZE,
                                        nsid=0, lsp=lsp, rae=rae))
    numrec = min(decode_discovery_header(head).numrec, MAX_DISCOVERY_RECORDS)
    if not numrec:
        return head
    return ctrl.get_log_page(GetLogPage(lid=LogPage.DISCOVERY,
                                        length=DISCOVERY_HEADER_SIZE + numrec * DISCOVERY_ENTRY_SIZE,
                                        nsid=0, lsp=lsp, rae=rae))


def run(target: str, subnqn: str | None, page: int, *, lsp: int = 0, lsi: int = 0,
        rae: bool = False, nsid: int | None = None, opts: ConnectOptions) -> LogPageResult:
    with open_controller(target, subnqn, opts) as ctrl:
        cdata_raw = ctrl.identify_controller()
        if nsid is None:
            nsid = ctrl.namespace_nsid
        if nsid not in (None, 0, NSID_BROADCAST) and page != LogPage.SMART:
            raise UsageError(f"log page {page} valid only at controller level")
        if page == LogPage.DISCOVERY:
            data = _fetch_discovery(ctrl, lsp, rae)
        else:
            size = logpage_size(page, decode_identify_controller(cdata_raw))
            data = ctrl.get_log_page(GetLogPage(lid=page, length=size, lsp=lsp, lsi=lsi, rae=rae,
                                                nsid=nsid or NSID_BROADCAST))
        return LogPageResult(page, data, cdata_raw)


def _discovery_parts(data: bytes):
    head = decode_discovery_header(data)
    n = min(head.numrec, (len(data) - DISCOVERY_HEADER_SIZE) // DISCOVERY_ENTRY_SIZE)
    return head, decode_discovery_entries(data[DISCOVERY_HEADER_SIZE:], n)


def command(
    target: Annotated[Optional[str], typer.Argument(metavar="DEVICE|ADDRESS", help="nvmeX, nvmeXnY, or host:port of a controller.")] = None,
    subnqn: Annotated[Optional[str], typer.Argument(metavar="[SUBNQN]", help="Subsystem NQN (with an address).")] = None,
    page: Annotated[Optional[str], typer.Option("-p", "--page", help="Log page: number (2, 0x02) or name (smart, error, fw, changed-ns, effects, ana, discovery).")] = None,
    hex_: Annotated[bool, typer.Option("-x", "--hex", help="Print a hex dump.")] = False,
    binary: Annotated[bool, typer.Option("-b", "--binary", help="Write the raw page to stdout.")] = False,
    vendor: Annotated[Optional[str], typer.Option("-v", "--vendor", help="Vendor pages; 'help' lists the known pages.")] = None,
    lsp: Annotated[int, typer.Option("-f", "--lsp", help="Log Specific Parameter.", min=0, max=0x7F)] = 0,
    lsi: Annotated[int, typer.Option("-i", "--lsi", help="Log Specific Identifier.", min=0, max=0xFFFF)] = 0,
    rae: Annotated[bool, typer.Option("-r", "--rae", help="Retain Asynchronous Event.")] = False,
    nsid: Annotated[Optional[int], typer.Option("-n", "--nsid", help="Namespace ID (SMART per namespace).", min=0,
                                                max=0xFFFFFFFF)] = None,
    hostnqn: HostNqn = None,
    hostid: HostId = None,
    hdr_digests: HdrDigest = False,
    data_digests: DataDigest = False,
    fmt: OutputFormat = Format.text,
    timeout: TimeoutS = 30.0,
):
    if vendor is not None:
        if vendor == "help":
            emit(render_logpage_help())
            return
        raise UsageError(f"no vendor pages for {vendor!r} (only standard pages; see -v help)")
    if page is None:
        raise UsageError("missing log page: use -p page (-v help lists them)")
    if target is None:
        raise UsageError("missing device or address")
    if hex_ and binary:
        raise UsageError("-x and -b are mutually exclusive")
    opts = ConnectOptions(hostnqn, hostid, hdr_digests, data_digests, timeout)
    r = run(target, subnqn, parse_page(page), lsp=lsp, lsi=lsi, rae=rae, nsid=nsid, opts=opts)
    cdata = decode_identify_controller(r.cdata_raw)
    if binary:
        emit_binary(r.data)
    elif hex_:
        emit(hexdump(r.data))
    elif r.page == LogPage.DISCOVERY:
        head, entries = _discovery_parts(r.data)
        if fmt is Format.json:
            emit_json({"lid": r.page, "name": "Discovery", "log": discovery_to_json(head, entries)})
        else:
            emit(render_discovery_text(head, entries))
    elif fmt is Format.json:
        emit_json(logpage_to_json(r.page, r.data, cdata))
    else:
        emit(render_logpage_text(r.page, r.data, cdata))


# Known pages, for completions and `-v help`.
KNOWN_PAGES = sorted(set(PAGE_PRINTERS) | {int(LogPage.DISCOVERY)})
