"""``nvmecontrol logpage``: fetch and print a log page.

FreeBSD syntax: ``logpage -p page [-x] [-b] [-v vendor] [-f LSP] [-i LSI]
[-r] <device-id | namespace-id>``, plus the network form ``address subnqn``.
``-v help`` lists the known pages; ``-x`` dumps hex, ``-b`` writes the raw
page; pages without a printer fall back to hex.  The discovery log (0x70)
is readable here too (FreeBSD only shows it through ``discover``), fetched by
``api.admin`` as ``discover`` fetches it (GENCTR stable).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from nvmecontrol.cli.exitcodes import EX_USAGE
from nvmecontrol.cli.numbers import NumberOption, parse_number
from nvmecontrol.cli.options import DEFAULTS as D  # the option table's defaults
from nvmecontrol.cli.options import (DataDigest, DhchapCtrlSecret, DhchapSecret, HdrDigest, HostId,
                                     HostNqn, OutputFormat, TimeoutS)
from nvmecontrol.cli.output import Format, emit, emit_binary, emit_json
from nvmecontrol.errors import Unsupported, UsageError

if TYPE_CHECKING:  # the machinery is imported when the command runs, not for --help
    from nvmecontrol.api.admin import ConnectOptions
    from nvmecontrol.api.structures import IdentifyController
    from nvmecontrol.cli.render.logpage import DecodedPage


# Names accepted by -p besides numbers (also offered by the completions).
# The values are api.structures.LogPage's (a test keeps them equal), as plain
# numbers so that `logpage --help` does not load the wire layer.
PAGE_NAMES = {
    "error": 0x01, "smart": 0x02, "health": 0x02, "fw": 0x03, "firmware": 0x03,
    "changed-ns": 0x04, "effects": 0x05, "ana": 0x0C, "discovery": 0x70,
}


def parse_page(text: str) -> int:
    name = text.strip().lower()
    if name in PAGE_NAMES:
        return int(PAGE_NAMES[name])
    try:
        page = parse_number(name)
    except ValueError:
        raise UsageError(f"invalid log page {text!r}: a number (2, 0x02) or one of "
                         f"{', '.join(sorted(PAGE_NAMES))}") from None
    if not 0 <= page <= 0xFF:
        raise UsageError(f"invalid log page {text!r}: not in 0..255")
    return page


@dataclass(slots=True)
class LogPageResult:
    """The page and the controller's Identify data, each decoded once, here."""

    page: DecodedPage  # for the discovery log, .log is the API's DiscoveryLog
    cdata: IdentifyController


def run(target: str, subnqn: str | None, page: int, *, lsp: int = 0, lsi: int = 0,
        rae: bool = False, nsid: int | None = None, opts: ConnectOptions) -> LogPageResult:
    from nvmecontrol.api.structures import LPA_SMART_PER_NS, NSID_BROADCAST, LogPage
    from nvmecontrol.cli.device import open_controller
    from nvmecontrol.cli.render.logpage import DecodedPage, decode_logpage, logpage_size

    with open_controller(target, subnqn, opts) as ctrl:
        cdata = ctrl.identify_controller().data
        if nsid is None:
            nsid = ctrl.nsid
        if nsid not in (None, 0, NSID_BROADCAST):
            if page != LogPage.SMART:
                raise UsageError(f"log page {page} valid only at controller level")
            # FreeBSD checks LPA before asking: per-namespace SMART is optional.
            if not cdata.lpa & LPA_SMART_PER_NS:
                raise Unsupported("controller does not support per namespace smart/health "
                                  "information (LPA bit 0); -n 0xffffffff asks for the "
                                  "controller's")
        if page == LogPage.DISCOVERY:
            log = ctrl.discovery_log(lsp=lsp, rae=rae)
            return LogPageResult(DecodedPage(page, log.raw, log), cdata)
        raw = ctrl.log_page(page, logpage_size(page, cdata), lsp=lsp, lsi=lsi, rae=rae,
                            nsid=nsid or NSID_BROADCAST)
        return LogPageResult(decode_logpage(page, raw), cdata)


