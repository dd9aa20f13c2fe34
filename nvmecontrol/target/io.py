"""I/O queues: the NVM command set commands (NVM Command Set 1.0, 3).

Read, Write, Flush, Write Zeroes and Dataset Management on the namespaces
of the controller's subsystem.  This is the hot path: ``IoQueue.batch``
takes a whole receive, the SQE is unpacked with one precompiled struct (no
record per command), reads and in-capsule writes that pass every check are
answered inline with their PDUs packed into the connection's send arena
(one buffer per batch for ``sendmsg``), in-capsule write data and H2CData
are written to the backing store straight from the receive buffer.

Checks, in the Linux target's order: controller ready (Command Sequence
Error), data digest (Transient Transport Error, retryable), namespace
(Invalid Namespace or Format), the namespace's ANA group on this
controller's port (``ana.py``: ANA Inaccessible, Persistent Loss or
Transition, SCT 3h, for every command on the namespace), opcode (Invalid
Command Opcode), write protection (Namespace Is Write Protected), LBA
range (LBA Out of Range), transfer size (Invalid Field when above MDTS),
SGL (type, offset, length must equal the blocks' bytes).

A write completes after ``pwrite`` returned for its whole range (plus
``fdatasync`` for FUA or with the volatile write cache disabled); an
H2CData PDU whose data digest failed is not written and the command
completes with Transient Transport Error once all its data arrived.

Reservations (``reservations.py``): the four reservation commands go to the
namespace's shared state; on a namespace with a reservation every command
takes the checked path, where reads and writes the reservation forbids to
this host complete with Reservation Conflict.  A Flush of all namespaces
(NSID FFFFFFFFh) is not checked: it changes no data.
"""

from __future__ import annotations

import struct

from nvmecontrol.target import ana as _ana
from nvmecontrol.target import constants as K
from nvmecontrol.target import reservations as _resv
from nvmecontrol.wire import pdu as P
from nvmecontrol.wire.crc import crc32c as _crc32c
from nvmecontrol.wire.capsule import SGL_DATA_BLOCK_OFFSET, SGL_TRANSPORT_DATA_BLOCK
from nvmecontrol.wire.nvm import DSM_DEALLOCATE, FUA, WZ_DEAC, NvmOpc
from nvmecontrol.wire.qpair import Command, WriteData

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
_RESV_OPCODES = _resv.RESERVATION_OPCODES
_SGL_ICD = SGL_DATA_BLOCK_OFFSET
_SGL_TRANSPORT = SGL_TRANSPORT_DATA_BLOCK

