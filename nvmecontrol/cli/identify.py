"""``nvmecontrol identify``: Identify Controller / Namespace data.

FreeBSD syntax (``identify [-v] [-x] [-n nsid] <device-id | namespace-id>``),
plus a network form ``identify address subnqn`` that asks over a one-shot
userspace association.  ``-x`` dumps hex (``-v`` the whole 4 KiB).
The options and their help: ``cli/signatures/identify.py``.
"""

from __future__ import annotations

from collections import namedtuple

from nvmecontrol.cli.output import Format, emit, emit_json
from nvmecontrol.errors import UsageError

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:  # the machinery is imported when the command runs, not for --help
    from nvmecontrol.api.admin import ConnectOptions


# Without -v, hex dumps stop where the reserved/vendor areas begin, as
# FreeBSD does: controller data before the vendor specific area (3072),
# namespace data after the 64 LBA formats (384).
CONTROLLER_DUMP_LEN = 3072
NAMESPACE_DUMP_LEN = 384


# The structure as read (raw, for -x), its NSID (0 = controller) and the
# IdentifyController or IdentifyNamespace decoded once, here.  A namedtuple:
# a dataclass would import dataclasses (inspect, ast, dis: about a bare
# interpreter start) for one record.
IdentifyResult = namedtuple("IdentifyResult", "raw nsid data")


def run(target: str, subnqn: str | None, nsid: int | None, opts: ConnectOptions) -> IdentifyResult:
    from nvmecontrol.cli.device import open_controller

    with open_controller(target, subnqn, opts) as ctrl:
        if nsid is None:
            nsid = ctrl.nsid or 0
        ident = ctrl.identify_namespace(nsid) if nsid else ctrl.identify_controller()
        return IdentifyResult(ident.raw, nsid, ident.data)


def execute(ctx, *, target: str, subnqn: str | None, nsid: int | None, hex_: bool,
            verbose: bool, hostnqn: str | None, hostid: str | None, hdr_digests: bool,
            data_digests: bool, fmt: Format, timeout: float, dhchap_secret: str | None,
            dhchap_ctrl_secret: str | None):
    """The command, from the typer signature or the fast path (``ctx``: the options given)."""

    from nvmecontrol.cli.fabrics_config import network_options

    if hex_ and fmt is Format.json:
        raise UsageError("-x cannot be combined with -o json")
    opts = network_options(ctx, target, subnqn, hostnqn=hostnqn, hostid=hostid,
                           hdr_digests=hdr_digests, data_digests=data_digests, timeout=timeout,
                           dhchap_secret=dhchap_secret, dhchap_ctrl_secret=dhchap_ctrl_secret)
    r = run(target, subnqn, nsid, opts)
    # The renderers once there is something to render (a failing command starts faster).
    from nvmecontrol.cli.render.identify import (controller_to_json, namespace_to_json,
                                                 render_controller_text, render_namespace_text)

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
