"""The FreeBSD backend: ioctl encoding, the handoff nvlists, and a fake nvmf(4).

Ioctl numbers are computed by hand from sys/sys/ioccom.h; the qpair nvlist
is written out field by field; the backend runs against ``FakeKernel``,
which reads the caller's memory through the pointers in each argument
exactly as the kernel's copyin would, and against a real in-process nvmfd
target where sockets matter.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import stat
import struct
import uuid
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from nvmecontrol.backends.freebsd import ioctl as ioc
from nvmecontrol.backends.freebsd.backend import FreeBsdBackend
from nvmecontrol.backends.freebsd.handoff import (build_dle, build_handoff, build_qpair_params,
                                                  decode_reconnect_params, pack_handoff)
from nvmecontrol.backends.freebsd.nvlist import Binary, pack, unpack
from nvmecontrol.backends.model import ConnectParams
from nvmecontrol.errors import (CommandFailed, DeviceError, LocalProtocolError, NotFound,
                                Unsupported, UsageError)
from nvmecontrol.host.association import AssociationParams, connect_association
from nvmecontrol.hostid import HostIdentity
from nvmecontrol.wire import admin
from nvmecontrol.wire.discovery import (AdrFam, DiscoveryLogEntry, SubType, TrType,
                                        decode_discovery_entry, encode_discovery_entry, tcp_tsas)
from nvmecontrol.wire.identify import (IdentifyController, IdentifyNamespace, LbaFormat,
                                       encode_active_nsid_list, encode_identify_controller,
                                       encode_identify_namespace)
from nvmecontrol.wire.qpair import Established, HostQueuePair

SUBNQN = "nqn.2024-06.org.example:handoff"
HOST = HostIdentity(
    hostnqn="nqn.2014-08.org.nvmexpress:uuid:3c5e9b0a-7d21-4f6e-8a4b-2e9f1c0d5a77",
    hostid=uuid.UUID("3c5e9b0a-7d21-4f6e-8a4b-2e9f1c0d5a77"),
    hostnqn_source="test", hostid_source="test")


# -- ioctl numbers, by hand from ioccom.h --------------------------------

@pytest.mark.parametrize("value, expected", [
    # IOC_IN 0x80000000 | sizeof(struct nvmf_ioc_nv) 24 << 16 | 'n' 0x6e << 8 | 200
    (ioc.NVMF_HANDOFF_HOST, 0x80000000 | 0x00180000 | 0x6E00 | 0xC8),
    # IOC_IN | sizeof(const char *) 8 << 16 | 'n' << 8 | 201
    (ioc.NVMF_DISCONNECT_HOST, 0x80000000 | 0x00080000 | 0x6E00 | 0xC9),
    # IOC_VOID 0x20000000 | 'n' << 8 | 202
    (ioc.NVMF_DISCONNECT_ALL, 0x20000000 | 0x6E00 | 0xCA),
    # IOC_INOUT 0xc0000000 | 24 << 16 | 'n' << 8 | 203
    (ioc.NVMF_RECONNECT_PARAMS, 0xC0000000 | 0x00180000 | 0x6E00 | 0xCB),
    (ioc.NVMF_RECONNECT_HOST, 0x80000000 | 0x00180000 | 0x6E00 | 0xCC),
    (ioc.NVMF_CONNECTION_STATUS, 0xC0000000 | 0x00180000 | 0x6E00 | 0xCD),
    # IOC_INOUT | sizeof(struct nvme_pt_command) 104 << 16 | 'n' << 8 | 0
    (ioc.NVME_PASSTHROUGH_CMD, 0xC0000000 | 0x00680000 | 0x6E00 | 0x00),
    # IOC_OUT | sizeof(struct nvme_get_nsid) 260 << 16 | 'n' << 8 | 2
    (ioc.NVME_GET_NSID, 0x40000000 | 0x01040000 | 0x6E00 | 0x02),
])
def test_ioctl_numbers(value, expected):
    assert value == expected


def test_freebsd_encoding_differs_from_linux():
    # Linux _IOW('n', 200, 24) would be 0x40186ec8 (write = bit 30).
    assert ioc.NVMF_HANDOFF_HOST == 0x80186EC8
    with pytest.raises(ValueError):
        ioc._IOW("n", 1, 1 << 13)


def test_ioc_nv_layout():
    arg = ioc.ioc_nv_arg(0x1122334455667788, 5, 6)
    assert bytes(arg) == struct.pack("<QQQ", 0x1122334455667788, 5, 6)
    assert ioc.ioc_nv_fields(arg) == (0x1122334455667788, 5, 6)


def test_pt_command_layout():
    arg = ioc.pt_command(0x06, nsid=0x01020304, cdw=(0x11, 0x22), buf_addr=0xA0B0C0D0,
                         length=4096, is_read=True)
    assert len(arg) == 104
    assert arg[0] == 0x06 and arg[1] == 0  # opc, fuse
    assert struct.unpack_from("<I", arg, 4)[0] == 0x01020304  # nsid
    assert struct.unpack_from("<6I", arg, 40) == (0x11, 0x22, 0, 0, 0, 0)  # cdw10-15
    assert struct.unpack_from("<QII", arg, 80) == (0xA0B0C0D0, 4096, 1)  # buf, len, is_read
    assert bytes(arg[8:40]) == bytes(32) and bytes(arg[64:80]) == bytes(16)
    assert bytes(arg[96:104]) == bytes(8)  # driver_lock
    struct.pack_into("<IH", arg, 64, 7, 0x4005)
    struct.pack_into("<H", arg, 78, 0x4005)
    assert ioc.pt_completion(arg) == (7, 0x4005)


class CopyOut(ioc.System):
    """A kernel that copies out one nvlist, as nvmf_pack_ioc_nvlist does."""

    def __init__(self, payloads):
        self.payloads = list(payloads)
        self.calls = []

    def ioctl(self, fd, request, arg=None):
        data, _len, size = ioc.ioc_nv_fields(arg)
        self.calls.append((request, size))
        payload = self.payloads[0]
        if size == 0:
            arg[:] = ioc.ioc_nv_arg(data, len(payload), size)
            return
        self.payloads.pop(0)
        if len(payload) > size:
            raise OSError(errno.EFBIG, "too big")
        ctypes.memmove(data, payload, len(payload))
        arg[:] = ioc.ioc_nv_arg(data, len(payload), size)


def test_copy_out_sizes_then_fetches():
    packed = pack({"connected": True})
    kernel = CopyOut([packed])
    assert ioc.ioc_nv_read(kernel, 3, ioc.NVMF_CONNECTION_STATUS) == packed
    assert kernel.calls == [(ioc.NVMF_CONNECTION_STATUS, 0),
                            (ioc.NVMF_CONNECTION_STATUS, len(packed))]


def test_copy_out_retries_when_the_nvlist_grew():
    small, big = pack({"a": 1}), pack({"a": 1, "b": 2})

    class Growing(ioc.System):
        """Grows between the sizing call and the fetch, once."""

        payload = small
        sizes: list[int] = []

        def ioctl(self, fd, request, arg=None):
            data, _len, size = ioc.ioc_nv_fields(arg)
            self.sizes.append(size)
            payload = self.payload
            if size == 0:
                self.payload = big
            elif len(payload) > size:
                raise OSError(errno.EFBIG, "too big")
            else:
                ctypes.memmove(data, payload, len(payload))
            arg[:] = ioc.ioc_nv_arg(data, len(payload), size)

    kernel = Growing()
    assert ioc.ioc_nv_read(kernel, 3, ioc.NVMF_RECONNECT_PARAMS) == big
    assert kernel.sizes == [0, len(small), 0, len(big)]


# -- a fake association ---------------------------------------------------

class FakeSock:
    def __init__(self, fd, peer=("192.0.2.10", 4420), family=socket.AF_INET):
        self.fd, self.peer, self.family = fd, peer, family
        self.blocking = False

    def fileno(self):
        return self.fd

    def getpeername(self):
        return self.peer

    def setblocking(self, flag):
        self.blocking = flag


def make_queue(qid, fd, *, size, icd, sqtail=1, fc=True, hpda=0, cpda=0, hdgst=False,
               ddgst=False, maxh2cdata=0x20000, peer=("192.0.2.10", 4420),
               family=socket.AF_INET):
    qp = HostQueuePair(queue_size=size, max_icd=icd)
    qp.established = Established(hdgst, ddgst, cpda, hpda, maxh2cdata, 0)
    qp.sq_flow_control = fc
    qp.sqtail = sqtail
    qp.sqhd = sqtail if fc else 0
    return SimpleNamespace(qid=qid, driver=SimpleNamespace(sock=FakeSock(fd, peer, family), qp=qp),
                           qp=qp, close=lambda: None)


def make_cdata(subnqn=SUBNQN, *, cntlid=7, fcatt=0, mn="FakeModel") -> bytes:
    return encode_identify_controller(IdentifyController(mn=mn, subnqn=subnqn, cntlid=cntlid,
                                                         fcatt=fcatt, ioccsz=260))


def make_assoc(*, io=2, subnqn=SUBNQN, cdata=None, params=None, **queue_kw):
    cdata = cdata or make_cdata(subnqn)
    admin = make_queue(0, 10, size=32, icd=8192, **queue_kw)
    ios = [make_queue(i, 10 + i, size=128, icd=4096, **queue_kw) for i in range(1, io + 1)]
    events = []
    return SimpleNamespace(
        admin=admin, io=ios, subnqn=subnqn, cdata_raw=cdata, cdata=SimpleNamespace(mn="FakeModel"),
        host=HOST, cntlid=7, events=events,
        params=params or AssociationParams(kato_s=30, num_io_queues=io, hdgst=False, ddgst=False),
        shutdown=lambda: events.append("shutdown"), close=lambda: events.append("close"))


PARAMS = ConnectParams(traddr="192.0.2.10", trsvcid="4420", subnqn=SUBNQN, hostnqn=HOST.hostnqn,
                       hostid=str(HOST.hostid), num_io_queues=2, kato_s=30,
                       reconnect_delay_s=10, ctrl_loss_tmo_s=600)


def expected_dle(assoc, *, traddr="192.0.2.10", trsvcid="4420", adrfam=AdrFam.IPV4,
                 cntlid=0xFFFF) -> bytes:
    return encode_discovery_entry(DiscoveryLogEntry(
        trtype=TrType.TCP, adrfam=adrfam, subtype=SubType.NVME, cntlid=cntlid,
        trsvcid=trsvcid, traddr=traddr, subnqn=assoc.subnqn))


def test_handoff_nvlist_for_a_fake_association():
    assoc = make_assoc()
    nvl = build_handoff(assoc, PARAMS)
    assert list(nvl) == ["trtype", "kato", "reconnect_delay", "controller_loss_timeout",
                         "rparams", "admin", "io", "cdata"]
    assert nvl["trtype"] == 3 and nvl["kato"] == 30_000
    assert nvl["reconnect_delay"] == 10 and nvl["controller_loss_timeout"] == 600
    assert nvl["rparams"] == {
        "dle": expected_dle(assoc), "hostnqn": HOST.hostnqn, "num_io_queues": 2,
        "kato": 30_000, "reconnect_delay": 10, "controller_loss_timeout": 600, "io_qsize": 128,
        "sq_flow_control": False, "header_digests": False, "data_digests": False}
    assert list(nvl["rparams"])[0] == "dle"
    assert nvl["admin"] == {
        "admin": True, "sq_flow_control": True, "qsize": 32, "sqhd": 1, "sqtail": 1, "fd": 10,
        "rxpda": 4, "txpda": 4, "header_digests": False, "data_digests": False, "maxr2t": 0,
        "maxh2cdata": 0x20000, "max_icd": 8192}
    assert [q["fd"] for q in nvl["io"]] == [11, 12]
    assert all(not q["admin"] and q["qsize"] == 128 and q["max_icd"] == 4096 for q in nvl["io"])
    assert nvl["cdata"] == assoc.cdata_raw and isinstance(nvl["cdata"], Binary)


def test_qpair_nvlist_bytes():
    queue = make_queue(0, 9, size=32, icd=8192, sqtail=3, hpda=1, cpda=0, hdgst=True)

    def pair(kind, name, data):
        raw = name.encode() + b"\0"
        return (bytes([kind]) + len(raw).to_bytes(2, "little") + len(data).to_bytes(8, "little")
                + bytes(8) + raw + data)

    def num(v):
        return v.to_bytes(8, "little")

    body = b"".join([
        pair(2, "admin", b"\x01"),
        pair(2, "sq_flow_control", b"\x01"),
        pair(3, "qsize", num(32)),
        pair(3, "sqhd", num(3)),
        pair(3, "sqtail", num(3)),
        pair(3, "fd", num(9)),
        pair(3, "rxpda", num(8)),       # (HPDA 1 + 1) * 4
        pair(3, "txpda", num(4)),       # (CPDA 0 + 1) * 4
        pair(2, "header_digests", b"\x01"),
        pair(2, "data_digests", b"\x00"),
        pair(3, "maxr2t", num(0)),
        pair(3, "maxh2cdata", num(0x20000)),
        pair(3, "max_icd", num(8192)),
    ])
    assert len(body) == 432  # 26+36+33+32+34+30+33+33+35+33+34+38+35
    expected = b"\x6c\x00\x00" + num(0) + num(432) + body
    assert pack(build_qpair_params(queue, admin=True)) == expected


def test_nested_datasizes_in_the_packed_handoff():
    payload = pack_handoff(make_assoc(), PARAMS)
    assert unpack(payload)["rparams"]["io_qsize"] == 128
    for name in (b"rparams\0", b"admin\0"):
        at = payload.index(b"\x05" + len(name).to_bytes(2, "little"))
        at = payload.index(name, at) - 19
        assert payload[at] == 5  # NV_TYPE_NVLIST
        datasize = struct.unpack_from("<Q", payload, at + 3)[0]
        child = at + 19 + len(name)
        # nvlist_size(child) counts everything to the end of the buffer
        # except the child's own UP marker (20 bytes).
        assert datasize == len(payload) - child - 20


def test_flow_control_off_hands_over_head_equal_to_tail():
    assoc = make_assoc(fc=False, sqtail=5)
    nvl = build_handoff(assoc, PARAMS)
    assert nvl["admin"]["sq_flow_control"] is False
    assert nvl["admin"]["sqhd"] == nvl["admin"]["sqtail"] == 5


def test_static_controller_and_ipv6_peer_in_the_dle():
    assoc = make_assoc(cdata=make_cdata(cntlid=0x21, fcatt=1),
                       peer=("2001:db8::5", 4420, 0, 0), family=socket.AF_INET6)
    dle = decode_discovery_entry(build_dle(assoc))
    assert (dle.traddr, dle.trsvcid, dle.adrfam, dle.cntlid) == ("2001:db8::5", "4420",
                                                                 AdrFam.IPV6, 0x21)


def test_dle_subnqn_is_copied_byte_for_byte_from_cdata():
    cdata = bytearray(make_cdata())
    cdata[768 + len(SUBNQN) + 1] = 0x41  # garbage after the NUL: the kernel memcmps 256 bytes
    assoc = make_assoc(cdata=bytes(cdata))
    assert build_dle(assoc)[256:512] == bytes(cdata[768:1024])


def test_given_dle_is_kept_or_repadded():
    assoc = make_assoc()
    entry = DiscoveryLogEntry(trtype=TrType.TCP, adrfam=AdrFam.IPV4, subtype=SubType.NVME,
                              portid=3, cntlid=0xFFFF, trsvcid="4420", traddr="192.0.2.10",
                              subnqn=SUBNQN, tsas=tcp_tsas())
    raw = encode_discovery_entry(entry)
    assert build_handoff(assoc, PARAMS, raw)["rparams"]["dle"] == raw
    spaced = bytearray(raw)
    spaced[256 + len(SUBNQN)] = 0x20  # SPDK-style space padding
    fixed = build_handoff(assoc, PARAMS, bytes(spaced))["rparams"]["dle"]
    assert fixed[256:512] == assoc.cdata_raw[768:1024] and fixed[:256] == raw[:256]
    other = encode_discovery_entry(DiscoveryLogEntry(subnqn="nqn.2024-06.org.example:other"))
    with pytest.raises(UsageError, match="other"):
        build_handoff(assoc, PARAMS, other)


@pytest.mark.parametrize("change, error, text", [
    (lambda a: setattr(a, "subnqn", "nqn.2014-08.org.nvmexpress.discovery"), Unsupported,
     "discovery"),
    (lambda a: setattr(a, "io", []), UsageError, "at least one I/O queue"),
    (lambda a: a.io[0].qp._free_cids.pop(), LocalProtocolError, "in flight"),
    (lambda a: setattr(a.io[1].qp, "queue_size", 64), LocalProtocolError, "same size"),
    (lambda a: setattr(a.admin.qp, "established", None), LocalProtocolError, "not connected"),
    (lambda a: setattr(a, "cdata_raw", b"\0" * 10), LocalProtocolError, "Identify"),
])
def test_handoff_refusals(change, error, text):
    assoc = make_assoc()
    change(assoc)
    with pytest.raises(error, match=text):
        build_handoff(assoc, PARAMS)


def rparams(**over):
    dle = encode_discovery_entry(DiscoveryLogEntry(
        trtype=TrType.TCP, adrfam=0, cntlid=0xFFFF, trsvcid="4420", traddr="192.0.2.10",
        subnqn=SUBNQN))
    rp = {"dle": Binary(dle), "hostnqn": HOST.hostnqn, "num_io_queues": 4, "kato": 120_000,
          "reconnect_delay": 10, "controller_loss_timeout": 600, "io_qsize": 64,
          "sq_flow_control": True, "header_digests": True, "data_digests": False}
    rp.update(over)
    return {k: v for k, v in rp.items() if v is not None}


def test_decode_reconnect_params():
    params, dle = decode_reconnect_params(rparams(), hostid=str(HOST.hostid))
    assert dle == rparams()["dle"]
    assert params == ConnectParams(
        traddr="192.0.2.10", trsvcid="4420", subnqn=SUBNQN, hostnqn=HOST.hostnqn,
        hostid=str(HOST.hostid), num_io_queues=4, queue_size=64, kato_s=120,
        reconnect_delay_s=10, ctrl_loss_tmo_s=600, hdgst=True, ddgst=False,
        sq_flow_control=True, cntlid=0xFFFF)


@pytest.mark.parametrize("over, error, text", [
    ({"hostnqn": None}, DeviceError, "missing"),
    ({"io_qsize": True}, DeviceError, "missing"),
    ({"header_digests": None}, DeviceError, "missing"),
    ({"dle": Binary(b"\0" * 100)}, DeviceError, "wrong size"),
    ({"dle": Binary(bytes([1]) + bytes(1023))}, Unsupported, "transport"),
    ({"dle": Binary(encode_discovery_entry(DiscoveryLogEntry(tsas=tcp_tsas(2))))}, Unsupported,
     "TLS"),
])
def test_decode_reconnect_params_refusals(over, error, text):
    with pytest.raises(error, match=text):
        decode_reconnect_params(rparams(**over), hostid="")


# -- a fake nvmf(4) -------------------------------------------------------

@dataclass
class FakeController:
    rparams: dict
    cdata: bytes
    connected: bool = True
    last_disconnect: tuple[int, int] = (0, 0)
    fabrics: bool = True
    namespaces: dict = field(default_factory=lambda: {1: (32768, 9)})  # nsid: (nsze, lbads)


class FakeKernel(ioc.System):
    """nvmf(4) and nvme(4) as far as the backend can see them."""

    def __init__(self):
        self.controllers: dict[int, FakeController] = {}
        self.nda: dict[str, str] = {}
        self.open_fds: dict[int, str] = {}
        self.calls: list[tuple[str, int, object]] = []
        self.sockets_seen: list[tuple[int, bool, tuple]] = []
        self.fail: dict[int, int] = {}
        self._next_fd = 500

    def exists(self, path):
        return path == "/dev/nvmf" or path in self._device_paths()

    def _device_paths(self):
        return {f"/dev/nvme{u}" for u in self.controllers} | {f"/dev/{n}" for n in self.nda}

    def open(self, path, flags=os.O_RDWR):
        if not self.exists(path):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        self._next_fd += 1
        self.open_fds[self._next_fd] = path
        return self._next_fd

    def close(self, fd):
        del self.open_fds[fd]

    def ioctl(self, fd, request, arg=None):
        path = self.open_fds[fd]
        if request in self.fail:
            raise OSError(self.fail[request], os.strerror(self.fail[request]))
        if path == "/dev/nvmf":
            return self._control(request, arg)
        if path.startswith("/dev/nda"):
            assert request == ioc.NVME_GET_NSID and len(arg) == ioc.GET_NSID_SIZE
            arg[:256] = self.nda[path[5:]].encode().ljust(256, b"\0")
            return None
        return self._controller(int(path[len("/dev/nvme"):]), request, arg)

    # /dev/nvmf
    def _control(self, request, arg):
        if request == ioc.NVMF_HANDOFF_HOST:
            nvl = self._copy_in(request, arg)
            unit = min(set(range(300)) - set(self.controllers))
            self.controllers[unit] = FakeController(nvl["rparams"], bytes(nvl["cdata"]))
        elif request == ioc.NVMF_DISCONNECT_HOST:
            assert len(arg) == 8
            name = ctypes.string_at(struct.unpack("<Q", arg)[0]).decode()
            self.calls.append(("/dev/nvmf", request, name))
            hits = [u for u, c in self.controllers.items()
                    if name in (f"nvme{u}", decode_discovery_entry(c.rparams["dle"]).subnqn)]
            if not hits:
                raise OSError(errno.ENOENT, "none")
            for u in hits:
                del self.controllers[u]
        elif request == ioc.NVMF_DISCONNECT_ALL:
            assert arg is None
            self.calls.append(("/dev/nvmf", request, None))
            if not self.controllers:
                raise OSError(errno.ENOENT, "none")
            self.controllers.clear()
        else:
            raise OSError(errno.ENOTTY, "bad request")

    def _copy_in(self, request, arg):
        assert len(arg) == 24
        data, length, size = ioc.ioc_nv_fields(arg)
        assert length == 0  # libnvmf memsets the struct, then sets data and size
        payload = ctypes.string_at(data, size)
        nvl = unpack(payload)
        for qp in [nvl["admin"], *nvl["io"]]:
            fd = qp["fd"]
            assert stat.S_ISSOCK(os.fstat(fd).st_mode)
            s = socket.socket(fileno=os.dup(fd))
            try:
                self.sockets_seen.append((fd, os.get_blocking(fd), s.getpeername()[:2]))
            finally:
                s.close()
        self.calls.append(("copyin", request, payload))
        return nvl

    # /dev/nvmeX
    def _controller(self, unit, request, arg):
        ctrl = self.controllers[unit]
        if not ctrl.fabrics and request != ioc.NVME_PASSTHROUGH_CMD:
            raise OSError(errno.ENOTTY, "not nvmf")
        if request == ioc.NVMF_RECONNECT_PARAMS:
            return self._copy_out(arg, pack(ctrl.rparams))
        if request == ioc.NVMF_CONNECTION_STATUS:
            sec, nsec = ctrl.last_disconnect
            return self._copy_out(arg, pack({"connected": ctrl.connected, "last_disconnect":
                                             {"tv_sec": sec, "tv_nsec": nsec}}))
        if request == ioc.NVMF_RECONNECT_HOST:
            nvl = self._copy_in(request, arg)
            if ctrl.connected:
                raise OSError(errno.EBUSY, "busy")
            if bytes(nvl["cdata"])[768:1024] != ctrl.cdata[768:1024]:
                raise OSError(errno.EINVAL, "subsystem NQN mismatch")
            ctrl.rparams, ctrl.connected = nvl["rparams"], True
            return None
        if request == ioc.NVME_PASSTHROUGH_CMD:
            return self._passthrough(ctrl, arg)
        raise OSError(errno.ENOTTY, "bad request")

    def _copy_out(self, arg, payload):
        data, _len, size = ioc.ioc_nv_fields(arg)
        if size:
            if len(payload) > size:
                raise OSError(errno.EFBIG, "too big")
            ctypes.memmove(data, payload, len(payload))
        arg[:] = ioc.ioc_nv_arg(data, len(payload), size)

    def _passthrough(self, ctrl, arg):
        assert len(arg) == 104
        if not ctrl.connected:
            raise OSError(errno.ECONNABORTED, "disconnected")
        opc, nsid = arg[0], struct.unpack_from("<I", arg, 4)[0]
        cdw10 = struct.unpack_from("<I", arg, 40)[0]
        buf, length, is_read = struct.unpack_from("<QII", arg, 80)
        self.calls.append(("passthrough", opc, (cdw10 & 0xFF, nsid)))
        assert opc == 0x06 and length == 4096 and is_read == 1
        cns = cdw10 & 0xFF
        if cns == 1:
            data = ctrl.cdata
        elif cns == 2:
            data = encode_active_nsid_list(sorted(n for n in ctrl.namespaces if n > nsid))
        elif cns == 0 and nsid in ctrl.namespaces:
            nsze, lbads = ctrl.namespaces[nsid]
            data = encode_identify_namespace(IdentifyNamespace(
                nsze=nsze, ncap=nsze, nuse=nsze, lbaf=[LbaFormat(0, lbads, 0)]))
        else:
            struct.pack_into("<H", arg, 78, (0x0B << 1))  # Invalid Namespace or Format
            return
        ctypes.memmove(buf, data, len(data))


def backend(kernel, **kw):
    return FreeBsdBackend(kernel, platform="freebsd15", **kw)


def stored_controller(kernel, unit=0, *, subnqn=SUBNQN, **kw):
    kernel.controllers[unit] = FakeController(rparams(dle=Binary(encode_discovery_entry(
        DiscoveryLogEntry(trtype=TrType.TCP, adrfam=AdrFam.IPV4, trsvcid="4420",
                          traddr="192.0.2.10", subnqn=subnqn)))), make_cdata(subnqn), **kw)


def test_owns_freebsd_names_only_on_freebsd():
    b = backend(FakeKernel())
    for name in ("nvme0", "/dev/nvme12", "nvme3ns1", "nda0", "/dev/nda7"):
        assert b.owns(name)
    for name in ("nvme0n1", "nvmeu0", "sda", "nqn.2024-06.org.example:x"):
        assert not b.owns(name)
    assert not FreeBsdBackend(FakeKernel(), platform="linux").owns("nvme0")


def test_other_systems_are_refused():
    b = FreeBsdBackend(FakeKernel(), platform="linux")
    assoc = make_assoc()
    with pytest.raises(Unsupported, match="linux"):
        b.connect(assoc, PARAMS)
    assert assoc.events == ["shutdown"]
    for call in (b.list, b.disconnect_all, lambda: b.disconnect("nvme0"),
                 lambda: b.reconnect("nvme0")):
        with pytest.raises(Unsupported):
            call()


def test_connect_with_a_fake_association_closes_and_describes():
    kernel = FakeKernel()
    assoc = make_assoc()

    def check_sockets(fd, request, arg=None, _orig=kernel.ioctl):
        if request == ioc.NVMF_HANDOFF_HOST:
            data, _l, size = ioc.ioc_nv_fields(arg)
            nvl = unpack(ctypes.string_at(data, size))
            kernel.calls.append(("copyin", request, nvl))
            assert all(q.driver.sock.blocking for q in [assoc.admin, *assoc.io])
            assert "close" not in assoc.events  # sockets still ours during the ioctl
            kernel.controllers[0] = FakeController(nvl["rparams"], bytes(nvl["cdata"]))
            return None
        return _orig(fd, request, arg)

    kernel.ioctl = check_sockets
    info = backend(kernel).connect(assoc, PARAMS)
    assert assoc.events == ["close"]
    assert kernel.open_fds == {}
    assert (info.name, info.backend, info.subnqn, info.model) == ("nvme0", "freebsd", SUBNQN,
                                                                  "FakeModel")
    assert (info.traddr, info.trsvcid, info.hostnqn, info.connected) == (
        "192.0.2.10", "4420", HOST.hostnqn, True)
    assert [(n.name, n.size_bytes, n.lba_size, n.path) for n in info.namespaces] == [
        ("nvme0ns1", 32768 * 512, 512, "/dev/nvme0ns1")]


def test_connect_failure_in_the_kernel_still_closes_the_sockets():
    kernel = FakeKernel()
    kernel.fail[ioc.NVMF_HANDOFF_HOST] = errno.EINVAL
    assoc = make_assoc()
    with pytest.raises(DeviceError, match="failed to hand off queues to the kernel: Invalid"):
        backend(kernel).connect(assoc, PARAMS)
    assert assoc.events == ["close"]
    assert kernel.open_fds == {}


def test_connect_refused_before_the_kernel_shuts_the_association_down():
    assoc = make_assoc()
    assoc.io[0].qp._free_cids.pop()  # a command in flight
    kernel = FakeKernel()
    with pytest.raises(LocalProtocolError):
        backend(kernel).connect(assoc, PARAMS)
    assert assoc.events == ["shutdown"] and kernel.calls == []


def test_connect_without_the_module():
    kernel = FakeKernel()
    kernel.exists = lambda path: False
    assoc = make_assoc()
    with pytest.raises(DeviceError, match="nvmf kernel module"):
        backend(kernel).connect(assoc, PARAMS)
    assert assoc.events == ["shutdown"]


def test_connect_end_to_end_against_nvmfd(nvmfd_server, host_identity):
    params = ConnectParams(traddr=nvmfd_server.host, trsvcid=str(nvmfd_server.port),
                           subnqn=nvmfd_server.subnqn, hostnqn=host_identity.hostnqn,
                           hostid=str(host_identity.hostid), num_io_queues=2, kato_s=30,
                           reconnect_delay_s=5, ctrl_loss_tmo_s=60, timeout_s=5)
    assoc = connect_association(nvmfd_server.address, nvmfd_server.subnqn, host_identity,
                                params.association_params())
    queues = [assoc.admin, *assoc.io]
    fds = [q.driver.sock.fileno() for q in queues]
    kernel = FakeKernel()
    info = backend(kernel).connect(assoc, params)

    (_, request, payload), = [c for c in kernel.calls if c[0] == "copyin"]
    assert request == ioc.NVMF_HANDOFF_HOST
    nvl = unpack(payload)
    assert [q["fd"] for q in [nvl["admin"], *nvl["io"]]] == fds
    peer = (nvmfd_server.host, nvmfd_server.port)
    assert kernel.sockets_seen == [(fd, True, peer) for fd in fds]
    assert all(q.driver.sock.fileno() == -1 for q in queues)  # closed once the ioctl returned
    assert nvl["admin"]["qsize"] == 32 and nvl["rparams"]["io_qsize"] == nvl["io"][0]["qsize"]
    assert nvl["cdata"] == assoc.cdata_raw
    dle = decode_discovery_entry(nvl["rparams"]["dle"])
    assert (dle.traddr, dle.trsvcid, dle.adrfam, dle.subnqn) == (
        nvmfd_server.host, str(nvmfd_server.port), AdrFam.IPV4, nvmfd_server.subnqn)
    assert (info.name, info.subnqn, info.model) == ("nvme0", nvmfd_server.subnqn, assoc.cdata.mn)


def test_reconnect_with_saved_parameters(nvmfd_server, host_identity):
    kernel = FakeKernel()
    saved_dle = encode_discovery_entry(DiscoveryLogEntry(
        trtype=TrType.TCP, adrfam=AdrFam.IPV4, cntlid=0xFFFF, trsvcid=str(nvmfd_server.port),
        traddr=nvmfd_server.host, subnqn=nvmfd_server.subnqn, portid=9))
    kernel.controllers[3] = FakeController(
        {"dle": Binary(saved_dle), "hostnqn": host_identity.hostnqn, "num_io_queues": 1,
         "kato": 10_000, "reconnect_delay": 7, "controller_loss_timeout": 70, "io_qsize": 16,
         "sq_flow_control": False, "header_digests": False, "data_digests": False},
        make_cdata(nvmfd_server.subnqn), connected=False, last_disconnect=(1_700_000_000, 0))
    asked = []

    def resolve_host(hostnqn=None, hostid=None):
        asked.append(hostnqn)
        return host_identity

    info = backend(kernel, resolve_host=resolve_host).reconnect("/dev/nvme3ns1")
    assert asked == [host_identity.hostnqn]
    (_, request, payload), = [c for c in kernel.calls if c[0] == "copyin"]
    assert request == ioc.NVMF_RECONNECT_HOST
    nvl = unpack(payload)
    assert nvl["rparams"]["dle"] == saved_dle  # handed back unchanged, as FreeBSD does
    assert (nvl["kato"], nvl["reconnect_delay"], nvl["controller_loss_timeout"]) == (10_000, 7, 70)
    assert [q["qsize"] for q in nvl["io"]] == [16]
    assert info.name == "nvme3" and info.connected


def test_reconnect_to_a_new_address_keeps_the_saved_subsystem(nvmfd_server, host_identity):
    kernel = FakeKernel()
    stored_controller(kernel, 1, subnqn=nvmfd_server.subnqn, connected=False)
    params = ConnectParams(traddr=nvmfd_server.host, trsvcid=str(nvmfd_server.port),
                           subnqn="nqn.2024-06.org.example:ignored", hostnqn=host_identity.hostnqn,
                           hostid=str(host_identity.hostid), num_io_queues=1, timeout_s=5)
    backend(kernel, resolve_host=lambda **kw: host_identity).reconnect("nvme1", params)
    (_, _, payload), = [c for c in kernel.calls if c[0] == "copyin"]
    dle = decode_discovery_entry(unpack(payload)["rparams"]["dle"])
    assert (dle.subnqn, dle.trsvcid) == (nvmfd_server.subnqn, str(nvmfd_server.port))


def test_reconnect_refused_by_a_connected_controller(nvmfd_server, host_identity):
    kernel = FakeKernel()
    stored_controller(kernel, 0, subnqn=nvmfd_server.subnqn)
    kernel.controllers[0].rparams["dle"] = Binary(encode_discovery_entry(DiscoveryLogEntry(
        trtype=TrType.TCP, trsvcid=str(nvmfd_server.port), traddr=nvmfd_server.host,
        subnqn=nvmfd_server.subnqn)))
    kernel.controllers[0].rparams["num_io_queues"] = 1
    kernel.controllers[0].rparams["io_qsize"] = 16
    kernel.controllers[0].rparams["header_digests"] = False
    with pytest.raises(DeviceError, match="failed to hand off.*busy"):
        backend(kernel, resolve_host=lambda **kw: host_identity).reconnect("nvme0")
    assert kernel.open_fds == {}


def test_reconnect_of_a_pcie_controller():
    kernel = FakeKernel()
    stored_controller(kernel, 0, fabrics=False)
    with pytest.raises(UsageError, match="not a fabrics controller"):
        backend(kernel).reconnect("nvme0")
    with pytest.raises(NotFound):
        backend(kernel).reconnect("nvme4")


def test_disconnect_by_device_namespace_nda_and_subnqn():
    kernel = FakeKernel()
    for unit in (0, 1, 2):
        stored_controller(kernel, unit, subnqn=SUBNQN if unit < 2 else SUBNQN + "-b")
    kernel.nda["nda5"] = "nvme2"
    b = backend(kernel)
    assert b.disconnect("/dev/nvme0ns1") == ["nvme0"]
    assert b.disconnect("nda5") == ["nvme2"]
    assert b.disconnect(SUBNQN) == ["nvme1"]
    sent = [c[2] for c in kernel.calls if c[1] == ioc.NVMF_DISCONNECT_HOST]
    assert sent == ["nvme0", "nvme2", SUBNQN]
    with pytest.raises(NotFound, match="nvme7"):
        b.disconnect("nvme7")
    with pytest.raises(UsageError):
        b.disconnect("sda1")


def test_disconnect_all():
    kernel = FakeKernel()
    stored_controller(kernel, 0)
    stored_controller(kernel, 4)
    stored_controller(kernel, 5, fabrics=False)
    b = backend(kernel)
    assert b.disconnect_all() == ["nvme0", "nvme4"]
    assert b.disconnect_all() == []  # the kernel answers ENOENT when nothing is left
    assert [c[1] for c in kernel.calls] == [ioc.NVMF_DISCONNECT_ALL] * 2


def test_list_reports_connected_disconnected_and_skips_pcie():
    kernel = FakeKernel()
    stored_controller(kernel, 0)
    stored_controller(kernel, 1, fabrics=False)
    stored_controller(kernel, 2, connected=False, last_disconnect=(1_700_000_000, 500_000_000))
    kernel.controllers[0].namespaces = {1: (2048, 12), 3: (0, 9), 4: (100, 9)}
    infos = backend(kernel).list()
    assert [i.name for i in infos] == ["nvme0", "nvme2"]
    live, lost = infos
    assert live.connected and live.model == "FakeModel" and live.state == "live"
    assert [(n.nsid, n.size_bytes) for n in live.namespaces] == [(1, 2048 * 4096), (4, 51200)]
    assert live.params.num_io_queues == 4 and live.params.hdgst is True
    assert not lost.connected and lost.state == "disconnected"
    assert lost.disconnected_since == 1_700_000_000.5 and lost.namespaces == []
    assert lost.traddr == "192.0.2.10" and lost.subnqn == SUBNQN
    # no Identify for the disconnected one: the kernel would refuse it
    assert ("passthrough", 6, (1, 0)) in kernel.calls
    assert kernel.open_fds == {}


def test_find_matches_saved_parameters():
    kernel = FakeKernel()
    stored_controller(kernel, 6)
    b = backend(kernel)
    assert b.find(PARAMS).name == "nvme6"
    assert b.find(ConnectParams(traddr="192.0.2.11", trsvcid="4420", subnqn=SUBNQN,
                                hostnqn=HOST.hostnqn, hostid="")) is None


def test_passthrough_error_status():
    kernel = FakeKernel()
    stored_controller(kernel, 0)
    b = backend(kernel)
    fd = kernel.open("/dev/nvme0")
    with pytest.raises(CommandFailed, match="Identify Namespace 9"):
        b._admin(fd, "/dev/nvme0", admin.build_identify(0, nsid=9), "Identify Namespace 9", 4096)
