"""The nvlists of ``NVMF_HANDOFF_HOST`` / ``NVMF_RECONNECT_HOST`` and ``NVMF_RECONNECT_PARAMS``.

FreeBSD's kernel host adopts an association that userspace built: the
connected sockets of the admin and I/O queues plus the state of each queue
pair.  The layout follows sys/dev/nvmf/nvmf.h and libnvmf
(nvmf_host.c ``prepare_queues_for_handoff``, nvmf_transport.c
``nvmf_kernel_handoff_params``, nvmf_tcp.c ``tcp_kernel_handoff_params``),
keys in libnvmf's order:

handoff   ``trtype``, ``kato`` (ms), ``reconnect_delay`` (s),
          ``controller_loss_timeout`` (s), ``rparams`` (nvlist), ``admin``
          (qpair nvlist), ``io`` (array of qpair nvlists), ``cdata`` (the 4096
          bytes of Identify Controller)
qpair     ``admin``, ``sq_flow_control``, ``qsize``, ``sqhd``, ``sqtail``;
          TCP: ``fd`` (the socket's descriptor *number*: nvlist_pack cannot
          carry descriptors, the kernel looks the number up in the calling
          process), ``rxpda``/``txpda`` (bytes, (PDA+1)*4), ``header_digests``,
          ``data_digests``, ``maxr2t``, ``maxh2cdata``, ``max_icd``
rparams   ``dle`` (a 1024-byte discovery log entry), ``hostnqn``,
          ``num_io_queues``, ``kato`` (ms), ``reconnect_delay``,
          ``controller_loss_timeout``, ``io_qsize``, ``sq_flow_control``,
          ``header_digests``, ``data_digests`` (the settings *asked for*)

The kernel (host/nvmf.c ``nvmf_copyin_handoff``) refuses the handoff with
EINVAL unless the DLE's SUBNQN bytes equal the Identify data's, every I/O
queue has the size ``io_qsize`` names and there is at least one; libnvmf
refuses queues with commands in flight (EBUSY).  We check all of that first
so the user gets a sentence instead of an errno.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping

from nvmecontrol.backends.freebsd.nvlist import Binary, pack
from nvmecontrol.backends.model import ConnectParams
from nvmecontrol.errors import DeviceError, LocalProtocolError, Unsupported, UsageError
from nvmecontrol.nqn import DISCOVERY_NQN
from nvmecontrol.wire.discovery import (DISCOVERY_ENTRY_SIZE, AdrFam, CNTLID_DYNAMIC,
                                        DiscoveryLogEntry, SubType, TcpSecType, TrType,
                                        decode_discovery_entry, encode_discovery_entry)
from nvmecontrol.wire.identify import IDENTIFY_DATA_SIZE, decode_identify_controller, decode_nqn

# SUBNQN sits at byte 768 of Identify Controller and byte 256 of a DLE.
CDATA_SUBNQN = slice(768, 1024)
DLE_SUBNQN = slice(256, 512)
FCATT_STATIC = 0x01  # Identify Controller FCATT bit 0: static controller model
# NVMe 1.4b 4.1.3 limits the kernel enforces (dev/nvme/nvme.h).
NVME_MIN_ENTRIES = 2
NVME_MAX_ADMIN_ENTRIES = 4096
NVME_MAX_IO_ENTRIES = 65536


def _pda_bytes(pda: int) -> int:
    # PDA fields count dwords, 0's based; libnvmf hands over bytes.
    return (pda + 1) * 4


def build_qpair_params(queue, *, admin: bool) -> dict:
    """The qpair nvlist of one connected host queue (``HostQueue``)."""
    qp = queue.qp
    est = qp.established
    if est is None:
        raise LocalProtocolError(f"queue {queue.qid} is not connected")
    if qp.outstanding:
        raise LocalProtocolError(f"queue {queue.qid} has {qp.outstanding} commands in flight; "
                                 "only idle queues can be handed to the kernel")
    limit = NVME_MAX_ADMIN_ENTRIES if admin else NVME_MAX_IO_ENTRIES
    if not NVME_MIN_ENTRIES <= qp.queue_size <= limit:
        raise LocalProtocolError(f"queue {queue.qid} has {qp.queue_size} entries; "
                                 f"the kernel accepts {NVME_MIN_ENTRIES} to {limit}")
    # With SQ flow control off the head is only counted, one per completion
    # (libnvmf and the kernel alike); an idle queue's head is its tail.
    sqhd = qp.sqhd if qp.sq_flow_control else qp.sqtail
    return {
        "admin": admin,
        "sq_flow_control": bool(qp.sq_flow_control),
        "qsize": qp.queue_size,
        "sqhd": sqhd,
        "sqtail": qp.sqtail,
        "fd": queue.driver.sock.fileno(),
        "rxpda": _pda_bytes(est.hpda),
        "txpda": _pda_bytes(est.cpda),
        "header_digests": bool(est.hdgst),
        "data_digests": bool(est.ddgst),
        "maxr2t": est.maxr2t,
        "maxh2cdata": est.maxh2cdata,
        "max_icd": qp.max_icd,
    }


def build_dle(assoc) -> bytes:
    """A discovery log entry describing the association (libnvmf
    ``nvmf_init_dle_from_admin_qp``): the admin socket's numeric peer
    address and port, CNTLID dynamic unless FCATT says static, SUBNQN copied
    byte for byte from Identify Controller.

    Unlike libnvmf we also fill ADRFAM and SUBTYPE: FreeBSD's own
    ``reconnect`` refuses a saved entry whose ADRFAM is neither IPv4 nor IPv6.
    """
    sock = assoc.admin.driver.sock
    try:
        host, port = socket.getnameinfo(sock.getpeername(),
                                        socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
    except OSError as e:
        raise DeviceError(f"cannot read the controller's address: {e.strerror or e}") from None
    cdata_raw = bytes(assoc.cdata_raw)
    cdata = decode_identify_controller(cdata_raw)
    entry = DiscoveryLogEntry(
        trtype=TrType.TCP,
        adrfam=AdrFam.IPV6 if sock.family == socket.AF_INET6 else AdrFam.IPV4,
        subtype=SubType.NVME,
        cntlid=cdata.cntlid if cdata.fcatt & FCATT_STATIC else CNTLID_DYNAMIC,
        trsvcid=port,
        traddr=host,
    )
    dle = bytearray(encode_discovery_entry(entry))
    dle[DLE_SUBNQN] = cdata_raw[CDATA_SUBNQN]
    return bytes(dle)


def _checked_dle(dle: bytes, cdata_raw: bytes) -> bytes:
    """A caller's DLE (from connect-all) made acceptable to the kernel, or an error."""
    dle = bytes(dle)
    if len(dle) != DISCOVERY_ENTRY_SIZE:
        raise LocalProtocolError(f"discovery log entry of {len(dle)} bytes, "
                                 f"expected {DISCOVERY_ENTRY_SIZE}")
    if dle[0] != TrType.TCP:
        raise Unsupported(f"discovery log entry for transport {dle[0]}; only TCP can be handed off")
    if dle[DLE_SUBNQN] == cdata_raw[CDATA_SUBNQN]:
        return dle
    theirs, ours = decode_nqn(dle[DLE_SUBNQN]), decode_nqn(cdata_raw[CDATA_SUBNQN])
    if theirs != ours:
        raise UsageError(f"the discovery log entry names {theirs}, but the controller "
                         f"reports {ours}")
    # Same NQN, different padding: the kernel compares all 256 bytes.
    fixed = bytearray(dle)
    fixed[DLE_SUBNQN] = cdata_raw[CDATA_SUBNQN]
    return bytes(fixed)


