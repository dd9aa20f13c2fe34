"""Reservations on a namespace: Register, Acquire, Release, Report (NVM Command Set 1.0, 3.2.4-3.2.7).

What ``nvmecontrol resv`` sends, as calls, on every kind of controller:

* a kernel namespace node (``nvme0n1``, ``/dev/`` in front or not): the I/O
  passthrough ioctl;
* a userspace session's namespace (``nvmeu0ns1``, or ``nvmeu0`` with
  ``nsid``): the session's first I/O queue, through its control socket;
* an address with a subsystem NQN and ``nsid``: a one-shot association
  with one I/O queue (registrations belong to the host identifier, so they
  outlive it).

A command that completes with an error status raises
:class:`~nvmecontrol.errors.CommandFailed` naming it; Invalid Command Opcode
is :class:`~nvmecontrol.errors.Unsupported` (no reservations there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from nvmecontrol.api.admin import ConnectOptions, ExplainRefusal, connect_one_shot, target_kind
from nvmecontrol.errors import CommandFailed, Unsupported, UsageError
from nvmecontrol.wire import reservations as R
from nvmecontrol.wire.status import (SC_HOST_ID_INCONSISTENT_FORMAT, SC_INVALID_OPCODE,
                                     SCT_GENERIC, decode_status)

if TYPE_CHECKING:
    from nvmecontrol.wire.capsule import SQE

__all__ = ["Reservations", "ReservationReport", "open_reservations", "REPORT_LEN",
           "MAX_REPORT_LEN"]

# FreeBSD reads the whole status into 4 KiB; a larger registrant list is read
# again at its full size, up to this bound on what a controller makes us hold.
REPORT_LEN = 4096
MAX_REPORT_LEN = 1 << 20

# (sqe, what, data to write, bytes to read) -> the data read
_IoCommand = Callable[["SQE", str, "bytes | None", int], bytes]


@dataclass(frozen=True, slots=True)
class ReservationReport:
    """The Reservation Status data structure as read (``raw``) and decoded once (``status``).

    ``extended``: 128-bit host identifiers (EDS), which NVMe over Fabrics
    hosts have.
    """

    raw: bytes
    extended: bool
    status: R.ReservationStatus


class Reservations:
    """The reservation commands of namespace ``nsid``; a context manager.

    Keys are 64-bit integers; ``rtype`` is the Reservation Type (1-6,
    :class:`~nvmecontrol.wire.reservations.ResvType`).
    """

    def __init__(self, nsid: int, io: _IoCommand, close: Callable[[], None]):
        self.nsid = nsid
        self._io = io
        self._close = close

    def acquire(self, crkey: int, *, rtype: int, prkey: int = 0, racqa: int = 0,
                iekey: bool = False) -> None:
        """Reservation Acquire: ``racqa`` 0 acquire, 1 preempt, 2 preempt and abort."""
        self._send(R.build_resv_acquire(self.nsid, racqa, rtype, iekey=iekey),
                   "Reservation Acquire", R.encode_acquire_data(R.AcquireData(crkey, prkey)))

    def register(self, *, nrkey: int, crkey: int = 0, rrega: int = 0, iekey: bool = False,
                 cptpl: int = 0) -> None:
        """Reservation Register: ``rrega`` 0 register, 1 unregister, 2 replace; ``cptpl`` 0
        leaves Persist Through Power Loss alone, 2 clears it, 3 sets it."""
        self._send(R.build_resv_register(self.nsid, rrega, iekey=iekey, cptpl=cptpl),
                   "Reservation Register", R.encode_register_data(R.RegisterData(crkey, nrkey)))

    def release(self, crkey: int, *, rtype: int, rrela: int = 0, iekey: bool = False) -> None:
        """Reservation Release: ``rrela`` 0 release, 1 clear."""
        self._send(R.build_resv_release(self.nsid, rrela, rtype, iekey=iekey),
                   "Reservation Release", R.encode_release_data(R.ReleaseData(crkey)))

    def report(self, *, eds: bool = False) -> ReservationReport:
        """Reservation Report: the whole registrant list (read again at its size when
        4 KiB does not hold it, up to :data:`MAX_REPORT_LEN`)."""
        length = REPORT_LEN
        while True:
            raw = self._send(R.build_resv_report(self.nsid, length, extended=eds),
                             "Reservation Report", read_len=length)
            status = R.decode_reservation_status(raw, extended=eds)
            need = R.reservation_status_size(status.regctl, extended=eds)
            if need <= length or length >= MAX_REPORT_LEN:
                return ReservationReport(raw, eds, status)
            length = min(MAX_REPORT_LEN, (need + 3) // 4 * 4)

    def _send(self, sqe: SQE, what: str, data: bytes | None = None, read_len: int = 0) -> bytes:
        try:
            return self._io(sqe, what, data, read_len)
        except CommandFailed as e:
            st = decode_status(e.status)
            if (st.sct, st.sc) == (SCT_GENERIC, SC_INVALID_OPCODE):
                raise Unsupported(f"{e}: the controller does not support reservations") from None
            if (st.sct, st.sc) == (SCT_GENERIC, SC_HOST_ID_INCONSISTENT_FORMAT):
                raise CommandFailed(f"{e}: NVMe over Fabrics hosts have 128-bit host "
                                    "identifiers, report them with -e", e.status) from None
            raise

    def close(self) -> None:
        """Let go of the namespace: a one-shot association is shut down."""
        self._close()

    def __enter__(self) -> Reservations:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_reservations(target: str, subnqn: str | None = None, nsid: int | None = None,
                      options: ConnectOptions | None = None, *,
                      explain_refusal: ExplainRefusal | None = None) -> Reservations:
    """The namespace ``target`` names (with ``subnqn`` and ``nsid`` for an address).

    ``nsid`` may name the namespace of a session controller (``nvmeu0``);
    a kernel namespace node names its own.  What does not name one namespace
    is a UsageError.
    """
    kind = target_kind(target)
    if kind != "address" and subnqn is not None:
        raise UsageError(f"{target} is a device; a subsystem NQN goes only with an address")
    if kind == "session":
        from nvmecontrol.backends.names import parse_session_name
        from nvmecontrol.backends.userspace.session_admin import SessionAdmin

        ns = _one_nsid(target, parse_session_name(target)[1], nsid)
        s = SessionAdmin(target)
        return Reservations(ns, lambda sqe, what, data, n: s.io_command(
            sqe, what, write_data=data, read_len=n)[1], s.close)
    if kind == "device":
        from nvmecontrol.backends.linux_io import open_device
        from nvmecontrol.backends.names import parse_device_name

        dev = parse_device_name(target)
        if dev.nsid is None:
            raise UsageError(f"{target}: name a namespace (nvmeXnY): reservations are per "
                             "namespace")
        if nsid is not None:
            raise UsageError(f"{target} names its namespace; -n goes with a session controller "
                             "or an address")
        kc = open_device(dev)
        return Reservations(kc.nsid or dev.nsid, lambda sqe, what, data, n: kc.io_command(
            sqe, what, write_data=data, read_len=n)[1], kc.close)
    if subnqn is None:
        raise UsageError(f"{target}: not a namespace (nvmeXnY, nvmeuNnsM); an address needs "
                         "a subsystem NQN and -n NSID")
    if nsid is None:
        raise UsageError("with an address, -n NSID names the namespace")
    return _one_shot(target, subnqn, nsid, options or ConnectOptions(), explain_refusal)


def _one_nsid(target: str, named: int | None, nsid: int | None) -> int:
    if named is not None and nsid is not None and named != nsid:
        raise UsageError(f"{target} names namespace {named}, -n says {nsid}")
    ns = named if named is not None else nsid
    if ns is None:
        raise UsageError(f"{target}: name a namespace (nvmeuNnsM or -n NSID): reservations "
                         "are per namespace")
    return ns


def _one_shot(target: str, subnqn: str, nsid: int, options: ConnectOptions,
              explain_refusal: ExplainRefusal | None) -> Reservations:
    """A one-shot association with one I/O queue, as ``identify ADDRESS SUBNQN`` has."""
    from nvmecontrol.transport.address import IO_PORT
    from nvmecontrol.wire.status import describe_status, status_is_error

    assoc = connect_one_shot(target, subnqn, options, default_port=IO_PORT, num_io_queues=1,
                             explain_refusal=explain_refusal)

    def io(sqe, what, data, read_len):
        cqe, out = assoc.io[0].execute(sqe, what, write_data=data, read_len=read_len,
                                       check=False)
        if status_is_error(cqe.status):
            raise CommandFailed(f"{what} failed: {describe_status(cqe.status, context='nvm')}",
                                cqe.status)
        return out

    return Reservations(nsid, io, assoc.shutdown)
