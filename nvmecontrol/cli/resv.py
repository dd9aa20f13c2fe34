"""``nvmecontrol resv``: the reservation commands (NVM Command Set 1.0, 3.2.4-3.2.7).

FreeBSD's syntax, the action first::

    resv acquire  -c crkey [-p prkey] -t rtype [-a racqa] namespace-id
    resv register [-c crkey] -k nrkey [-r rrega] [-i] [-p cptpl] namespace-id
    resv release  -c crkey -t rtype [-a rrela] namespace-id
    resv report   [-e] [-x [-v]] namespace-id

FreeBSD gives each action its own options, so ``-p`` is the preempt key of
``acquire`` and the persist-through-power-loss change of ``register``, and
``-a`` the action field of ``acquire`` and ``release``; the long spellings
``--prkey``/``--cptpl`` and ``--racqa``/``--rrela`` say which one is meant.
An option that the action has no use for is an error, not ignored.

The namespace is a kernel namespace node (``nvmeXnY``, sent with the I/O
passthrough ioctl), a session's namespace (``nvmeuNnsM``, sent on the
session's first I/O queue), or, beyond FreeBSD, an address with a
subsystem NQN and ``-n NSID`` (a one-shot association with one I/O queue;
registrations belong to the host identifier, so they outlive it).
Success prints nothing (``report`` prints the status); failures are one line
with the decoded status, EX_IOERR (74), as FreeBSD's ``errx(EX_IOERR)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from nvmecontrol.cli.commands import BY_NAME
from nvmecontrol.cli.numbers import NumberOption
from nvmecontrol.cli.options import DEFAULTS as D  # the option table's defaults
from nvmecontrol.cli.options import (DataDigest, DhchapCtrlSecret, DhchapSecret, HdrDigest, HostId,
                                     HostNqn, OutputFormat, TimeoutS)
from nvmecontrol.cli.output import Format, emit, emit_json
from nvmecontrol.errors import UsageError

if TYPE_CHECKING:  # the machinery is imported when the command runs, not for --help
    from nvmecontrol.api.admin import ConnectOptions
    from nvmecontrol.api.reservations import ReservationReport

ACTIONS = BY_NAME["resv"].actions
U64 = (1 << 64) - 1

# Which options each action takes (by parameter name).
_TAKES = {
    "acquire": {"crkey", "prkey", "rtype", "action"},
    "register": {"crkey", "nrkey", "rrega", "iekey", "cptpl"},
    "release": {"crkey", "rtype", "action"},
    "report": {"hex_", "verbose", "eds"},
}
_SPELLING = {"crkey": "-c/--crkey", "nrkey": "-k/--nrkey", "prkey": "-p/--prkey",
             "cptpl": "-p/--cptpl", "rtype": "-t/--rtype", "action": "-a",
             "rrega": "-r/--rrega", "iekey": "-i/--iekey", "hex_": "-x/--hex",
             "verbose": "-v/--verbose", "eds": "-e/--eds"}


@dataclass(slots=True)
class ResvRequest:
    """One reservation command as the user asked for it."""

    action: str
    crkey: int = 0
    nrkey: int = 0
    prkey: int = 0
    rtype: int = 0
    act: int = 0  # RACQA, RREGA or RRELA
    iekey: bool = False
    cptpl: int = 0
    eds: bool = False


@dataclass(slots=True)
class ResvResult:
    action: str
    nsid: int
    report: ReservationReport | None = None  # report: the Reservation Status, raw and decoded


# --- running ----------------------------------------------------------------------

def run(target: str, subnqn: str | None, nsid: int | None, req: ResvRequest,
        opts: ConnectOptions) -> ResvResult:
    from nvmecontrol.cli.device import open_namespace

    with open_namespace(target, subnqn, nsid, opts) as ns:
        if req.action == "acquire":
            ns.acquire(req.crkey, prkey=req.prkey, rtype=req.rtype, racqa=req.act,
                       iekey=req.iekey)
        elif req.action == "register":
            ns.register(crkey=req.crkey, nrkey=req.nrkey, rrega=req.act, iekey=req.iekey,
                        cptpl=req.cptpl)
        elif req.action == "release":
            ns.release(req.crkey, rtype=req.rtype, rrela=req.act, iekey=req.iekey)
        else:
            return ResvResult("report", ns.nsid, ns.report(eds=req.eds))
    return ResvResult(req.action, ns.nsid)


# --- the command ------------------------------------------------------------------------

def _check_options(action: str, given: dict) -> None:
    takes = _TAKES[action]
    for name, value in given.items():
        if value not in (None, False) and name not in takes:
            raise UsageError(f"resv {action} takes no {_SPELLING[name]}")


def command(
    action: Annotated[str, typer.Argument(metavar="acquire|register|release|report",
                                          help="The reservation command.")],
    target: Annotated[str, typer.Argument(metavar="NAMESPACE|ADDRESS", help="nvmeXnY, nvmeuNnsM, or host:port of a controller (with SUBNQN and -n).")],
    subnqn: Annotated[Optional[str], typer.Argument(metavar="[SUBNQN]", help="Subsystem NQN (with an address).")] = None,
    crkey: Annotated[Optional[int], NumberOption("-c", "--crkey", lo=0, hi=U64, help="Current Reservation Key (acquire, register, release).")] = None,
    nrkey: Annotated[Optional[int], NumberOption("-k", "--nrkey", lo=0, hi=U64, help="New Reservation Key (register).")] = None,
    p: Annotated[Optional[int], NumberOption("-p", lo=0, hi=U64, metavar="KEY|STATE", help="acquire: Preempt Reservation Key; register: Change Persist Through Power Loss State.")] = None,
    prkey: Annotated[Optional[int], NumberOption("--prkey", lo=0, hi=U64, help="Preempt Reservation Key (acquire).")] = None,
    cptpl: Annotated[Optional[int], NumberOption("--cptpl", lo=0, hi=3, help="Change Persist Through Power Loss State (register: 0 no change, 2 clear, 3 set).")] = None,
    rtype: Annotated[Optional[int], NumberOption("-t", "--rtype", lo=0, hi=255, help="Reservation Type (acquire, release: 1-6).")] = None,
    act: Annotated[Optional[int], NumberOption("-a", "--racqa", "--rrela", lo=0, hi=7, help="acquire: 0 acquire, 1 preempt, 2 preempt and abort; release: 0 release, 1 clear.")] = None,
    rrega: Annotated[Optional[int], NumberOption("-r", "--rrega", lo=0, hi=7, help="Register Action (register: 0 register, 1 unregister, 2 replace).")] = None,
    iekey: Annotated[bool, typer.Option("-i", "--iekey", help="Ignore Existing Key (register).")] = False,
    eds: Annotated[bool, typer.Option("-e", "--eds", help="Extended Data Structure: 128-bit host identifiers (report; NVMe over Fabrics needs it).")] = False,
    hex_: Annotated[bool, typer.Option("-x", "--hex", help="Print the reservation status in hex (report).")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="With -x: the whole buffer (report).")] = False,
    nsid: Annotated[Optional[int], NumberOption("-n", "--nsid", lo=1, hi=0xFFFFFFFE, help="Namespace ID (with an address or a session controller).")] = None,
    hostnqn: HostNqn = D.hostnqn,
    hostid: HostId = D.hostid,
    hdr_digests: HdrDigest = D.hdr_digests,
    data_digests: DataDigest = D.data_digests,
    fmt: OutputFormat = Format.text,
    timeout: TimeoutS = D.timeout,
    dhchap_secret: DhchapSecret = D.dhchap_secret,
    dhchap_ctrl_secret: DhchapCtrlSecret = D.dhchap_ctrl_secret,
):
    from nvmecontrol.api.admin import ConnectOptions

    if action not in ACTIONS:
        raise UsageError(f"unknown resv command {action!r} (acquire, register, release, report)")
    if p is not None and (prkey is not None or cptpl is not None):
        raise UsageError("-p is --prkey or --cptpl: give it once")
    if action == "acquire" and p is not None:
        prkey, p = p, None
    elif action == "register" and p is not None:
        cptpl, p = p, None
    _check_options(action, {"crkey": crkey, "nrkey": nrkey, "prkey": prkey, "cptpl": cptpl,
                            "rtype": rtype, "action": act, "rrega": rrega, "iekey": iekey,
                            "hex_": hex_, "verbose": verbose, "eds": eds})
    if p is not None:
        raise UsageError(f"resv {action} takes no -p")
    if cptpl is not None and cptpl not in (0, 2, 3):
        raise UsageError(f"CPTPL {cptpl}: 0 (no change), 2 (clear) or 3 (set); 1 is reserved")
    if hex_ and fmt is Format.json:
        raise UsageError("-x cannot be combined with -o json")
    req = ResvRequest(action, crkey=crkey or 0, nrkey=nrkey or 0, prkey=prkey or 0,
                      rtype=rtype or 0, act=(rrega if action == "register" else act) or 0,
                      iekey=iekey, cptpl=cptpl or 0, eds=eds)
    opts = ConnectOptions(hostnqn, hostid, hdr_digests, data_digests, timeout,
                          dhchap_secret=dhchap_secret, dhchap_ctrl_secret=dhchap_ctrl_secret)
    r = run(target, subnqn, nsid, req, opts)
    if r.action != "report":
        if fmt is Format.json:
            emit_json({"action": r.action, "nsid": r.nsid, "status": "success"})
        return
    from nvmecontrol.cli.render.resv import render_report_text, report_to_json, trimmed_for_hex

    report = r.report
    if hex_:
        from nvmecontrol.cli.render.logpage import hexdump

        emit(hexdump(trimmed_for_hex(report.raw, verbose=verbose)))
        return
    if fmt is Format.json:
        emit_json(report_to_json(report.status, nsid=r.nsid, extended=report.extended))
    else:
        emit(render_report_text(report.status, extended=report.extended))
