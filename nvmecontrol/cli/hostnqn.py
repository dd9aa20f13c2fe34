"""``nvmecontrol hostnqn``: show where the host NQN and ID come from, or make new ones.

Like nvme-cli's ``show-hostnqn``/``gen-hostnqn``, plus the source of each
value, because "which host NQN am I using?" is a question users keep asking.
The options and their help: ``cli/signatures/hostnqn.py``.
"""

from __future__ import annotations

from nvmecontrol.cli.output import Format, emit, emit_json, warn


def execute(*, generate: bool, write: bool, force: bool, verbose: bool, hostnqn: str | None,
            hostid: str | None, fmt: Format):
    """The command, from the typer signature or the fast path."""

    from nvmecontrol.api.hosts import generate_hostnqn, hostid_of, resolve_host, write_host_files

    if generate:
        nqn = generate_hostnqn()
        if write:
            write_host_files(nqn, hostid_of(nqn), overwrite=force)
        if fmt is Format.json:
            emit_json({"hostnqn": nqn, "hostid": str(hostid_of(nqn)), "written": write})
        else:
            emit(nqn)
        return
    ident = resolve_host(hostnqn, hostid)
    for w in ident.warnings:
        warn(w)
    if verbose and ident.mismatch and fmt is not Format.json:
        warn(ident.mismatch)
    if fmt is Format.json:
        emit_json({"hostnqn": ident.hostnqn, "hostid": str(ident.hostid),
                   "hostnqn_source": ident.hostnqn_source, "hostid_source": ident.hostid_source,
                   "warnings": list(ident.warnings), "mismatch": ident.mismatch})
    elif verbose:
        emit(f"Host NQN: {ident.hostnqn} (from {ident.hostnqn_source})\n"
             f"Host ID:  {ident.hostid} (from {ident.hostid_source})")
    else:
        emit(ident.hostnqn)