def build_handoff(assoc, params: ConnectParams, dle: bytes | None = None) -> dict:
    """The ``NVMF_HANDOFF_HOST``/``NVMF_RECONNECT_HOST`` nvlist of a live association.

    ``assoc`` is a ``host.association.Association``; ``params`` supplies the
    reconnect timers; ``dle`` is the entry it was discovered by, if any.
    """
    if assoc.subnqn == DISCOVERY_NQN:
        raise Unsupported("the FreeBSD kernel host cannot hold a discovery controller")
    if not assoc.io:
        raise UsageError("the FreeBSD kernel host needs at least one I/O queue")
    cdata_raw = bytes(assoc.cdata_raw)
    if len(cdata_raw) != IDENTIFY_DATA_SIZE:
        raise LocalProtocolError(f"Identify Controller data of {len(cdata_raw)} bytes")
    io_qsize = assoc.io[0].qp.queue_size
    if any(q.qp.queue_size != io_qsize for q in assoc.io):
        raise LocalProtocolError("the kernel needs every I/O queue to have the same size")
    entry = build_dle(assoc) if dle is None else _checked_dle(dle, cdata_raw)
    aparams = assoc.params
    kato_ms = aparams.kato_s * 1000
    rparams = {
        "dle": Binary(entry),
        "hostnqn": assoc.host.hostnqn,
        "num_io_queues": len(assoc.io),
        "kato": kato_ms,
        "reconnect_delay": params.reconnect_delay_s,
        "controller_loss_timeout": params.ctrl_loss_tmo_s,
        "io_qsize": io_qsize,
        "sq_flow_control": bool(aparams.sq_flow_control),
        "header_digests": bool(aparams.hdgst),
        "data_digests": bool(aparams.ddgst),
    }
    return {
        "trtype": int(TrType.TCP),
        "kato": kato_ms,
        "reconnect_delay": params.reconnect_delay_s,
        "controller_loss_timeout": params.ctrl_loss_tmo_s,
        "rparams": rparams,
        "admin": build_qpair_params(assoc.admin, admin=True),
        "io": [build_qpair_params(q, admin=False) for q in assoc.io],
        "cdata": Binary(cdata_raw),
    }