_tnew = tuple.__new__
_pack_c2h = P.C2H_DATA_HEADER.pack_into
_pack_resp = P.CAPSULE_RESP_PDU.pack_into
_C2H, _RESP = P.RAW_C2H, P.RAW_RESP
_DATA_HLEN, _RESP_HLEN = P.DATA_HLEN, P.RESP_HLEN
_C2H_LAST, _C2H_SUCCESS = P.F_LAST_PDU, P.F_LAST_PDU | P.F_SUCCESS
_F_HDGST, _F_DDGST, _DIGEST = P.F_HDGST, P.F_DDGST, P.DIGEST_SIZE
_pack_u32 = struct.Struct("<I").pack_into  # a digest, little-endian
# A copy whose destination lies a few bytes past its source modulo 4 KiB
# runs at a sixth of its speed on x86 (4K aliasing: measured 1.7 against
# 0.27 us for 4 KiB here).  Read data land right after their 24-byte
# header, so a read into an empty arena would hit it every time: when the
# destination is less than this past the source modulo 4 KiB, the fast path
# leaves a gap (and starts a new region of the arena).
_ALIAS_GAP = 64
# Reads of RAM namespaces this large leave straight from the mapping
# (MemBackend.lend) instead of through the arena: the copy into the arena
# was a fifth of nvmfd's CPU at 1 MiB reads.  Smaller ones are packed into
# the arena, where a batch of them is one buffer for sendmsg.
_LEND_MIN = 32 << 10
# SQE flags byte: FUSE (bits 1:0) and PSDT (bits 7:6) must say "not fused, SGL".
_FLAGS_MASK, _FLAGS_SGL = 0xC3, 0x40

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
        # The port's ANA states last seen and the groups they serve: a change
        # replaces the dict, so one identity test per batch notices it.
        self._ana_groups = None
        self._ana_serving = frozenset()

    def _serving(self) -> frozenset:
        """The ANA groups whose I/O this controller's port serves now."""
        groups = self.ctrl.port.cfg.ana_groups
        if groups is not self._ana_groups:
            self._ana_groups, self._ana_serving = groups, _ana.serving_groups(groups)
        return self._ana_serving

    def batch(self, events: list) -> None:
        """Handle one receive's events (``ControllerQueuePair.receive_raw``).

        The fast path: a Read or an in-capsule Write that passes every check
        of :meth:`command` is done here inline, its C2HData (SUCCESS, or
        LAST_PDU and a CapsuleResp under SQ flow control) or CapsuleResp,
        digests included, packed into the connection's arena behind the
        previous one, so the whole batch leaves as one buffer.  Anything
        else (another opcode, a check that fails, padding to add) goes
        through :meth:`command`, which does the checks in their order and
        answers the failure; the arena region filled so far is queued first.
        """
        conn = self.conn
        qp = self.qp
        if not self.ctrl.ready or qp.pda_tx:
            for t in events:
                self._event(t)
            return
        nss = self.sub.namespaces
        arena = conn.arena
        view = conn.arena_view
        room = K.READ_ARENA_BYTES
        used = start = conn.arena_used
        flow = qp.sq_flow_control
        # Digests (NVMe/TCP 3.6.1.2): after the header, HLEN + 4 = PDO; after the data.
        hd = _DIGEST if qp.hdgst else 0
        dd = _DIGEST if qp.ddgst else 0
        c2h_flags = (_C2H_LAST if flow else _C2H_SUCCESS) | (_F_HDGST if hd else 0) \
            | (_F_DDGST if dd else 0)
        c2h_pdo = _DATA_HLEN + hd
        resp_flags = _F_HDGST if hd else 0
        resp_len = _RESP_HLEN + hd
        # With SQ flow control every response reports the SQHD of this
        # batch (receive advanced it); without, SQHD is 0xFFFF (reserved).
        sqhd = qp.sqhd if flow else 0xFFFF
        qid = self.qid
        wce = self.ctrl.wce
        # NSIDs with a reservation: their commands take the checked path;
        # so do those of namespaces whose ANA group this port does not serve.
        held = self.sub.reservations.held
        serving = self._serving()
        reads = read_bytes = writes = write_bytes = 0
        for t in events:
            if type(t) is tuple and not t[3]:  # a command whose data digest (if any) passed
                sqe = t[1]
                opc = sqe[0]
                if opc == _READ and t[2] is None:
                    _o, flags, cid, nsid, _sa, slen, stype, c10, c11, c12 = _unpack_sqe(sqe)
                    ns = nss.get(nsid)
                    if ns is not None and flags & _FLAGS_MASK == _FLAGS_SGL \
                            and stype == _SGL_TRANSPORT and nsid not in held \
                            and ns.anagrpid in serving:
                        slba = c10 | c11 << 32
                        nlb = (c12 & 0xFFFF) + 1
                        shift = ns.shift
                        n = nlb << shift
                        data = None
                        if n >= _LEND_MIN and ns.backend.ram is not None \
                                and slba + nlb <= ns.nblocks and n == slen and n <= _MAX_TRANSFER:
                            # Header (and digests, response) in the arena, data
                            # from the mapping, given back once sent.  At most
                            # an arena's worth lent per send: what a send cannot
                            # take at once is copied to the connection's spill
                            # buffer of that size.
                            if used + c2h_pdo + dd + resp_len > room \
                                    or conn.lent_bytes + n > room:
                                if used > start:
                                    qp.outgoing.append(view[start:used])
                                conn.flush()
                                used = start = 0
                            # None while a write waits for these blocks: the
                            # read is copied through the arena below instead.
                            backend = ns.backend
                            off = slba << shift
                            data = backend.lend(off, off + n)
                        if data is not None:
                            conn.lent.append((backend, off, off + n, data))
                            conn.lent_bytes += n
                            _pack_c2h(arena, used, _C2H, c2h_flags, _DATA_HLEN, c2h_pdo,
                                      c2h_pdo + n + dd, cid, 0, 0, n)
                            if hd:
                                _pack_u32(arena, used + _DATA_HLEN,
                                          _crc32c(view[used:used + _DATA_HLEN]))
                            used += c2h_pdo
                            qp.outgoing.append(view[start:used])
                            qp.outgoing.append(data)
                            start = used
                            if dd:
                                _pack_u32(arena, used, _crc32c(data))
                                used += dd
                            if flow:
                                _pack_resp(arena, used, _RESP, resp_flags, _RESP_HLEN, 0,
                                           resp_len, 0, 0, sqhd, qid, cid, 0)
                                if hd:
                                    _pack_u32(arena, used + _RESP_HLEN,
                                              _crc32c(view[used:used + _RESP_HLEN]))
                                used += resp_len
                            reads += 1
                            read_bytes += n
                            continue
                        if slba + nlb <= ns.nblocks and n == slen and n <= _MAX_TRANSFER:
                            if used + n + c2h_pdo + dd + resp_len + _ALIAS_GAP > room:
                                if used > start:
                                    qp.outgoing.append(view[start:used])
                                conn.flush()
                                used = start = 0
                            a = used + c2h_pdo
                            off = slba << shift
                            if (a - off) & 4095 < _ALIAS_GAP:
                                # Skip ahead (a new region): see _ALIAS_GAP.
                                if used > start:
                                    qp.outgoing.append(view[start:used])
                                used = start = used + _ALIAS_GAP
                                a = used + c2h_pdo
                            ram = ns.backend.ram
                            ok = True
                            if ram is not None:
                                view[a:a + n] = ram[off:off + n]
                            else:
                                try:
                                    ns.backend.read_into(view[a:a + n], off)
                                except OSError:
                                    ok = False  # command() reads again and answers the error
                            if ok:
                                _pack_c2h(arena, used, _C2H, c2h_flags, _DATA_HLEN, c2h_pdo,
                                          c2h_pdo + n + dd, cid, 0, 0, n)
                                if hd:
                                    _pack_u32(arena, used + _DATA_HLEN,
                                              _crc32c(view[used:used + _DATA_HLEN]))
                                used = a + n
                                if dd:
                                    _pack_u32(arena, used, _crc32c(view[a:used]))
                                    used += dd
                                if flow:
                                    _pack_resp(arena, used, _RESP, resp_flags, _RESP_HLEN, 0,
                                               resp_len, 0, 0, sqhd, qid, cid, 0)
                                    if hd:
                                        _pack_u32(arena, used + _RESP_HLEN,
                                                  _crc32c(view[used:used + _RESP_HLEN]))
                                    used += resp_len
                                reads += 1
                                read_bytes += n
                                continue
                elif opc == _WRITE and t[2] is not None:
                    _o, flags, cid, nsid, saddr, slen, stype, c10, c11, c12 = _unpack_sqe(sqe)
                    ns = nss.get(nsid)
                    data = t[2]
                    if ns is not None and flags & _FLAGS_MASK == _FLAGS_SGL \
                            and stype == _SGL_ICD and not saddr and not ns.read_only \
                            and wce and not c12 & FUA and nsid not in held \
                            and ns.anagrpid in serving:
                        slba = c10 | c11 << 32
                        nlb = (c12 & 0xFFFF) + 1
                        n = nlb << ns.shift
                        if slba + nlb <= ns.nblocks and n == slen == len(data) \
                                and n <= _MAX_TRANSFER:
                            if conn.lent:
                                # Never wait for a write while holding lent
                                # ranges (MemBackend): send them first.
                                if used > start:
                                    qp.outgoing.append(view[start:used])
                                conn.flush()
                                used = start = 0
                            ok = True
                            try:
                                ns.backend.write(data, slba << ns.shift)
                            except OSError:
                                ok = False  # command() writes again and answers the error
                            if ok:
                                if used + resp_len > room:
                                    if used > start:
                                        qp.outgoing.append(view[start:used])
                                    conn.flush()
                                    used = start = 0
                                _pack_resp(arena, used, _RESP, resp_flags, _RESP_HLEN, 0,
                                           resp_len, 0, 0, sqhd, qid, cid, 0)
                                if hd:
                                    _pack_u32(arena, used + _RESP_HLEN,
                                              _crc32c(view[used:used + _RESP_HLEN]))
                                used += resp_len
                                writes += 1
                                write_bytes += n
                                continue
            # The general path: queue what the arena holds so far first
            # (and send it when ranges are lent: this command may write).
            if used > start:
                qp.outgoing.append(view[start:used])
            if conn.lent:
                conn.flush()
                used = 0
            conn.arena_used = used
            self._event(t)
            used = start = conn.arena_used
        if used > start:
            qp.outgoing.append(view[start:used])
        conn.arena_used = used
        if reads or writes:
            stats = self.stats
            stats[0] += read_bytes
            stats[1] += write_bytes
            stats[2] += reads
            stats[3] += writes

    def _event(self, t) -> None:
        if type(t) is tuple:
            sqe = t[1]
            self.command(_tnew(Command, (sqe[2] | sqe[3] << 8, sqe, t[2], t[3])))
        elif type(t) is WriteData:  # H2CData of a transfer we asked for
            self.conn.write_data(t)

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
            if ns is not None:
                groups = self.ctrl.port.cfg.ana_groups
                refusal = _ana.io_refusal(groups, ns.anagrpid)
                if refusal:
                    state = _ana.state_name(_ana.state_on(groups, ns.anagrpid))
                    raise _Fail(refusal, f"namespace {nsid}: ANA group {ns.anagrpid} is {state} "
                                f"on port {self.ctrl.port.portid}", PEL_NSID)
                resv = self.sub.reservations
                if opc in _RESV_OPCODES:
                    _resv.io_command(conn, self.ctrl, resv.state(ns), cid, opc, saddr, slen,
                                     stype, c10, c11, ev[2])
                    return
                if nsid in resv.held:
                    status = resv.state(ns).check_io(self.ctrl.hostid, opc)
                    if status:
                        raise _Fail(status, f"reservation conflict on namespace {nsid}", 0)
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
