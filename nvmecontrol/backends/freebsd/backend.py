"""FreeBSD's kernel host (nvmf(4)) as an association backend.

``connect`` hands the live association's sockets and queue state to
``/dev/nvmf`` (``NVMF_HANDOFF_HOST``); the kernel attaches ``nvmeX`` with
``nvmeXnsY``/``ndaN`` namespaces and takes the sockets over.  As libnvmf
does, the sockets stay open until the ioctl returns and are then closed
here: the kernel holds its own references.  Disconnect, reconnect and
listing use the ioctls of sys/dev/nvmf/nvmf.h; on connection loss the
kernel keeps ``nvmeX`` and asks devd to run ``nvmecontrol reconnect``,
which fetches the saved parameters (``NVMF_RECONNECT_PARAMS``), builds a
new association in userspace and hands it to ``/dev/nvmeX``
(``NVMF_RECONNECT_HOST``).

Every open and ioctl goes through ``System`` (``ioctl.py``) so the whole
backend runs against a fake kernel in tests.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import os
import re
import sys
import time
from collections.abc import Callable

from nvmecontrol.backends import presence
from nvmecontrol.backends.base import AssociationBackend
from nvmecontrol.backends.freebsd import ioctl as ioc
from nvmecontrol.backends.freebsd.handoff import decode_reconnect_params, pack_handoff
from nvmecontrol.backends.freebsd.nvlist import unpack
from nvmecontrol.backends.model import ConnectParams, ControllerInfo, NamespaceInfo
from nvmecontrol.errors import (CommandFailed, DeviceError, NotFound, NvmeControlError, Unsupported,
                                UsageError)
from nvmecontrol.host.association import connect_association
from nvmecontrol.hostid import resolve_host_identity
from nvmecontrol.nqn import is_valid_nqn, looks_like_nqn
from nvmecontrol.transport.address import Address, format_address
from nvmecontrol.wire import admin
from nvmecontrol.wire.identify import (CNS_ACTIVE_NSID_LIST, CNS_CONTROLLER, CNS_NAMESPACE,
                                       IDENTIFY_DATA_SIZE, decode_active_nsid_list,
                                       decode_identify_controller, decode_identify_namespace)
from nvmecontrol.wire.status import describe_status, status_is_error

CONTROL_DEVICE = presence.FREEBSD_CONTROL_DEVICE
DEV = "/dev"
# devlist.c scans nvme0 through NVME_MAX_UNIT (256) inclusive.
NVME_MAX_UNIT = 256
# Identify returns at most 1024 NSIDs per page; stop at the reserved range.
NSID_LIST_ENTRIES = 1024
NSID_LAST_VALID = 0xFFFFFFFD

_NAME_RE = re.compile(r"^(?:/dev/)?(?:(nvme(\d+))(?:ns(\d+))?|(nda\d+))$")


def _strerror(e: OSError) -> str:
    return os.strerror(e.errno) if e.errno else str(e)


class FreeBsdBackend(AssociationBackend):
    """Associations held by FreeBSD's nvmf(4) kernel host."""

    name = "freebsd"

    def __init__(self, system: ioc.System | None = None, *, platform: str | None = None,
                 connect: Callable = connect_association,
                 resolve_host: Callable = resolve_host_identity,
                 now: Callable[[], float] = time.time):
        self.system = system or ioc.System()
        self.platform = sys.platform if platform is None else platform
        self._connect = connect
        self._resolve_host = resolve_host
        self._now = now

    @classmethod
    def available(cls) -> bool:
        return presence.freebsd_kernel()

    def owns(self, name: str) -> bool:
        return self.platform.startswith("freebsd") and _NAME_RE.match(name) is not None

    def _require_freebsd(self) -> None:
        if not self.platform.startswith("freebsd"):
            raise Unsupported(f"the freebsd backend needs FreeBSD's nvmf(4); "
                              f"this system is {self.platform}")

    # -- system calls, errors turned into sentences --
    def _open(self, path: str, flags: int = os.O_RDWR) -> int:
        try:
            return self.system.open(path, flags)
        except FileNotFoundError:
            if path == CONTROL_DEVICE:
                raise DeviceError(f"{path} does not exist: "
                                  "is the nvmf kernel module loaded?") from None
            raise NotFound(f"{path}: no such device") from None
        except PermissionError:
            raise DeviceError(f"{path}: permission denied (root is needed)") from None
        except OSError as e:
            raise DeviceError(f"{path}: {_strerror(e)}") from None

    def _close(self, fd: int) -> None:
        try:
            self.system.close(fd)
        except OSError:
            pass

    # -- names --
    def _controller_of(self, name: str) -> str:
        """``nvmeX`` for a controller, namespace or nda(4) name."""
        m = _NAME_RE.match(name)
        if m is None:
            raise UsageError(f"{name!r} is not a FreeBSD NVMe device name (nvmeX, nvmeXnsY, ndaN)")
        if m.group(1):
            return m.group(1)
        return self._controller_of_nda(m.group(4))

    def _controller_of_nda(self, nda: str) -> str:
        path = f"{DEV}/{nda}"
        fd = self._open(path, os.O_RDONLY)
        try:
            arg = bytearray(ioc.GET_NSID_SIZE)
            self.system.ioctl(fd, ioc.NVME_GET_NSID, arg)
        except OSError as e:
            raise DeviceError(f"{path}: cannot find its controller: {_strerror(e)}") from None
        finally:
            self._close(fd)
        cdev = bytes(arg[:ioc.GET_NSID_CDEV_SIZE]).split(b"\x00", 1)[0].decode("ascii", "replace")
        m = _NAME_RE.match(cdev)
        if m is None or not m.group(1):
            raise DeviceError(f"{path}: the kernel names its controller {cdev!r}")
        return m.group(1)

    # -- connect --
    def connect(self, assoc, params: ConnectParams, dle: bytes | None = None) -> ControllerInfo:
        try:
            self._require_freebsd()
            payload = pack_handoff(assoc, params, dle)
            fd = self._open(CONTROL_DEVICE)
        except BaseException:
            assoc.shutdown()  # nothing reached the kernel: end the association cleanly
            raise
        before = self._units()
        try:
            self._hand_over(fd, ioc.NVMF_HANDOFF_HOST, payload, assoc, CONTROL_DEVICE)
        finally:
            self._close(fd)
        for unit in sorted(self._units() - before):
            info = self._describe(unit, deep=True)
            if info is not None and info.subnqn == assoc.subnqn:
                return info
        return self._info_from_assoc("", assoc, params)

    def _hand_over(self, fd: int, request: int, payload: bytes, assoc, path: str) -> None:
        """The handoff ioctl; our sockets close once it returns, whatever it says."""
        try:
            # Python's socket timeouts put the descriptors in O_NONBLOCK;
            # hand the kernel plain blocking sockets, as libnvmf does.
            for queue in [assoc.admin, *assoc.io]:
                queue.driver.sock.setblocking(True)
            ioc.ioc_nv_write(self.system, fd, request, payload)
        except OSError as e:
            raise DeviceError(f"{path}: failed to hand off queues to the kernel: "
                              f"{_strerror(e)}") from None
        finally:
            assoc.close()

    # -- disconnect --
    def disconnect(self, name: str) -> list[str]:
        self._require_freebsd()
        bare = name[len(DEV) + 1:] if name.startswith(DEV + "/") else name
        if looks_like_nqn(bare):
            if not is_valid_nqn(bare, strict=False):
                raise UsageError(f"invalid subsystem NQN {bare!r}")
            names = [i.name for i in self._scan(deep=False) if i.subnqn == bare] or [bare]
            target = bare
        else:
            target = self._controller_of(bare)
            names = [target]
        fd = self._open(CONTROL_DEVICE)
        # name_buf must outlive the ioctl: the kernel copies the string in
        # through the pointer held in arg.
        arg, name_buf = ioc.string_arg(target)
        try:
            self.system.ioctl(fd, ioc.NVMF_DISCONNECT_HOST, arg)
        except OSError as e:
            if e.errno == errno.ENOENT:
                raise NotFound(f"no fabrics controller matches {name}") from None
            raise DeviceError(f"failed to disconnect from {name}: {_strerror(e)}") from None
        finally:
            self._close(fd)
            del name_buf
        return names

    def disconnect_all(self) -> list[str]:
        self._require_freebsd()
        names = [info.name for info in self._scan(deep=False)]
        fd = self._open(CONTROL_DEVICE)
        try:
            self.system.ioctl(fd, ioc.NVMF_DISCONNECT_ALL)
        except OSError as e:
            if e.errno == errno.ENOENT:  # the kernel's answer when there was none
                return []
            raise DeviceError(f"failed to disconnect from remote controllers: "
                              f"{_strerror(e)}") from None
        finally:
            self._close(fd)
        return names

    # -- reconnect --
    def reconnect(self, name: str, params: ConnectParams | None = None) -> ControllerInfo:
        self._require_freebsd()
        controller = self._controller_of(name)
        unit = int(controller[4:])
        path = f"{DEV}/{controller}"
        fd = self._open(path)
        try:
            rp = self._read_nvlist(fd, ioc.NVMF_RECONNECT_PARAMS, path)
            if rp is None:
                raise UsageError(f"{path} is not a fabrics controller")
            saved, dle = decode_reconnect_params(rp, hostid="")
            if params is None:
                # The kernel saved the host NQN, not the host ID.
                host = self._resolve_host(hostnqn=saved.hostnqn)
                cparams = dataclasses.replace(saved, hostid=str(host.hostid))
            else:
                # As FreeBSD's reconnect to a new address: the subsystem and
                # CNTLID are the saved ones, everything else is the caller's,
                # and the entry is made afresh from the new connection.
                cparams = dataclasses.replace(params, subnqn=saved.subnqn, cntlid=saved.cntlid)
                host = self._resolve_host(hostnqn=cparams.hostnqn, hostid=cparams.hostid or None)
                dle = None
            if not str(cparams.trsvcid).isdigit():
                raise DeviceError(f"{path}: saved port {cparams.trsvcid!r} is not a number")
            address = Address(cparams.traddr, int(cparams.trsvcid),
                              format_address(cparams.traddr, cparams.trsvcid))
            assoc = self._connect(address, cparams.subnqn, host, cparams.association_params())
            try:
                payload = pack_handoff(assoc, cparams, dle)
            except BaseException:
                assoc.shutdown()
                raise
            self._hand_over(fd, ioc.NVMF_RECONNECT_HOST, payload, assoc, path)
        finally:
            self._close(fd)
        info = self._describe(unit, deep=True)
        return info if info is not None else self._info_from_assoc(controller, assoc, cparams)

    # -- listing --
    def list(self) -> list[ControllerInfo]:
        self._require_freebsd()
        return self._scan(deep=True)

    def _units(self) -> set[int]:
        return {n for n in range(NVME_MAX_UNIT + 1) if self.system.exists(f"{DEV}/nvme{n}")}

    def _scan(self, *, deep: bool) -> list[ControllerInfo]:
        found = []
        for unit in sorted(self._units()):
            info = self._describe(unit, deep=deep)
            if info is not None:
                found.append(info)
        return found

    def _read_nvlist(self, fd: int, request: int, path: str) -> dict | None:
        """A copied-out nvlist, or None when the device does not know the request."""
        try:
            raw = ioc.ioc_nv_read(self.system, fd, request)
        except OSError as e:
            if e.errno == errno.ENOTTY:
                return None  # nvme(4) PCIe controllers, and kernels without the request
            raise DeviceError(f"{path}: {_strerror(e)}") from None
        return unpack(raw)

    def _describe(self, unit: int, *, deep: bool) -> ControllerInfo | None:
        """A fabrics controller's info (None for other devices); ``deep`` adds Identify data."""
        name = f"nvme{unit}"
        path = f"{DEV}/{name}"
        try:
            fd = self.system.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            try:
                rp = self._read_nvlist(fd, ioc.NVMF_RECONNECT_PARAMS, path)
            except DeviceError:
                return None  # one broken device must not hide the others
            if rp is None:
                return None
            info = ControllerInfo(name=name, backend=self.name, hostnqn=str(rp.get("hostnqn", "")))
            try:
                params, _dle = decode_reconnect_params(rp, hostid="")
            except NvmeControlError:
                params = None
            if params is not None:
                info.params = params
                info.subnqn, info.traddr = params.subnqn, params.traddr
                info.trsvcid = params.trsvcid
                info.cntlid = params.cntlid
            try:
                status = self._read_nvlist(fd, ioc.NVMF_CONNECTION_STATUS, path)
            except DeviceError:
                status = None  # as devlist: without a status, assume connected
            if status is not None and status.get("connected") is False:
                info.connected, info.state = False, "disconnected"
                ts = status.get("last_disconnect") or {}
                info.disconnected_since = ts.get("tv_sec", 0) + ts.get("tv_nsec", 0) / 1e9
            if deep and info.connected:
                try:
                    self._identify(fd, path, info)
                except NvmeControlError:
                    pass  # the association may drop while we ask; list what we know
            return info
        finally:
            self._close(fd)

    # -- admin commands through the kernel's association --
    def _admin(self, fd: int, path: str, sqe, what: str, read_len: int) -> bytes:
        buf = ctypes.create_string_buffer(read_len)
        arg = ioc.pt_command(sqe.opc, nsid=sqe.nsid,
                             cdw=(sqe.cdw10, sqe.cdw11, sqe.cdw12, sqe.cdw13, sqe.cdw14, sqe.cdw15),
                             buf_addr=ioc.address_of(buf), length=read_len)
        try:
            self.system.ioctl(fd, ioc.NVME_PASSTHROUGH_CMD, arg)
        except OSError as e:
            raise DeviceError(f"{path}: {what}: {_strerror(e)}") from None
        _cdw0, raw_status = ioc.pt_completion(arg)
        status = raw_status >> 1  # bit 0 is the phase tag
        if status_is_error(status):
            raise CommandFailed(f"{what} failed: {describe_status(status)}", status)
        return buf.raw

    def _identify(self, fd: int, path: str, info: ControllerInfo) -> None:
        cdata = decode_identify_controller(
            self._admin(fd, path, admin.build_identify(CNS_CONTROLLER), "Identify Controller",
                        IDENTIFY_DATA_SIZE))
        info.model = cdata.mn
        info.subnqn = info.subnqn or cdata.subnqn
        unit = info.name[4:]
        for nsid in self._active_nsids(fd, path):
            ns = decode_identify_namespace(
                self._admin(fd, path, admin.build_identify(CNS_NAMESPACE, nsid=nsid),
                            f"Identify Namespace {nsid}", IDENTIFY_DATA_SIZE))
            if ns.nsze == 0:
                continue
            block = ns.block_size()
            info.namespaces.append(NamespaceInfo(
                name=f"nvme{unit}ns{nsid}", nsid=nsid, size_bytes=ns.nsze * block,
                lba_size=block, path=f"{DEV}/nvme{unit}ns{nsid}"))

    def _active_nsids(self, fd: int, path: str) -> list[int]:
        nsids: list[int] = []
        start = 0
        while True:
            page = decode_active_nsid_list(
                self._admin(fd, path, admin.build_identify(CNS_ACTIVE_NSID_LIST, nsid=start),
                            "Identify Active Namespace List", IDENTIFY_DATA_SIZE))
            nsids.extend(page)
            if len(page) < NSID_LIST_ENTRIES or page[-1] >= NSID_LAST_VALID:
                return nsids
            start = page[-1]

    def _info_from_assoc(self, name: str, assoc, params: ConnectParams) -> ControllerInfo:
        model = getattr(assoc.cdata, "mn", "") or ""
        return ControllerInfo(name=name, backend=self.name, model=model, subnqn=assoc.subnqn,
                              traddr=params.traddr, trsvcid=str(params.trsvcid),
                              hostnqn=assoc.host.hostnqn, cntlid=assoc.cntlid, params=params)