def pack_handoff(assoc, params: ConnectParams, dle: bytes | None = None) -> bytes:
    return pack(build_handoff(assoc, params, dle))


_REQUIRED = {"dle": bytes, "hostnqn": str, "num_io_queues": int, "io_qsize": int,
             "sq_flow_control": bool}
_REQUIRED_TCP = {"header_digests": bool, "data_digests": bool}


def _has(rp: Mapping, key: str, kind: type) -> bool:
    value = rp.get(key)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def decode_reconnect_params(rp: Mapping, *, hostid: str) -> tuple[ConnectParams, bytes]:
    """The parameters saved by the kernel (``NVMF_RECONNECT_PARAMS``) and the DLE.

    Checks as FreeBSD's reconnect does (``fetch_and_validate_rparams``),
    but restores the digest settings it saved (reconnect.c drops them) and
    accepts ADRFAM 0, which libnvmf-made entries carry.
    """
    if not all(_has(rp, key, kind) for key, kind in _REQUIRED.items()):
        raise DeviceError("missing required reconnect parameters")
    dle = bytes(rp["dle"])
    if len(dle) != DISCOVERY_ENTRY_SIZE:
        raise DeviceError("discovery log entry reconnect parameter is wrong size")
    entry = decode_discovery_entry(dle)
    if entry.trtype != TrType.TCP:
        raise Unsupported(f"unsupported transport {entry.trtype} in the saved parameters")
    if not all(_has(rp, key, kind) for key, kind in _REQUIRED_TCP.items()):
        raise DeviceError("missing required reconnect parameters")
    if entry.sectype != TcpSecType.NONE:
        raise Unsupported("the saved discovery log entry requires a TLS secure channel")
    kato_ms = rp.get("kato", 0) if _has(rp, "kato", int) else 0
    params = ConnectParams(
        traddr=entry.traddr,
        trsvcid=entry.trsvcid,
        subnqn=entry.subnqn,
        hostnqn=rp["hostnqn"],
        hostid=hostid,
        transport="tcp",
        num_io_queues=rp["num_io_queues"],
        queue_size=rp["io_qsize"],
        kato_s=(kato_ms + 999) // 1000,
        reconnect_delay_s=rp.get("reconnect_delay", 0) if _has(rp, "reconnect_delay", int) else 0,
        ctrl_loss_tmo_s=(rp.get("controller_loss_timeout", 0)
                         if _has(rp, "controller_loss_timeout", int) else 0),
        hdgst=rp["header_digests"],
        ddgst=rp["data_digests"],
        sq_flow_control=rp["sq_flow_control"],
        cntlid=entry.cntlid,
    )
    return params, dle
