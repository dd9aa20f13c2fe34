"""``nvmecontrol logpage``: fetch and print a log page.

FreeBSD syntax: ``logpage -p page [-x] [-b] [-v vendor] [-f LSP] [-i LSI]
[-r] <device-id | namespace-id>``, plus the network form ``address subnqn``.
``-v help`` lists the known pages; ``-x`` dumps hex, ``-b`` writes the raw
page; pages without a printer fall back to hex.  The discovery log (0x70)
is readable here too (FreeBSD only shows it through ``discover``), fetched by
``api.admin`` as ``discover`` fetches it (GENCTR stable).
The options and their help: ``cli/signatures/logpage.py``.
"""

from __future__ import annotations

import sys
from collections import namedtuple

from nvmecontrol.cli.exitcodes import EX_USAGE
from nvmecontrol.cli.numbers import parse_number
from nvmecontrol.cli.output import Format, emit, emit_binary, emit_json
from nvmecontrol.errors import Unsupported, UsageError

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:  # the machinery is imported when the command runs, not for --help
    from nvmecontrol.api.admin import ConnectOptions


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


# The page (a DecodedPage; for the discovery log, .log is the API's
# DiscoveryLog) and the controller's IdentifyController, each decoded once,
# here.  Not a dataclass: see cli.identify's IdentifyResult.
LogPageResult = namedtuple("LogPageResult", "page cdata")


def run(target: str, subnqn: str | None, page: int, *, lsp: int = 0, lsi: int = 0,
        rae: bool = False, nsid: int | None = None, opts: ConnectOptions) -> LogPageResult:
    from nvmecontrol.cli.device import open_controller

    with open_controller(target, subnqn, opts) as ctrl:
        # The structures and decoders once there is a controller to ask.
        from nvmecontrol.api.structures import LPA_SMART_PER_NS, NSID_BROADCAST, LogPage
        from nvmecontrol.cli.render.logpage import DecodedPage, decode_logpage, logpage_size

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


def execute(ctx, *, target: str | None, subnqn: str | None, page: str | None, hex_: bool,
            binary: bool, vendor: str | None, lsp: int, lsi: int, rae: bool, nsid: int | None,
            hostnqn: str | None, hostid: str | None, hdr_digests: bool, data_digests: bool,
            fmt: Format, timeout: float, dhchap_secret: str | None,
            dhchap_ctrl_secret: str | None):
    """The command, from the typer signature or the fast path (``ctx``: the options given)."""

    from nvmecontrol.cli.fabrics_config import network_options

    if fmt is Format.json and (hex_ or binary or vendor == "help"):
        raise UsageError(f"{'-x' if hex_ else '-b' if binary else '-v help'} "
                         "cannot be combined with -o json")
    if vendor is not None:
        if vendor == "help":
            from nvmecontrol.cli.render.logpage import render_logpage_help

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
    # The renderers once there is something to render (a failing command starts faster).
    from nvmecontrol.api.structures import LogPage
    from nvmecontrol.cli.render.discovery import discovery_to_json, render_discovery_text
    from nvmecontrol.cli.render.logpage import hexdump, logpage_to_json, render_logpage_text

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
