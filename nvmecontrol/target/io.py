"""I/O queues: the NVM command set commands (NVM Command Set 1.0, 3).

Read, Write, Flush, Write Zeroes and Dataset Management on the namespaces
of the controller's subsystem.  This is the hot path: the SQE is unpacked
with one precompiled struct (no SQE record per command), read data goes
into the connection's read arena and leaves as a memoryview in the
batch's ``sendmsg``, in-capsule write data and H2CData are written to the
backing store straight from the receive buffer.

Checks, in the Linux target's order: controller ready (Command Sequence
Error), data digest (Transient Transport Error, retryable), namespace
(Invalid Namespace or Format), opcode (Invalid Command Opcode), write
protection, LBA range (LBA Out of Range), transfer size (Invalid Field when
above MDTS), SGL (type, offset, length must equal the blocks' bytes).

A write completes after ``pwrite`` returned for its whole range (plus
``fdatasync`` for FUA or with the volatile write cache disabled); an
H2CData PDU whose data digest failed is not written and the command
completes with Transient Transport Error once all its data arrived.
"""

from __future__ import annotations

import struct

from nvmecontrol.target import constants as K
from nvmecontrol.wire.capsule import SGL_DATA_BLOCK_OFFSET, SGL_TRANSPORT_DATA_BLOCK
from nvmecontrol.wire.nvm import DSM_DEALLOCATE, FUA, WZ_DEAC, NvmOpc

# opc, flags, cid, nsid, (cdw2, cdw3, mptr), sgl addr, sgl length, (rsvd), sgl type,
# cdw10, cdw11, cdw12, (cdw13-15)
_IO_SQE = struct.Struct("<BBHI16xQI3xBIII12x")
_DSM_RANGE = struct.Struct("<IIQ")

# Plain ints: comparing with an IntEnum member costs more than with an int.
_READ = int(NvmOpc.READ)
_WRITE = int(NvmOpc.WRITE)
_FLUSH = int(NvmOpc.FLUSH)
_WRITE_ZEROES = int(NvmOpc.WRITE_ZEROES)
_DSM = int(NvmOpc.DATASET_MANAGEMENT)
_MAX_TRANSFER = K.MAX_TRANSFER
_unpack_sqe = _IO_SQE.unpack
_NSID_ALL = 0xFFFFFFFF
_FABRICS = 0x7F
_SGL_ICD = SGL_DATA_BLOCK_OFFSET
_SGL_TRANSPORT = SGL_TRANSPORT_DATA_BLOCK

# Parameter error locations (SQE byte offsets).
PEL_FLAGS, PEL_NSID, PEL_SGL, PEL_SLBA, PEL_NLB = 1, 4, 24, 40, 48


class _Fail(Exception):
    def __init__(self, status: int, why: str, pel: int = K.PEL_NONE, lba: int = 0):
        super().__init__(why)
        self.status, self.why, self.pel, self.lba = status, why, pel, lba


def _checked_nlb(ns, slba: int, c12: int) -> int:
    """NLB (1's based) of a Read/Write/Write Zeroes, or LBA Out of Range."""
    nlb = (c12 & 0xFFFF) + 1
    if slba + nlb > ns.nblocks:
        raise _Fail(K.LBA_OUT_OF_RANGE, f"blocks {slba}+{nlb} beyond {ns.nblocks}",
                    PEL_SLBA, slba)
    return nlb


