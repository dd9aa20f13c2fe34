"""``nvmecontrol discover``: read a discovery controller's log page.

FreeBSD syntax (``discover [-v] [-t tcp] [-q HostNQN] address``), default
port 8009 (NVMe-oF 7.4.9.3), one-shot association with KATO 0 and no
digests (as FreeBSD), the FreeBSD text format or JSON.  ``--walk`` also
follows referrals (bounded, loop-free), which FreeBSD does not.  Settings the
command line leaves out (host NQN and ID, DH-HMAC-CHAP secrets) come from
nvme-cli's config.json port of the discovery subsystem at that address, as
``connect`` takes them (``fabrics_config``).
The options and their help: ``cli/signatures/discover.py``.
"""

from __future__ import annotations

from nvmecontrol.cli.option_values import DEFAULTS as D  # the option table's defaults
from nvmecontrol.cli.option_values import check_dhchap, check_transport
from nvmecontrol.cli.output import Format, emit, emit_json, warn

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:  # the machinery is imported when the command runs, not for --help
    from nvmecontrol.api.discovery import Discovery


def run(address_text: str, *, hostnqn=None, hostid=None, verbose=False, walk=False,
        timeout_s=D.timeout, dhchap_secret=None, dhchap_ctrl_secret=None) -> Discovery:
    from nvmecontrol.api.discovery import read_discovery

    check_dhchap(dhchap_secret, dhchap_ctrl_secret)
    return read_discovery(address_text, hostnqn=hostnqn, hostid=hostid, identify=verbose,
                          walk=walk, timeout=timeout_s, dhchap_secret=dhchap_secret,
                          dhchap_ctrl_secret=dhchap_ctrl_secret, warn=warn)


def remember_nqns(address_text: str, entries) -> None:
    """Cache the subsystem NQNs for ``connect ADDRESS <TAB>``.

    Under the address as typed, and under each entry's own traddr:trsvcid,
    because ``connect`` is given the I/O controller's address, which is
    usually not the discovery controller's (port 8009 vs 4420).
    """
    from nvmecontrol.api.discovery import is_referral, subsystems_by_address
    from nvmecontrol.cli import discovery_cache

    discovery_cache.save(address_text, (e.subnqn for e in entries if not is_referral(e)))
    for text, nqns in subsystems_by_address(entries).items():
        if text != address_text:
            discovery_cache.save(text, nqns)


def render_text(r: Discovery) -> str:
    from nvmecontrol.cli.render.discovery import render_discovery_text

    parts = []
    if r.controller is not None:  # -v: Identify's renderer (and its dataclasses) only then
        from nvmecontrol.cli.render.identify import render_controller_text

        parts.append(render_controller_text(r.controller) + "\n")
    parts.append(render_discovery_text(r.log.header, r.log.entries))
    return "".join(parts)


def render_json(r: Discovery) -> dict:
    from nvmecontrol.cli.render.discovery import discovery_to_json

    out = discovery_to_json(r.log.header, r.log.entries)
    if r.controller is not None:
        from nvmecontrol.cli.render.identify import controller_to_json

        out["controller"] = controller_to_json(r.controller)
    if r.visited is not None:
        out["visited"] = r.visited
        out["errors"] = r.errors
    return out


def execute(ctx, *, address: str | None, verbose: bool, transport: str, hostnqn: str | None,
            hostid: str | None, walk: bool, fmt: Format, timeout: float,
            dhchap_secret: str | None, dhchap_ctrl_secret: str | None):
    """The command, from the typer signature or the fast path (``ctx``: the options given)."""

    check_transport(transport)
    if address is None:
        return discover_configured(hostnqn=hostnqn, hostid=hostid, verbose=verbose, walk=walk,
                                   timeout_s=timeout, dhchap_secret=dhchap_secret,
                                   dhchap_ctrl_secret=dhchap_ctrl_secret, fmt=fmt)
    from nvmecontrol.cli import fabrics_config

    given = fabrics_config.merged(ctx, fabrics_config.port_for_target(address, None, hostnqn),
                                  dict(hostnqn=hostnqn, hostid=hostid, dhchap_secret=dhchap_secret,
                                       dhchap_ctrl_secret=dhchap_ctrl_secret))
    r = run(address, verbose=verbose, walk=walk, timeout_s=timeout, **given)
    remember_nqns(address, r.log.entries)
    for e in r.errors or []:
        warn(f"referral skipped: {e}")
    if fmt is Format.json:
        emit_json(render_json(r))
    else:
        emit(render_text(r))


def discover_configured(*, hostnqn, hostid, dhchap_secret, dhchap_ctrl_secret, fmt: Format,
                        **options) -> int:
    """Every discovery controller of discovery.conf, as nvme-cli's discover with no address.

    The command line's host NQN, host ID and secret win over a line's.  One
    controller failing does not stop the others; the status is the first
    failure's.
    """
    from nvmecontrol.cli import discovery_conf
    from nvmecontrol.cli.exitcodes import exit_code_for
    from nvmecontrol.errors import NvmeControlError

    entries, warnings = discovery_conf.load()
    for w in warnings:
        warn(w)
    if not entries:
        raise discovery_conf.missing_address("discover")
    texts, logs, status = [], [], 0
    for e in entries:
        try:
            r = run(e.address, hostnqn=e.hostnqn if hostnqn is None else hostnqn,
                    hostid=e.hostid if hostid is None else hostid,
                    dhchap_secret=e.dhchap_secret if dhchap_secret is None else dhchap_secret,
                    dhchap_ctrl_secret=dhchap_ctrl_secret, **options)
        except NvmeControlError as err:
            warn(f"{e.address}: {err}")
            status = status or exit_code_for(err)
            continue
        remember_nqns(e.address, r.log.entries)
        for referral_error in r.errors or []:
            warn(f"referral skipped: {referral_error}")
        logs.append({"address": e.address, **render_json(r)})
        texts.append(render_text(r))
    if fmt is Format.json:
        emit_json({"discovery_controllers": logs})
    elif texts:
        emit("\n".join(texts))
    return status