def command(
    ctx: typer.Context,
    target: Annotated[Optional[str], typer.Argument(metavar="DEVICE|ADDRESS", help="nvmeX, nvmeXnY, or host:port of a controller.")] = None,
    subnqn: Annotated[Optional[str], typer.Argument(metavar="[SUBNQN]", help="Subsystem NQN (with an address).")] = None,
    page: Annotated[Optional[str], typer.Option("-p", "--page", help="Log page: number (2, 0x02) or name (smart, error, fw, changed-ns, effects, ana, discovery).")] = None,
    hex_: Annotated[bool, typer.Option("-x", "--hex", help="Print a hex dump.")] = False,
    binary: Annotated[bool, typer.Option("-b", "--binary", help="Write the raw page to stdout.")] = False,
    vendor: Annotated[Optional[str], typer.Option("-v", "--vendor", help="Vendor pages; 'help' lists the known pages.")] = None,
    lsp: Annotated[int, NumberOption("-f", "--lsp", lo=0, hi=0x7F, help="Log Specific Parameter.")] = 0,
    lsi: Annotated[int, NumberOption("-i", "--lsi", lo=0, hi=0xFFFF, help="Log Specific Identifier.")] = 0,
    rae: Annotated[bool, typer.Option("-r", "--rae", help="Retain Asynchronous Event.")] = False,
    nsid: Annotated[Optional[int], NumberOption("-n", "--nsid", lo=0, hi=0xFFFFFFFF,
                                                help="Namespace ID (SMART per namespace).")] = None,
    hostnqn: HostNqn = D.hostnqn,
    hostid: HostId = D.hostid,
    hdr_digests: HdrDigest = D.hdr_digests,
    data_digests: DataDigest = D.data_digests,
    fmt: OutputFormat = Format.text,
    timeout: TimeoutS = D.timeout,
    dhchap_secret: DhchapSecret = D.dhchap_secret,
    dhchap_ctrl_secret: DhchapCtrlSecret = D.dhchap_ctrl_secret,
):
    from nvmecontrol.cli.fabrics_config import network_options
    from nvmecontrol.cli.render.discovery import discovery_to_json, render_discovery_text
    from nvmecontrol.api.structures import LogPage
    from nvmecontrol.cli.render.logpage import (hexdump, logpage_to_json, render_logpage_help,
                                                render_logpage_text)

    if fmt is Format.json and (hex_ or binary or vendor == "help"):
        raise UsageError(f"{'-x' if hex_ else '-b' if binary else '-v help'} "
                         "cannot be combined with -o json")
    if vendor is not None:
        if vendor == "help":
            # FreeBSD: the list goes to stderr and the command ends as a usage.
            sys.stderr.write(render_logpage_help())
            return EX_USAGE
        raise UsageError(f"no vendor pages for {vendor!r} (only standard pages; see -v help)")
    if page is None:
        raise UsageError("missing log page: use -p page (-v help lists them)")
    if target is None:
        raise UsageError("missing device or address")
    if hex_ and binary:
        raise UsageError("-x and -b are mutually exclusive")
    opts = network_options(ctx, target, subnqn, hostnqn=hostnqn, hostid=hostid,
                           hdr_digests=hdr_digests, data_digests=data_digests, timeout=timeout,
                           dhchap_secret=dhchap_secret, dhchap_ctrl_secret=dhchap_ctrl_secret)
    r = run(target, subnqn, parse_page(page), lsp=lsp, lsi=lsi, rae=rae, nsid=nsid, opts=opts)
    if binary:
        emit_binary(r.page.raw)
    elif hex_:
        emit(hexdump(r.page.raw))
    elif r.page.lid == LogPage.DISCOVERY:
        log = r.page.log
        if fmt is Format.json:
            emit_json({"lid": r.page.lid, "name": "Discovery",
                       "log": discovery_to_json(log.header, log.entries)})
        else:
            emit(render_discovery_text(log.header, log.entries))
    elif fmt is Format.json:
        emit_json(logpage_to_json(r.page))
    else:
        emit(render_logpage_text(r.page, r.cdata))


def known_pages() -> list[int]:
    """The pages with a printer, and the discovery log (for completions and `-v help`)."""
    from nvmecontrol.cli.render.logpage import PAGE_PRINTERS

    return sorted(set(PAGE_PRINTERS) | {PAGE_NAMES["discovery"]})