class IoQueue:
    """Command handling for one connected I/O queue."""

    def __init__(self, conn, ctrl, qid: int):
        self.conn = conn
        self.ctrl = ctrl
        self.qid = qid
        self.sub = ctrl.sub
        self.qp = conn.qp
        # [bytes read, bytes written, read commands, write commands]
        self.stats = self.sub.new_stats()

    def command(self, ev) -> None:
        # ev is a qpair.Command: (cid, sqe, data, digest_error).
        opc, flags, cid, nsid, saddr, slen, stype, c10, c11, c12 = _unpack_sqe(ev[1])
        conn = self.conn
        try:
            if flags & 0xC3 != 0x40:
                raise _Fail(K.INVALID_FIELD, "fused command or PSDT not SGL", PEL_FLAGS)
            if not self.ctrl.ready:
                raise _Fail(K.CMD_SEQ_ERROR, "controller not ready")
            if ev[3]:
                raise _Fail(K.TRANSIENT_TRANSPORT, "data digest error in the command capsule")
            ns = self.sub.namespaces.get(nsid)
            if ns is None and not (opc == _FLUSH and nsid == _NSID_ALL):
                if opc == _FABRICS:  # byte 4 is FCTYPE, not an NSID
                    raise _Fail(K.INVALID_OPCODE, "Fabrics command on an I/O queue", 0)
                raise _Fail(K.INVALID_NS, f"no active namespace {nsid:#x}", PEL_NSID)
            if opc == _READ:
                slba = c10 | c11 << 32
                # = _checked_nlb, inlined on the hottest path
                nlb = (c12 & 0xFFFF) + 1
                if slba + nlb > ns.nblocks:
                    raise _Fail(K.LBA_OUT_OF_RANGE, f"blocks {slba}+{nlb} beyond {ns.nblocks}",
                                PEL_SLBA, slba)
                shift = ns.shift
                length = nlb << shift
                if length > _MAX_TRANSFER:
                    raise _Fail(K.INVALID_FIELD, f"{length} bytes exceed MDTS", PEL_NLB, slba)
                if stype != _SGL_TRANSPORT or slen != length:
                    _sgl_problem(stype, slen, length, reading=True)
                view = conn.read_buffer(length)
                try:
                    ns.backend.read_into(view, slba << shift)
                except OSError as e:
                    raise _Fail(K.UNRECOVERED_READ, f"read failed: {e.strerror}", K.PEL_NONE,
                                slba) from None
                conn.send_read(cid, view)
                stats = self.stats
                stats[0] += length
                stats[2] += 1
            elif opc == _WRITE:
                self._write(ev, cid, ns, saddr, slen, stype, c10 | c11 << 32, c12)
            elif opc == _FLUSH:
                targets = self.sub.namespaces.values() if ns is None else (ns,)
                try:
                    for n in targets:
                        if n.backend.writable:
                            n.backend.flush()
                except OSError as e:
                    raise _Fail(K.WRITE_FAULT, f"flush failed: {e.strerror}") from None
                conn.respond(cid)
            elif opc == _WRITE_ZEROES:
                if ns.read_only:
                    raise _Fail(K.NS_WRITE_PROTECTED, "namespace is read-only", PEL_NSID)
                slba = c10 | c11 << 32
                nlb = _checked_nlb(ns, slba, c12)
                try:
                    if c12 & WZ_DEAC:
                        ns.backend.deallocate(slba << ns.shift, nlb << ns.shift)
                    else:
                        ns.backend.write_zeroes(slba << ns.shift, nlb << ns.shift)
                    if not self.ctrl.wce:
                        ns.backend.sync_range()
                except OSError as e:
                    raise _Fail(K.WRITE_FAULT, f"write zeroes failed: {e.strerror}", K.PEL_NONE,
                                slba) from None
                conn.respond(cid)
            elif opc == _DSM:
                self._dsm(ev, cid, ns, saddr, slen, stype, c10, c11)
            else:
                raise _Fail(K.INVALID_OPCODE, f"I/O opcode {opc:#04x} not supported", 0)
        except _Fail as f:
            conn.fail(cid, f.status, f.why, opc=opc, nsid=nsid, lba=f.lba, pel=f.pel)

    # -- Write --
    def _write(self, ev, cid, ns, saddr, slen, stype, slba, c12) -> None:
        if ns.read_only:
            raise _Fail(K.NS_WRITE_PROTECTED, "namespace is read-only", PEL_NSID)
        nlb = _checked_nlb(ns, slba, c12)
        length = nlb << ns.shift
        if length > K.MAX_TRANSFER:
            raise _Fail(K.INVALID_FIELD, f"{length} bytes exceed MDTS", PEL_NLB, slba)
        offset = slba << ns.shift
        sync = bool(c12 & FUA) or not self.ctrl.wce
        data = ev.data
        if stype == _SGL_ICD:
            if data is None or saddr != 0:
                raise _Fail(K.SGL_OFFSET_INVALID, "in-capsule data not at offset 0", PEL_SGL, slba)
            if slen != length or len(data) != length:
                raise _Fail(K.SGL_DATA_LENGTH_INVALID,
                            f"in-capsule data of {len(data)} bytes (SGL {slen}), the blocks "
                            f"need {length}", PEL_SGL, slba)
            try:
                ns.backend.write(data, offset)
                if sync:
                    ns.backend.sync_range()
            except OSError as e:
                raise _Fail(K.WRITE_FAULT, f"write failed: {e.strerror}", K.PEL_NONE,
                            slba) from None
            self.conn.respond(cid)
            stats = self.stats
            stats[1] += length
            stats[3] += 1
            return
        if stype != _SGL_TRANSPORT or slen != length or data is not None:
            _sgl_problem(stype, slen, length, reading=False)
        conn = self.conn
        if cid in conn.transfers:
            raise _Fail(K.CMD_ID_CONFLICT, f"command {cid:#x} already waits for data")
        # state: namespace, byte offset, sync, failure (status, why) or None, slba
        conn.transfers[cid] = (self._write_data, [ns, offset, sync, None, slba])
        self.qp.request_data(cid, length)

    def _write_data(self, ev, st) -> None:
        if st[3] is None:
            if ev.digest_error:
                st[3] = (K.TRANSIENT_TRANSPORT, "data digest error in H2CData")
            else:
                try:
                    st[0].backend.write(ev.data, st[1] + ev.offset)
                except OSError as e:
                    st[3] = (K.WRITE_FAULT, f"write failed: {e.strerror}")
        if not ev.done:
            return
        conn = self.conn
        del conn.transfers[ev.cid]
        if st[3] is None and st[2]:
            try:
                st[0].backend.sync_range()
            except OSError as e:
                st[3] = (K.WRITE_FAULT, f"sync failed: {e.strerror}")
        if st[3] is not None:
            conn.fail(ev.cid, st[3][0], st[3][1], opc=_WRITE, nsid=st[0].nsid, lba=st[4])
            return
        conn.respond(ev.cid)
        stats = self.stats
        stats[1] += ev.offset + len(ev.data)
        stats[3] += 1

    # -- Dataset Management --
    def _dsm(self, ev, cid, ns, saddr, slen, stype, c10, c11) -> None:
        if ns.read_only:
            raise _Fail(K.NS_WRITE_PROTECTED, "namespace is read-only", PEL_NSID)
        nr = (c10 & 0xFF) + 1
        length = nr * _DSM_RANGE.size
        # The SGL may describe more than the NR ranges (Linux hosts send a
        # whole page for one range); the kernel target accepts that, so do we.
        if not length <= slen <= K.MAX_COLLECTED_DATA:
            raise _Fail(K.SGL_DATA_LENGTH_INVALID,
                        f"SGL of {slen} bytes for {nr} ranges ({length} bytes)", PEL_SGL)
        data = ev.data
        if stype == _SGL_ICD:
            if data is None or saddr != 0:
                raise _Fail(K.SGL_OFFSET_INVALID, "in-capsule data not at offset 0", PEL_SGL)
            if len(data) != slen:
                raise _Fail(K.SGL_DATA_LENGTH_INVALID,
                            f"{len(data)} bytes of ranges, the SGL says {slen}", PEL_SGL)
            self._dsm_apply(cid, ns, bytes(data[:length]), nr, c11)
            return
        if stype != _SGL_TRANSPORT or data is not None:
            _sgl_problem(stype, slen, slen, reading=False)
        conn = self.conn
        if cid in conn.transfers:
            raise _Fail(K.CMD_ID_CONFLICT, f"command {cid:#x} already waits for data")

        def got(cid, ranges, bad):
            if bad:
                conn.fail(cid, K.TRANSIENT_TRANSPORT, "data digest error in DSM ranges", opc=_DSM,
                          nsid=ns.nsid)
                return
            try:
                self._dsm_apply(cid, ns, ranges, nr, c11)
            except _Fail as f:
                conn.fail(cid, f.status, f.why, opc=_DSM, nsid=ns.nsid, lba=f.lba, pel=f.pel)
        conn.collect(cid, slen, got)

    def _dsm_apply(self, cid, ns, raw: bytes, nr: int, attrs: int) -> None:
        if attrs & DSM_DEALLOCATE:
            ranges = []
            for _ctx, nlb, slba in _DSM_RANGE.iter_unpack(raw[:nr * _DSM_RANGE.size]):
                if slba + nlb > ns.nblocks:
                    raise _Fail(K.LBA_OUT_OF_RANGE, f"range {slba}+{nlb} beyond {ns.nblocks}",
                                K.PEL_NONE, slba)
                if nlb:
                    ranges.append((slba, nlb))
            try:
                for slba, nlb in ranges:
                    ns.backend.deallocate(slba << ns.shift, nlb << ns.shift)
            except OSError as e:
                raise _Fail(K.WRITE_FAULT, f"deallocate failed: {e.strerror}") from None
        # Integral read/write hints (IDR/IDW) are advisory: nothing to do.
        self.conn.respond(cid)


def _sgl_problem(stype: int, slen: int, length: int, *, reading: bool):
    if stype == _SGL_ICD and reading:
        raise _Fail(K.INVALID_FIELD, "in-capsule SGL on a read", PEL_SGL)
    if stype not in (_SGL_ICD, _SGL_TRANSPORT):
        raise _Fail(K.SGL_TYPE_INVALID, f"SGL descriptor type {stype:#04x}", PEL_SGL)
    if slen != length:
        raise _Fail(K.SGL_DATA_LENGTH_INVALID, f"SGL length {slen}, the blocks need {length}",
                    PEL_SGL)
    raise _Fail(K.INVALID_FIELD, "in-capsule data with a transport SGL", PEL_SGL)
