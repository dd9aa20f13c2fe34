"""Helpers for the target tests: connect with the host library, run raw commands."""

from __future__ import annotations

import socket
import time
import uuid

from nvmecontrol.host.association import Association, AssociationParams, connect_association
from nvmecontrol.hostid import HostIdentity
from nvmecontrol.nqn import DISCOVERY_NQN, nqn_from_uuid
from nvmecontrol.transport.tcp import TcpQueuePair
from nvmecontrol.wire import pdu as P
from nvmecontrol.wire.capsule import SQE



def make_host(nqn: str | None = None) -> HostIdentity:
    u = uuid.uuid4()
    return HostIdentity(nqn or nqn_from_uuid(u), u, "test", "test")


def connect(handle, subnqn: str | None = None, host: HostIdentity | None = None,
            **params) -> Association:
    params.setdefault("timeout_s", 10.0)
    return connect_association(handle.address, subnqn or handle.subnqn, host or make_host(),
                               AssociationParams(**params))


def connect_discovery(handle, host: HostIdentity | None = None, **params):
    return connect(handle, DISCOVERY_NQN, host, **params)


def run(queue, sqe: SQE, *, read_len: int = 0, write_data=None, timeout: float = 10.0):
    """Execute without raising on an error status: (cqe, data)."""
    return queue.execute(sqe, "test", read_len=read_len, write_data=write_data, check=False,
                         timeout=timeout)


def sc(cqe) -> tuple[int, int, bool]:
    """(SCT, SC, DNR) of a completion."""
    s = cqe.status
    return (s >> 8) & 7, s & 0xFF, bool(s & 0x4000)


def raw_queue(handle, *, hdgst=False, ddgst=False, queue_size=32) -> TcpQueuePair:
    """A TCP queue pair after ICReq/ICResp, before Connect."""
    addrinfo = [(socket.AF_INET, (handle.host, handle.port))]
    return TcpQueuePair.connect_host(addrinfo, timeout=10.0, queue_size=queue_size,
                                     hdgst=hdgst, ddgst=ddgst)


def read_pdus(sock: socket.socket, decoder: P.PduDecoder, *, timeout: float = 5.0) -> list:
    """PDUs until the peer closes (or the timeout): what a TermReq test expects to see."""
    sock.settimeout(timeout)
    out = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        except OSError:
            break
        if not data:
            break
        decoder.feed(data)
        out.extend(decoder.decode())
    return out


def termreq_of(pdus: list) -> P.TermReq:
    terms = [p for p in pdus if type(p) is P.TermReq]
    assert terms, f"no TermReq in {pdus!r}"
    assert not terms[0].h2c
    return terms[0]


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def alive(assoc) -> bool:
    """The association's first I/O queue still answers (a Flush)."""
    from nvmecontrol.errors import NvmeControlError
    from nvmecontrol.wire import nvm

    try:
        cqe, _data = assoc.io[0].execute(nvm.build_flush(1), "flush", timeout=3.0)
        return cqe.status == 0
    except (NvmeControlError, OSError):
        return False
