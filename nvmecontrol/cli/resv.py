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
from nvmecontrol.cli.options import (DataDigest, DhchapCtrlSecret, DhchapSecret, HdrDigest, HostId,
                                     HostNqn, OutputFormat, TimeoutS)
from nvmecontrol.cli.output import Format, emit, emit_json
from nvmecontrol.errors import UsageError

if TYPE_CHECKING:  # the machinery is imported when the command runs, not for --help
    from nvmecontrol.cli.device import ConnectOptions

ACTIONS = BY_NAME["resv"].actions
# FreeBSD reads the whole status into 4 KiB; a larger registrant list is read
# again at its full size, up to this bound on what a controller makes us hold.
REPORT_LEN = 4096
MAX_REPORT_LEN = 1 << 20
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
    raw: bytes = b""  # report: the Reservation Status data structure
    extended: bool = False


# --- running ----------------------------------------------------------------------

class _IoTarget:
    """Where the command goes: ``io(sqe, what, write_data, read_len) -> data`` and ``nsid``."""

    def __init__(self, nsid: int, io, close):
        self.nsid = nsid
        self.io = io
        self._close = close

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._close()


def open_io_target(target: str, subnqn: str | None, nsid: int | None,
                   opts: ConnectOptions) -> _IoTarget:
    """A namespace to send I/O commands to, from what the user named."""
    from nvmecontrol.backends.names import parse_device_name, parse_session_name

    session = parse_session_name(target)
    dev = None if session is not None else parse_device_name(target)
    if (session is not None or dev is not None) and subnqn is not None:
        raise UsageError(f"{target} is a device; a subsystem NQN goes only with an address")
    if session is not None:
        from nvmecontrol.backends.userspace.session_admin import SessionAdmin

        ns = _one_nsid(target, session[1], nsid)
        s = SessionAdmin(target)
        return _IoTarget(ns, lambda sqe, what, data, n: s.io_command(
            sqe, what, write_data=data, read_len=n)[1], s.close)
    if dev is not None:
        if dev.nsid is None:
            raise UsageError(f"{target}: name a namespace (nvmeXnY): reservations are per "
                             "namespace")
        if nsid is not None:
            raise UsageError(f"{target} names its namespace; -n goes with a session controller "
                             "or an address")
        from nvmecontrol.backends.linux_admin import KernelController

        kc = KernelController(dev)
        return _IoTarget(kc.nsid or dev.nsid, lambda sqe, what, data, n: kc.io_command(
            sqe, what, write_data=data, read_len=n)[1], kc.close)
    if subnqn is None:
        raise UsageError(f"{target}: not a namespace (nvmeXnY, nvmeuNnsM); an address needs "
                         "a subsystem NQN and -n NSID")
    if nsid is None:
        raise UsageError("with an address, -n NSID names the namespace")
    return _one_shot(target, subnqn, nsid, opts)


def _one_nsid(target: str, named: int | None, nsid: int | None) -> int:
    if named is not None and nsid is not None and named != nsid:
        raise UsageError(f"{target} names namespace {named}, -n says {nsid}")
    ns = named if named is not None else nsid
    if ns is None:
        raise UsageError(f"{target}: name a namespace (nvmeuNnsM or -n NSID): reservations "
                         "are per namespace")
    return ns


def _one_shot(target: str, subnqn: str, nsid: int, opts: ConnectOptions) -> _IoTarget:
    """A one-shot association with one I/O queue, as ``identify ADDRESS SUBNQN`` has."""
    import time

    from nvmecontrol.cli.device import ONE_SHOT_KATO_S
    from nvmecontrol.cli.options import dhchap_keys
    from nvmecontrol.cli.refusal import Asked, explained
    from nvmecontrol.errors import CommandFailed
    from nvmecontrol.host.association import AssociationParams, connect_association
    from nvmecontrol.hostid import resolve_host_identity
    from nvmecontrol.nqn import validate_nqn
    from nvmecontrol.transport.address import IO_PORT, parse_address
    from nvmecontrol.wire.status import describe_status, status_is_error

    validate_nqn(subnqn, strict=False, what="subsystem NQN")
    address = parse_address(target, default_port=IO_PORT)
    host = resolve_host_identity(opts.hostnqn, opts.hostid)
    host_key, ctrl_key = dhchap_keys(opts.dhchap_secret, opts.dhchap_ctrl_secret)
    params = AssociationParams(hdgst=opts.hdgst, ddgst=opts.ddgst, kato_s=ONE_SHOT_KATO_S,
                               num_io_queues=1, timeout_s=opts.timeout_s,
                               deadline=time.monotonic() + opts.timeout_s,
                               dhchap_secret=host_key, dhchap_ctrl_secret=ctrl_key)
    with explained(Asked(subnqn, host.hostnqn, str(host.hostid))):
        assoc = connect_association(address, subnqn, host, params)

    def io(sqe, what, data, read_len):
        cqe, out = assoc.io[0].execute(sqe, what, write_data=data, read_len=read_len,
                                       check=False)
        if status_is_error(cqe.status):
            raise CommandFailed(f"{what} failed: {describe_status(cqe.status, context='nvm')}",
                                cqe.status)
        return out

    return _IoTarget(nsid, io, assoc.shutdown)


