"""The Linux kernel as the home of associations (``--backend kernel``).

A Linux kernel cannot adopt our sockets: after the userspace pre-flight has
proved the association (host allowed, parameters accepted), ``connect``
shuts it down and has the kernel dial again from an options string written
to ``/dev/nvme-fabrics`` (see ``linux_fabrics``).  Controllers are then
found, disconnected (``delete_controller``) and reset (``reset_controller``)
through sysfs (``linux_sysfs``).  Reconnection after a loss is the kernel's
own business (every reconnect_delay until ctrl_loss_tmo); ``reconnect``
only forces it.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import time

from nvmecontrol.backends import presence
from nvmecontrol.backends.base import AssociationBackend
from nvmecontrol.backends.linux_admin import parse_device_name
from nvmecontrol.backends.linux_fabrics import (AlreadyConnected, FabricsDevice, add_controller,
                                                build_options, supported_options)
from nvmecontrol.backends.linux_sysfs import FABRICS_TRANSPORTS, Sysfs
from nvmecontrol.backends.model import REDACTED, ConnectParams, ControllerInfo
from nvmecontrol.backends.runtime import locked
from nvmecontrol.errors import (ConnectError, DeviceError, NotFound, NvmeControlError,
                                UsageError)
from nvmecontrol.nqn import is_discovery_nqn
from nvmecontrol.transport.address import Address, adrfam_of, resolve
from nvmecontrol.wire.identify import CNS_ACTIVE_NSID_LIST, decode_active_nsid_list

# How long connect and reconnect wait for "live" and the namespaces: the
# kernel creates the controller synchronously but scans namespaces after.
SETTLE_S = 5.0
POLL_S = 0.05
# Serializes connects: the duplicate check and the add must not interleave.
CONNECT_LOCK = "nvme-fabrics"
# States in which the kernel is already re-dialling by itself.
RECONNECTING_STATES = ("resetting", "connecting")
# States of a controller on its way out: it no longer stands for its association.
GOING_STATES = ("deleting", "deleting (no IO)", "dead")


class LinuxKernelBackend(AssociationBackend):
    """Controllers held by the Linux NVMe host driver."""

    name = "kernel"

    def __init__(self, *, root: str = "/", fabrics: FabricsDevice | None = None, environ=None,
                 clock=time.monotonic, sleep=time.sleep, settle_s: float = SETTLE_S):
        self.sysfs = Sysfs(root)
        self.fabrics = fabrics or FabricsDevice(os.path.join(root, "dev/nvme-fabrics"))
        self.environ = environ
        self._clock = clock
        self._sleep = sleep
        self.settle_s = settle_s

    @classmethod
    def available(cls, root: str = "/") -> bool:
        return presence.linux_kernel(root)

    def owns(self, name: str) -> bool:
        return parse_device_name(name) is not None

    def list(self) -> list[ControllerInfo]:
        return self.sysfs.controllers()

    def find(self, params: ConnectParams) -> ControllerInfo | None:
        # sysfs shows the numeric address the kernel dialled, so a host name
        # matches through what it resolves to.
        wanted = [params] + [dataclasses.replace(params, traddr=h) for h in _resolved_hosts(params)]
        for info in self.list():
            # The kernel's own duplicate check (nvmf_ctlr_matches_baseopts) skips these too.
            if info.state in GOING_STATES or info.params is None:
                continue
            if any(info.params.same_association(p) for p in wanted):
                return info
        return None

    # -- connect --
    def connect(self, assoc, params: ConnectParams, dle: bytes | None = None) -> ControllerInfo:
        # dle is not kept: sysfs holds what reconnect needs.
        expected = _active_nsids(assoc, params.subnqn)
        params = _numeric_traddr(assoc, params)
        if assoc is not None:
            assoc.shutdown()
        with locked(CONNECT_LOCK, environ=self.environ):
            existing = self.find(params)
            if existing is not None:
                return existing
            instance, warnings = self._add(params)
        info = self._settle(f"nvme{instance}", len(expected))
        info.warnings = warnings + _unsettled(info, len(expected), self.settle_s)
        return info

    def _add(self, params: ConnectParams) -> tuple[int, list[str]]:
        """Hand ``params`` to the kernel: the new instance and the options left out."""
        built = build_options(params, supported=supported_options(self.fabrics))
        try:
            instance, _cntlid = add_controller(built.text, self.fabrics)
        except AlreadyConnected:
            # Someone else (nvme-cli, udev's connect-all) added it after
            # find() looked: hand that one back.
            existing = self.find(params)
            if existing is None:
                raise
            return int(existing.name[len("nvme"):]), built.warnings
        return instance, built.warnings

    def _settle(self, name: str, namespaces: int) -> ControllerInfo:
        """The controller once live with its namespaces, or as it is after SETTLE_S."""
        deadline = self._clock() + self.settle_s
        while True:
            info = self.sysfs.controller(name)
            if info is None:
                raise DeviceError(f"{name} disappeared right after the kernel created it "
                                  f"(the kernel log says why)")
            if info.state == "live" and len(info.namespaces) >= namespaces:
                return info
            if self._clock() >= deadline:
                return info
            self._sleep(POLL_S)

    # -- naming --
    def resolve(self, name: str) -> list[str]:
        """The controllers ``name`` means: a controller, a namespace node or a SubNQN."""
        dev = parse_device_name(name)
        if dev is None:
            ctrls = self.sysfs.controllers_of_subsystem(name)
            if not ctrls:
                raise NotFound(f"{name}: no NVMe controller, namespace or subsystem of that name")
            return ctrls
        if dev.nsid is None:
            if not self.sysfs.has_controller(dev.controller):
                raise NotFound(f"{name}: no such NVMe controller")
            return [dev.controller]
        if dev.path_instance is not None:
            ctrl = f"nvme{dev.path_instance}"
            if not self.sysfs.has_controller(ctrl):
                raise NotFound(f"{name}: no such NVMe controller path")
            return [ctrl]
        ctrls = self.sysfs.controllers_of_namespace(f"{dev.controller}n{dev.nsid}")
        if not ctrls and self.sysfs.has_controller(dev.controller):
            # FreeBSD's nvmeXnsY: namespace Y of controller X, whatever the node is called.
            if any(ns.nsid == dev.nsid for ns in self.sysfs.namespaces(dev.controller)):
                ctrls = [dev.controller]
        if not ctrls:
            raise NotFound(f"{name}: no such NVMe namespace")
        return ctrls

    def _fabrics_controller(self, ctrl: str, what: str) -> ControllerInfo:
        info = self.sysfs.controller(ctrl)
        if info is None:
            raise NotFound(f"{ctrl}: no such NVMe controller")
        if info.transport not in FABRICS_TRANSPORTS:
            raise UsageError(f"{ctrl} is a {info.transport or 'local'} controller; "
                             f"only NVMe over Fabrics controllers can be {what}")
        return info

    def _write(self, ctrl: str, attr: str) -> None:
        try:
            self.sysfs.write(ctrl, attr)
        except OSError as e:
            raise _write_error(ctrl, attr, e) from None

    # -- disconnect --
    def disconnect(self, name: str) -> list[str]:
        deleted = []
        for ctrl in self.resolve(name):
            with locked(ctrl, environ=self.environ):
                self._fabrics_controller(ctrl, "disconnected")
                self._write(ctrl, "delete_controller")
            deleted.append(ctrl)
        return deleted

    def disconnect_all(self) -> list[str]:
        names = []
        for info in self.list():
            if info.transport in FABRICS_TRANSPORTS:
                names.extend(self.disconnect(info.name))
        return names

    # -- reconnect --
    def reconnect(self, name: str, params: ConnectParams | None = None) -> ControllerInfo:
        ctrls = self.resolve(name)
        if len(ctrls) != 1:
            raise UsageError(f"{name} is reached through {len(ctrls)} controllers "
                             f"({', '.join(ctrls)}); name one of them")
        ctrl = ctrls[0]
        info = self._fabrics_controller(ctrl, "reconnected")
        if params is None:
            return self._reset(ctrl, info)
        return self._move(ctrl, info, params)

    def _reset(self, ctrl: str, info: ControllerInfo) -> ControllerInfo:
        """A new association at the same address: reset_controller, and the kernel re-dials."""
        with locked(ctrl, environ=self.environ):
            # A controller already re-dialling refuses a reset (EBUSY): wait for it instead.
            if info.state not in RECONNECTING_STATES:
                try:
                    self.sysfs.write(ctrl, "reset_controller")
                except OSError as e:
                    # ENETRESET: the reset ran but the re-dial failed; the
                    # kernel keeps trying, and _settle sees the state.
                    if e.errno not in (errno.ENETRESET, errno.EBUSY):
                        raise _write_error(ctrl, "reset_controller", e) from None
            info = self._settle(ctrl, 0)
        if info.state != "live":
            delay = info.params.reconnect_delay_s if info.params else "?"
            tmo = info.params.ctrl_loss_tmo_s if info.params else "?"
            # sysfs shows "off" (-1 here) for a controller kept for ever.
            until = "for ever (no ctrl_loss_tmo)" if isinstance(tmo, int) and tmo <= 0 \
                else f"until ctrl_loss_tmo ({tmo} s)"
            raise ConnectError(f"{ctrl}: not live again ({info.state}); the kernel retries every "
                               f"{delay} s {until}")
        return info

    def _move(self, ctrl: str, info: ControllerInfo, params: ConnectParams) -> ControllerInfo:
        """The saved association at a new address.

        The new controller is added before the old one is deleted, so a bad
        address leaves the old one (and its namespaces) in place, and under
        multipath I/O continues on the new path.  At the same address the old
        one has to go first or the kernel reports a duplicate.
        """
        if info.params is None:
            raise UsageError(f"{ctrl}: sysfs shows no address to start from")
        # sysfs does not show digests or flow control: those come from params.
        # The DH-HMAC-CHAP secrets come from sysfs (root reads them) unless
        # new ones were given: params rebuilt from devlist hold only "<set>".
        secrets = {name: getattr(params, name) for name in ("dhchap_secret", "dhchap_ctrl_secret")
                   if getattr(params, name) not in (None, REDACTED)}
        new = dataclasses.replace(info.params, traddr=params.traddr, trsvcid=str(params.trsvcid),
                                  hdgst=params.hdgst, ddgst=params.ddgst,
                                  sq_flow_control=params.sq_flow_control, **secrets)
        same_place = info.params.same_association(new)
        with locked(ctrl, environ=self.environ):
            if same_place:
                self._write(ctrl, "delete_controller")
            with locked(CONNECT_LOCK, environ=self.environ):
                instance, warnings = self._add(new)
            if not same_place:
                self._write(ctrl, "delete_controller")
        moved = self._settle(f"nvme{instance}", len(info.namespaces))
        moved.warnings = warnings + _unsettled(moved, len(info.namespaces), self.settle_s)
        return moved


def _unsettled(info: ControllerInfo, namespaces: int, waited_s: float) -> list[str]:
    """What had not happened yet when we stopped waiting (the kernel carries on)."""
    out = []
    if info.state != "live":
        out.append(f"still {info.state} after {waited_s:g} s")
    if len(info.namespaces) < namespaces:
        out.append(f"{len(info.namespaces)} of {namespaces} namespaces visible so far")
    return out


def _write_error(ctrl: str, attr: str, e: OSError) -> NvmeControlError:
    if isinstance(e, FileNotFoundError):
        return NotFound(f"{ctrl}: no such NVMe controller (or no {attr})")
    if isinstance(e, PermissionError):
        return DeviceError(f"{ctrl}: writing {attr} needs root")
    if e.errno == errno.EBUSY and attr == "delete_controller":
        return DeviceError(f"{ctrl}: the kernel will not delete a controller that has not "
                           f"been live yet; try again")
    return DeviceError(f"{ctrl}: {attr}: {os.strerror(e.errno)}")


def _numeric_traddr(assoc, params: ConnectParams) -> ConnectParams:
    """The kernel takes traddr through inet_pton: a host name becomes the address that answered."""
    if adrfam_of(params.traddr) is not None:
        return params
    tq = getattr(getattr(assoc, "admin", None), "tq", None)
    peer = getattr(tq, "peer", None)
    hosts = [peer[0]] if peer else _resolved_hosts(params)
    return dataclasses.replace(params, traddr=hosts[0]) if hosts else params


def _resolved_hosts(params: ConnectParams) -> list[str]:
    """The numeric addresses of a host-name traddr (none for a numeric one or a failure)."""
    if adrfam_of(params.traddr) is not None or not str(params.trsvcid).isdigit():
        return []
    try:
        infos = resolve(Address(params.traddr, int(params.trsvcid), params.address_text))
    except NvmeControlError:
        return []
    return [sockaddr[0] for _family, sockaddr in infos]


def _active_nsids(assoc, subnqn: str) -> list[int]:
    """The NSIDs the pre-flight saw, so connect knows how many nodes to wait for."""
    if assoc is None or is_discovery_nqn(subnqn):
        return []
    try:
        return decode_active_nsid_list(assoc.identify(CNS_ACTIVE_NSID_LIST))
    except NvmeControlError:
        return []
