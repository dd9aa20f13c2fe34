"""``nvmecontrol identify``: Identify Controller / Namespace data.

FreeBSD syntax (``identify [-v] [-x] [-n nsid] <device-id | namespace-id>``),
plus a network form ``identify address subnqn`` that asks over a one-shot
userspace association.  ``-x`` dumps hex (``-v`` the whole 4 KiB).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from nvmecontrol.cli.numbers import NumberOption
from nvmecontrol.cli.options import DEFAULTS as D  # the option table's defaults
from nvmecontrol.cli.options import (DataDigest, DhchapCtrlSecret, DhchapSecret, HdrDigest, HostId,
                                     HostNqn, OutputFormat, TimeoutS)
from nvmecontrol.cli.output import Format, emit, emit_json
from nvmecontrol.errors import UsageError

if TYPE_CHECKING:  # the machinery is imported when the command runs, not for --help
    from nvmecontrol.api.admin import ConnectOptions
    from nvmecontrol.api.structures import IdentifyController, IdentifyNamespace


# Without -v, hex dumps stop where the reserved/vendor areas begin, as
# FreeBSD does: controller data before the vendor specific area (3072),
# namespace data after the 64 LBA formats (384).
CONTROLLER_DUMP_LEN = 3072
NAMESPACE_DUMP_LEN = 384


@dataclass(slots=True)
class IdentifyResult:
    """The structure as read (for -x) and decoded once, here."""

    raw: bytes
    nsid: int  # 0 = controller
    data: IdentifyController | IdentifyNamespace


def run(target: str, subnqn: str | None, nsid: int | None, opts: ConnectOptions) -> IdentifyResult:
    from nvmecontrol.cli.device import open_controller

    with open_controller(target, subnqn, opts) as ctrl:
        if nsid is None:
            nsid = ctrl.nsid or 0
        ident = ctrl.identify_namespace(nsid) if nsid else ctrl.identify_controller()
        return IdentifyResult(ident.raw, nsid, ident.data)


def command(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(metavar="DEVICE|ADDRESS", help="nvmeX, nvmeXnY, or host:port of a controller.")],
    subnqn: Annotated[Optional[str], typer.Argument(metavar="[SUBNQN]", help="Subsystem NQN (with an address).")] = None,
    nsid: Annotated[Optional[int], NumberOption("-n", "--nsid", lo=0, hi=0xFFFFFFFF,
                                                help="Namespace ID (0: the controller).")] = None,
    hex_: Annotated[bool, typer.Option("-x", "--hex", help="Print a hex dump.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="With -x: dump the whole structure.")] = False,
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
    from nvmecontrol.cli.render.identify import (controller_to_json, namespace_to_json,
                                                 render_controller_text, render_namespace_text)

    if hex_ and fmt is Format.json:
        raise UsageError("-x cannot be combined with -o json")
    opts = network_options(ctx, target, subnqn, hostnqn=hostnqn, hostid=hostid,
                           hdr_digests=hdr_digests, data_digests=data_digests, timeout=timeout,
                           dhchap_secret=dhchap_secret, dhchap_ctrl_secret=dhchap_ctrl_secret)
    r = run(target, subnqn, nsid, opts)
    if hex_:
        from nvmecontrol.cli.render.logpage import hexdump

        limit = len(r.raw) if verbose else (NAMESPACE_DUMP_LEN if r.nsid else CONTROLLER_DUMP_LEN)
        emit(hexdump(r.raw[:limit]))
    elif r.nsid:
        emit_json(namespace_to_json(r.data)) if fmt is Format.json \
            else emit(render_namespace_text(r.data))
    else:
        emit_json(controller_to_json(r.data)) if fmt is Format.json \
            else emit(render_controller_text(r.data))
