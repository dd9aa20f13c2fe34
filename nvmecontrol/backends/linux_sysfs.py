"""Linux kernel NVMe controllers and namespaces, read from sysfs.

Attributes of ``/sys/class/nvme/nvmeN`` (drivers/nvme/host/sysfs.c since
6.8, core.c before): ``state``, ``transport``, ``address``
(``traddr=..,trsvcid=..[,host_traddr=..][,host_iface=..][,src_addr=..]`` on
fabrics, the PCI address on pcie), ``subsysnqn``, ``hostnqn``, ``hostid``,
``cntlid``, ``model`` (space padded), ``queue_count`` (I/O queues + 1),
``sqsize`` (0's based), ``kato``, ``reconnect_delay`` and ``ctrl_loss_tmo``
(both "off" for -1).  Fabrics-only attributes are absent on pcie.

Namespace block devices, by the kernel's naming (multipath.c):

- multipath off: ``nvme<ctrl>n<k>``, a child of the controller;
- multipath on, shared namespace: a hidden per-path disk ``nvme<subsys>c<ctrl>n<k>``
  under the controller and the usable node ``nvme<subsys>n<k>`` under
  ``/sys/class/nvme-subsystem/nvme-subsys<subsys>/``;
- multipath on, private namespace: ``nvme<subsys>n<k>`` under the controller.

``k`` is the namespace head's instance, not always the NSID: the NSID comes
from the disk's ``nsid`` attribute.  Sizes are ``size`` (512-byte sectors)
and ``queue/logical_block_size``.  Identifiers are ``nguid`` and ``uuid``
(printed as UUIDs) and ``eui`` (bytes separated by spaces), each absent
when the controller reports none; ``ana_grpid`` and ``ana_state`` exist on
a per-path disk when the controller uses ANA (the state through that path).
"""

from __future__ import annotations

import os
import re

# backends.model (the records devlist reports) is imported by the methods
# that build them: identify and logpage on a device only look a node up.
TYPE_CHECKING = False  # typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from nvmecontrol.backends.model import ConnectParams, ControllerInfo, NamespaceInfo

CLASS_NVME = "sys/class/nvme"
CLASS_SUBSYS = "sys/class/nvme-subsystem"
SYS_BLOCK = "sys/block"
SECTOR_SIZE = 512  # the unit of every block device's "size" attribute
# Transports whose controllers the kernel dialled from an options string.
FABRICS_TRANSPORTS = frozenset({"tcp", "rdma", "fc", "loop"})

_CTRL_RE = re.compile(r"^nvme(\d+)$")
_NS_RE = re.compile(r"^nvme(\d+)n(\d+)$")
_PATH_RE = re.compile(r"^nvme(\d+)c(\d+)n(\d+)$")


def parse_address(text: str) -> dict[str, str]:
    """``traddr=a,trsvcid=p,src_addr=s`` as a dict; a PCI address as its traddr."""
    if "=" not in text:
        return {"traddr": text.strip()} if text.strip() else {}
    out = {}
    for part in text.strip().split(","):
        key, sep, value = part.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _int(text: str | None, default: int) -> int:
    """A sysfs integer; "off" is the kernel's spelling of -1."""
    if text is None:
        return default
    if text == "off":
        return -1
    try:
        return int(text, 0)
    except ValueError:
        return default


def _secret(text: str | None) -> str | None:
    """A DH-HMAC-CHAP secret attribute: the DHHC-1 text, or None ("none", unreadable
    without root, or a kernel without authentication)."""
    return text if text and text.startswith("DHHC-1:") else None


def _hex_id(text: str | None, size: int) -> str | None:
    """An identifier attribute as lowercase hex digits (None: absent or all zero).

    ``nguid`` reads as a UUID (dashes), ``eui`` as bytes with spaces."""
    if not text:
        return None
    digits = "".join(c for c in text.lower() if c in "0123456789abcdef")
    if len(digits) != 2 * size or not digits.strip("0"):
        return None
    return digits


