"""Which backend ``connect`` uses, said in one line when ``auto`` settles for NBD.

``--backend auto`` prefers the kernel host; a user who gets a userspace NBD
session instead should learn why, and what would give them /dev/nvmeXnY.
When such a session cannot attach its exports to /dev/nbdX, that is said
too, with what is missing (the daemon only reports attach attempts that
failed).
"""

from __future__ import annotations

import sys

from nvmecontrol.cli.output import warn


def why_not_kernel(platform: str | None = None) -> str:
    """Why ``auto`` found no kernel NVMe/TCP host here, and the fix."""
    plat = sys.platform if platform is None else platform
    if plat.startswith("linux"):
        return ("no /dev/nvme-fabrics (the nvme-tcp module is not loaded: "
                "modprobe nvme-tcp for /dev/nvmeXnY)")
    if plat.startswith("freebsd"):
        return "no /dev/nvmf (kldload nvmf_tcp for the kernel host, FreeBSD 15 and later)"
    return f"no kernel NVMe/TCP host on {plat}"


def choose(name: str, *, nbd_listen: str | None, attach: bool):
    """The backend for ``--backend name`` (``select.choose``)."""
    from nvmecontrol.backends import select

    return select.choose(name, nbd_tcp=nbd_listen, attach=attach)


def report(name: str, results, attach: bool) -> None:
    """After connecting: once, why ``auto`` made sessions, and what keeps them off /dev/nbdX.

    Only for ``auto``: who asked for ``--backend nbd`` knows what they get.
    """
    made = [r.info.name for r in results if not r.existing and r.info.backend == "nbd"]
    if name != "auto" or not made:
        return
    warn(f"using a userspace NBD session: {why_not_kernel()}")
    problem = attach_problem(attach)
    if problem:
        warn(f"{', '.join(made)}: {problem}; the NBD URIs reach the namespaces")


def attach_problem(attach: bool) -> str | None:
    """Why a session's exports will not appear as /dev/nbdX, or None."""
    if not attach:
        return None
    from nvmecontrol.backends.userspace import attach as nbd_attach

    if not nbd_attach.kernel_has_nbd():
        return "not attached to /dev/nbdX: the kernel has no nbd driver (modprobe nbd)"
    return None
