"""The names of controllers and namespaces, kernel's and sessions', without their machinery.

Commands look at a target's form first (a kernel device, a session, an
address) and load only what that kind needs: these parsers import nothing
but ``re`` (start-up of identify, logpage, resv, devlist).
"""

from __future__ import annotations

import re

from nvmecontrol.wire.records import Record

# nvme0, nvme0n1, FreeBSD's nvme0ns1, with or without /dev/; also the
# per-path node nvme0c1n1 (subsystem 0, controller 1) the kernel creates
# under native multipath.
_DEVICE_RE = re.compile(r"^(?:/dev/)?(nvme(\d+))(?:(?:c(\d+)n|n(?:s)?)(\d+))?$")


class DeviceName(Record):
    """A kernel device name, taken apart."""

    __slots__ = ("controller", "instance", "nsid", "path_instance")

    def __init__(self, controller: str, instance: int, nsid: int | None,
                 path_instance: int | None = None):
        self.controller = controller  # nvmeX
        self.instance = instance
        self.nsid = nsid  # from the name (nvmeXnY), if any
        # Y of a per-path node nvmeXcYnZ: the controller behind that path (X is
        # then the subsystem's instance).
        self.path_instance = path_instance

    @property
    def path(self) -> str:
        if self.nsid is None:
            return f"/dev/{self.controller}"
        if self.path_instance is not None:
            return f"/dev/{self.controller}c{self.path_instance}n{self.nsid}"
        return f"/dev/{self.controller}n{self.nsid}"


def parse_device_name(text: str) -> DeviceName | None:
    """A kernel device name, or None when ``text`` is not of that form."""
    m = _DEVICE_RE.match(text)
    if not m:
        return None
    return DeviceName(m.group(1), int(m.group(2)), int(m.group(4)) if m.group(4) else None,
                      int(m.group(3)) if m.group(3) else None)


# Session and namespace names: nvmeuN, nvmeuNnsM (ours), nvmeuNnM (nvme-cli's form).
_NAME_RE = re.compile(r"^(?:/dev/)?(nvmeu(\d+))(?:ns(\d+)|n(\d+))?$")


def parse_session_name(name: str) -> tuple[str, int | None] | None:
    """``nvmeu0`` / ``nvmeu0ns1`` / ``nvmeu0n1`` -> (session, nsid or None)."""
    m = _NAME_RE.match(name)
    if m is None:
        return None
    nsid = m.group(3) or m.group(4)
    return m.group(1), int(nsid) if nsid else None