def _uuid(text: str | None) -> str | None:
    digits = _hex_id(text, 16)
    if digits is None:
        return None
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").strip()
    except OSError:  # absent, or the controller went away while we looked
        return None


def _instance(name: str) -> int:
    m = re.search(r"\d+", name)
    return int(m.group()) if m else -1


class Sysfs:
    """A sysfs tree under ``root`` ("/" on a live system, a tmp_path in tests)."""

    def __init__(self, root: str = "/"):
        self.root = root

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def read(self, *parts: str) -> str | None:
        """An attribute's text without the trailing newline, or None when unreadable."""
        return _read(self.path(*parts))

    def write(self, name: str, attr: str, value: str = "1") -> None:
        """Write a controller attribute; OSError as the kernel gave it."""
        fd = os.open(self.path(CLASS_NVME, name, attr), os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode("ascii"))
        finally:
            os.close(fd)

    def has_controller(self, name: str) -> bool:
        return bool(_CTRL_RE.match(name)) and os.path.isdir(self.path(CLASS_NVME, name))

    def controller_names(self) -> list[str]:
        try:
            names = [n for n in os.listdir(self.path(CLASS_NVME)) if _CTRL_RE.match(n)]
        except OSError:
            return []
        return sorted(names, key=_instance)

    def state(self, name: str) -> str | None:
        return self.read(CLASS_NVME, name, "state")

    # -- namespaces --
    def _disk_dir(self, disk: str, *fallbacks: str) -> str | None:
        for d in (self.path(SYS_BLOCK, disk),) + fallbacks:
            if os.path.isdir(d):
                return d
        return None

    def namespace_names(self, name: str) -> list[tuple[str, str]]:
        """(usable disk name, its sysfs directory) for each namespace of controller ``name``."""
        ctrl_dir = self.path(CLASS_NVME, name)
        try:
            entries = sorted(os.listdir(ctrl_dir))
        except OSError:
            return []
        found: dict[str, str] = {}
        for entry in entries:
            if _NS_RE.match(entry):
                disk, where = entry, self._disk_dir(entry, os.path.join(ctrl_dir, entry))
            elif m := _PATH_RE.match(entry):
                # A hidden path: the node to use is the subsystem's head disk,
                # which exists only once a path went live.
                disk = f"nvme{m.group(1)}n{m.group(3)}"
                where = self._disk_dir(disk, self.path(CLASS_SUBSYS, f"nvme-subsys{m.group(1)}", disk))
            else:
                continue
            if where is not None and disk not in found:
                found[disk] = where
        return list(found.items())

    def namespace(self, disk: str, where: str, path_dir: str | None = None) -> NamespaceInfo:
        """The namespace ``disk`` (sysfs directory ``where``); ``path_dir`` is its
        per-path disk under one controller, where the ANA state through it is."""
        from nvmecontrol.backends.model import NamespaceInfo

        def attr(*parts):
            return _read(os.path.join(where, *parts))

        # Without an nsid attribute the name's last number is the best guess.
        nsid = _int(attr("nsid"), int(disk.rsplit("n", 1)[1]))
        ana_dir = path_dir or where
        grpid = _read(os.path.join(ana_dir, "ana_grpid"))
        return NamespaceInfo(name=disk, nsid=nsid,
                             size_bytes=_int(attr("size"), 0) * SECTOR_SIZE,
                             lba_size=_int(attr("queue", "logical_block_size"), SECTOR_SIZE),
                             path=f"/dev/{disk}",
                             nguid=_hex_id(attr("nguid"), 16), eui64=_hex_id(attr("eui"), 8),
                             uuid=_uuid(attr("uuid")),
                             anagrpid=_int(grpid, 0) if grpid is not None else None,
                             ana_state=_read(os.path.join(ana_dir, "ana_state")) or None)

    def namespace_path_dirs(self, name: str) -> dict[str, str]:
        """Head disk name -> its per-path disk directory under controller ``name``."""
        ctrl_dir = self.path(CLASS_NVME, name)
        try:
            entries = os.listdir(ctrl_dir)
        except OSError:
            return {}
        return {f"nvme{m.group(1)}n{m.group(3)}": os.path.join(ctrl_dir, e)
                for e in entries if (m := _PATH_RE.match(e))}

    def namespaces(self, name: str) -> list[NamespaceInfo]:
        paths = self.namespace_path_dirs(name)
        out = [self.namespace(disk, where, paths.get(disk))
               for disk, where in self.namespace_names(name)]
        return sorted(out, key=lambda ns: (ns.nsid, ns.name))

    # -- controllers --
    def params(self, name: str) -> ConnectParams | None:
        """What would dial this association again; None for pcie or unknown transports.

        sysfs does not show digests or SQ flow control: those stay at their
        defaults (off; flow control disabled).
        """
        from nvmecontrol.backends.model import (DEFAULT_CTRL_LOSS_TMO_S, DEFAULT_KATO_S,
                                                DEFAULT_RECONNECT_DELAY_S, ConnectParams)

        d = (CLASS_NVME, name)
        transport = (self.read(*d, "transport") or "").lower()
        addr = parse_address(self.read(*d, "address") or "")
        if transport not in FABRICS_TRANSPORTS or "traddr" not in addr:
            return None
        queue_count = _int(self.read(*d, "queue_count"), 0)
        sqsize = _int(self.read(*d, "sqsize"), -1)
        return ConnectParams(
            traddr=addr["traddr"], trsvcid=addr.get("trsvcid", ""),
            subnqn=self.read(*d, "subsysnqn") or "",
            hostnqn=self.read(*d, "hostnqn") or "",
            hostid=self.read(*d, "hostid") or "",
            transport=transport,
            num_io_queues=max(queue_count - 1, 0),
            queue_size=sqsize + 1 if sqsize >= 0 else 0,
            kato_s=_int(self.read(*d, "kato"), DEFAULT_KATO_S),
            reconnect_delay_s=_int(self.read(*d, "reconnect_delay"), DEFAULT_RECONNECT_DELAY_S),
            ctrl_loss_tmo_s=_int(self.read(*d, "ctrl_loss_tmo"), DEFAULT_CTRL_LOSS_TMO_S),
            dhchap_secret=_secret(self.read(*d, "dhchap_secret")),
            dhchap_ctrl_secret=_secret(self.read(*d, "dhchap_ctrl_secret")))

    def controller(self, name: str) -> ControllerInfo | None:
        from nvmecontrol.backends.model import ControllerInfo

        if not self.has_controller(name):
            return None
        d = (CLASS_NVME, name)
        state = self.read(*d, "state") or "unknown"
        transport = (self.read(*d, "transport") or "").lower()
        addr = parse_address(self.read(*d, "address") or "")
        return ControllerInfo(
            name=name, backend="kernel",
            model=self.read(*d, "model") or "",
            subnqn=self.read(*d, "subsysnqn") or "",
            transport=transport,
            traddr=addr.get("traddr", ""), trsvcid=addr.get("trsvcid", ""),
            hostnqn=self.read(*d, "hostnqn") or "",
            cntlid=_int(self.read(*d, "cntlid"), 0),
            state=state, connected=state == "live",
            namespaces=self.namespaces(name),
            params=self.params(name))

    def controllers(self) -> list[ControllerInfo]:
        out = []
        for name in self.controller_names():
            info = self.controller(name)
            if info is not None:  # gone between listdir and reading it
                out.append(info)
        return out

    def controllers_of_namespace(self, disk: str) -> list[str]:
        """Every controller through which the namespace node ``disk`` is reached."""
        return [c for c in self.controller_names()
                if any(d == disk for d, _ in self.namespace_names(c))]

    def controllers_of_subsystem(self, subnqn: str) -> list[str]:
        return [c for c in self.controller_names() if self.read(CLASS_NVME, c, "subsysnqn") == subnqn]