def run(target: str, subnqn: str | None, nsid: int | None, req: ResvRequest,
        opts: ConnectOptions) -> ResvResult:
    from nvmecontrol.wire import reservations as R

    with open_io_target(target, subnqn, nsid, opts) as t:
        ns = t.nsid
        if req.action == "acquire":
            _send(t, R.build_resv_acquire(ns, req.act, req.rtype, iekey=req.iekey),
                  "Reservation Acquire", R.encode_acquire_data(R.AcquireData(req.crkey, req.prkey)))
        elif req.action == "register":
            _send(t, R.build_resv_register(ns, req.act, iekey=req.iekey, cptpl=req.cptpl),
                  "Reservation Register",
                  R.encode_register_data(R.RegisterData(req.crkey, req.nrkey)))
        elif req.action == "release":
            _send(t, R.build_resv_release(ns, req.act, req.rtype, iekey=req.iekey),
                  "Reservation Release", R.encode_release_data(R.ReleaseData(req.crkey)))
        else:
            return ResvResult("report", ns, _report(t, ns, req.eds), req.eds)
    return ResvResult(req.action, ns)


def _report(t: _IoTarget, nsid: int, eds: bool) -> bytes:
    from nvmecontrol.wire import reservations as R

    length = REPORT_LEN
    while True:
        raw = _send(t, R.build_resv_report(nsid, length, extended=eds), "Reservation Report",
                    read_len=length)
        regctl = R.decode_reservation_status(raw, extended=eds).regctl
        need = R.reservation_status_size(regctl, extended=eds)
        if need <= length or length >= MAX_REPORT_LEN:
            return raw
        length = min(MAX_REPORT_LEN, (need + 3) // 4 * 4)


def _send(t: _IoTarget, sqe, what: str, data: bytes | None = None, read_len: int = 0) -> bytes:
    from nvmecontrol.errors import CommandFailed, Unsupported
    from nvmecontrol.wire.status import (SC_HOST_ID_INCONSISTENT_FORMAT, SC_INVALID_OPCODE,
                                         SCT_GENERIC, decode_status)

    try:
        return t.io(sqe, what, data, read_len)
    except CommandFailed as e:
        st = decode_status(e.status)
        if (st.sct, st.sc) == (SCT_GENERIC, SC_INVALID_OPCODE):
            raise Unsupported(f"{e}: the controller does not support reservations") from None
        if (st.sct, st.sc) == (SCT_GENERIC, SC_HOST_ID_INCONSISTENT_FORMAT):
            raise CommandFailed(f"{e}: NVMe over Fabrics hosts have 128-bit host identifiers, "
                                "report them with -e", e.status) from None
        raise


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
    hostnqn: HostNqn = None,
    hostid: HostId = None,
    hdr_digests: HdrDigest = False,
    data_digests: DataDigest = False,
    fmt: OutputFormat = Format.text,
    timeout: TimeoutS = 30.0,
    dhchap_secret: DhchapSecret = None,
    dhchap_ctrl_secret: DhchapCtrlSecret = None,
):
    from nvmecontrol.cli.device import ConnectOptions

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
    from nvmecontrol.wire.reservations import decode_reservation_status

    if hex_:
        from nvmecontrol.cli.render.logpage import hexdump

        emit(hexdump(trimmed_for_hex(r.raw, verbose=verbose)))
        return
    st = decode_reservation_status(r.raw, extended=r.extended)
    if fmt is Format.json:
        emit_json(report_to_json(st, nsid=r.nsid, extended=r.extended))
    else:
        emit(render_report_text(st, extended=r.extended))
