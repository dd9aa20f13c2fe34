"""Kernel device nodes for passthrough: opening one, and finding the node of an NSID.

NVM commands go through NVME_IOCTL_IO_CMD on a namespace's block node, admin
commands through NVME_IOCTL_ADMIN_CMD on any node of the controller
(``KernelController`` in ``linux_admin``).  A node's name does not tell the
NSID (``nvmeXnY``: Y is the kernel's instance of the namespace head, usually
but not always the NSID), so a controller's namespace is found through
sysfs, where each disk has an ``nsid`` attribute.  Under native multipath
the usable node is the subsystem's head disk, which ``Sysfs.namespaces``
already resolves.
"""

from __future__ import annotations

from nvmecontrol.backends.linux_admin import DeviceName, KernelController, parse_device_name
from nvmecontrol.backends.linux_sysfs import Sysfs
from nvmecontrol.errors import NotFound

# Where device nodes and sysfs are (tests point them at a directory of their own).
DEV_ROOT = "/dev"
SYSROOT = "/"


def open_device(name: DeviceName) -> KernelController:
    """The node ``name`` (NotFound / DeviceError when it cannot be opened)."""
    return KernelController(name, dev_root=DEV_ROOT)


def open_namespace_node(controller: str, nsid: int) -> KernelController:
    """The block node of namespace ``nsid`` of kernel controller ``controller`` (``nvme0``)."""
    for ns in Sysfs(SYSROOT).namespaces(controller):
        name = parse_device_name(ns.name)
        if ns.nsid == nsid and name is not None:
            return open_device(name)
    raise NotFound(f"{controller} has no block device for namespace {nsid} "
                   "(not attached, or not active)")
