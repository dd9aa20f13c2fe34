"""Handing an association to a session process, and that process's life.

``connect`` builds and checks the association in the CLI process, then
starts ``python -m nvmecontrol.backends.userspace.daemon``, passing the
connected sockets (``pass_fds``) and, on stdin, the state of each queue
pair (``HostQueuePair.handoff_state``) with the controller data: the same
idea as FreeBSD's handoff of qpairs to its kernel.  The new process forks
once more (so it is nobody's child and survives the CLI), starts the
session, and writes one JSON line on its stdout when it serves (or why it
cannot); after that its output goes to the session log.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from nvmecontrol.backends.model import ConnectParams
from nvmecontrol.backends.userspace import attach as nbd_attach
from nvmecontrol.backends.userspace.control import SessionControl
from nvmecontrol.backends.userspace.session import Session, SessionPaths, export_name
from nvmecontrol.errors import DeviceError, NvmeControlError
from nvmecontrol.host.association import Association
from nvmecontrol.host.queue import HostQueue
from nvmecontrol.hostid import HostIdentity
from nvmecontrol.transport.address import Address, resolve
from nvmecontrol.transport.jsonlines import error_reply, raise_error
from nvmecontrol.transport.tcp import TcpQueuePair
from nvmecontrol.wire.fabrics import CAP
from nvmecontrol.wire.identify import decode_identify_controller
from nvmecontrol.wire.qpair import HostQueuePair

READY_TIMEOUT_S = 60.0

log = logging.getLogger("nvmecontrol.session")


# --- the CLI's side --------------------------------------------------------------

def handoff_payload(name: str, rundir: Path, assoc: Association, params: ConnectParams, *,
                    nbd_tcp: str | None, attach: bool) -> tuple[dict, list[int]]:
    queues = [assoc.admin] + list(assoc.io)
    payload = {
        "name": name, "rundir": str(rundir), "params": params.to_json(),
        "hostnqn": assoc.host.hostnqn, "hostid": str(assoc.host.hostid),
        "cntlid": assoc.cntlid, "cap": assoc.cap.encode() if assoc.cap else 0,
        "cdata": assoc.cdata_raw.hex(), "io_queue_size": assoc.io_queue_size,
        "sq_flow_control": assoc.sq_flow_control, "nbd_tcp": nbd_tcp, "attach": attach,
        "queues": [{"fd": q.driver.sock.fileno(), "qid": q.qid, "qp": q.qp.handoff_state()}
                   for q in queues],
    }
    return payload, [q["fd"] for q in payload["queues"]]


def spawn(name: str, rundir: Path, assoc: Association, params: ConnectParams, *,
          nbd_tcp: str | None = None, attach: bool = True) -> dict:
    """Start the session holding ``assoc``; returns what it reported when ready.

    ``assoc`` is closed here either way (its sockets live on in the session).
    """
    try:
        payload, fds = handoff_payload(name, rundir, assoc, params, nbd_tcp=nbd_tcp,
                                       attach=attach)
        # A session of its own from the start: a Ctrl-C at the terminal goes
        # to the CLI, never to a session still starting.
        proc = subprocess.Popen(
            [sys.executable, "-m", "nvmecontrol.backends.userspace.daemon"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            pass_fds=fds, close_fds=True, start_new_session=True)
    finally:
        assoc.close()  # our copies only: the child holds the connections now
    proc.stdin.write(json.dumps(payload).encode())
    proc.stdin.close()
    line = _read_line(proc.stdout, READY_TIMEOUT_S)
    proc.stdout.close()
    proc.wait()
    if not line:
        raise DeviceError(f"session {name} did not start (see {SessionPaths(rundir, name).log})")
    ready = json.loads(line)
    if not ready.get("ok"):
        raise_error(ready, "session failed")
    return ready


def _read_line(f, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    data = b""
    fd = f.fileno()
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return b""
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    return data


# --- the session process -----------------------------------------------------------

def _adopt(payload: dict) -> tuple[Association, ConnectParams, HostIdentity]:
    params = ConnectParams.from_json(payload["params"])
    host = HostIdentity(payload["hostnqn"], uuid.UUID(payload["hostid"]), "handoff", "handoff")
    address = Address(params.traddr, int(params.trsvcid), params.address_text)
    queues = []
    for q in payload["queues"]:
        sock = socket.socket(fileno=q["fd"])
        tq = TcpQueuePair(sock, HostQueuePair.adopt(q["qp"]), timeout=params.timeout_s)
        queues.append(HostQueue(tq, qid=q["qid"], timeout=params.timeout_s))
    cdata_raw = bytes.fromhex(payload["cdata"])
    assoc = Association(address, params.subnqn, host, params.association_params(), queues[0],
                        cntlid=payload["cntlid"], cap=CAP.decode(payload["cap"]),
                        cdata=decode_identify_controller(cdata_raw), cdata_raw=cdata_raw,
                        io=queues[1:], io_queue_size=payload["io_queue_size"],
                        sq_flow_control=payload["sq_flow_control"])
    try:
        assoc.addrinfo = resolve(address)
    except NvmeControlError:
        assoc.addrinfo = []
    return assoc, params, host


def _say(fd: int, obj: dict) -> None:
    os.write(fd, (json.dumps(obj) + "\n").encode())


def _become_daemon(log_path: Path) -> int:
    """Fork away from the CLI; returns the fd of the readiness pipe (old stdout)."""
    if os.fork():
        os._exit(0)
    os.setsid()
    ready_fd = os.dup(1)
    log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    logfd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    nullfd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(nullfd, 0)
    os.dup2(logfd, 1)
    os.dup2(logfd, 2)
    os.close(nullfd)
    os.close(logfd)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    return ready_fd


def main() -> int:
    payload = json.loads(sys.stdin.buffer.read())
    name, rundir = payload["name"], Path(payload["rundir"])
    paths = SessionPaths(rundir, name)
    ready_fd = _become_daemon(paths.log)
    log.info("session %s starting (pid %d)", name, os.getpid())
    control = None
    session = None
    try:
        assoc, params, host = _adopt(payload)
        session = Session(name, paths, params, host, assoc, nbd_tcp=payload.get("nbd_tcp"))
        session.start()
        control = SessionControl(session, str(paths.control))
        control.start()
        warnings = []
        if payload.get("attach") and nbd_attach.kernel_has_nbd():
            for nsid in sorted(session.namespaces):
                try:
                    session.attached[nsid] = nbd_attach.attach(str(paths.nbd), export_name(nsid))
                except NvmeControlError as e:
                    warnings.append(f"namespace {nsid}: {e}")
            session.write_state()
    except BaseException as e:  # the CLI reports it; nothing else will
        log.exception("session %s failed to start", name)
        # A socket or file of the session that could not be made: EX_OSERR, not a bug.
        cause = DeviceError(str(e)) if isinstance(e, OSError) else e
        try:
            _say(ready_fd, error_reply(cause))
        except BrokenPipeError:
            pass  # the connect was interrupted: nobody to tell
        _cleanup(session, control, paths)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: session.request_stop())
    signal.signal(signal.SIGINT, lambda *_: session.request_stop())
    try:
        _say(ready_fd, {"ok": True, "info": session.info().to_json(), "warnings": warnings})
    except BrokenPipeError:
        # Nobody reads the readiness line: the connect that started us was
        # interrupted (Ctrl-C).  Its user was told nothing, so nothing stays.
        log.warning("session %s: the connect that started it was interrupted; ending it", name)
        session.request_stop()
    finally:
        os.close(ready_fd)
    try:
        session.run(before_shutdown=lambda: _detach(session))
    finally:
        _cleanup(session, control, paths)
    log.info("session %s ended", name)
    return 0


def _detach(session) -> None:
    """Detach /dev/nbdX first, so the kernel stops sending before the queues go."""
    for nsid, device in list(session.attached.items()):
        nbd_attach.detach(device)
        del session.attached[nsid]


def _cleanup(session, control, paths: SessionPaths) -> None:
    if session is not None:
        _detach(session)
    if control is not None:
        control.stop()
    paths.remove()


if __name__ == "__main__":
    sys.exit(main())
