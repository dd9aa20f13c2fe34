"""Whether a backend can hold associations here, decided without importing it.

Listing devices (devlist, shell completion) asks every backend; importing one
only to hear "not on this system" cost a FreeBSD backend's whole stack on
Linux.  The backends' ``available()`` are these.
"""

from __future__ import annotations

import os
import sys

FREEBSD_CONTROL_DEVICE = "/dev/nvmf"


def linux_kernel(root: str = "/") -> bool:
    return os.path.exists(os.path.join(root, "dev/nvme-fabrics"))


def freebsd_kernel() -> bool:
    return sys.platform.startswith("freebsd") and os.path.exists(FREEBSD_CONTROL_DEVICE)


def userspace() -> bool:
    return hasattr(os, "fork")


BY_NAME = {"kernel": linux_kernel, "freebsd": freebsd_kernel, "nbd": userspace}
