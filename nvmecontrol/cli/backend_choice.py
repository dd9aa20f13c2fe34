"""Which backend ``connect`` uses, said in one line when ``auto`` settles for NBD.

``--backend auto`` prefers the kernel host; a user who gets a userspace NBD
session instead should learn why, and what would give them /dev/nvmeXnY.
When such a session cannot attach its exports to /dev/nbdX, that is said
too, with what is missing (the daemon only reports attach attempts that
failed).  The choice and the reasons are the API's (``api.fabrics``).
"""

from __future__ import annotations

from nvmecontrol.api.fabrics import attach_problem, choose_backend, why_not_kernel
from nvmecontrol.cli.output import warn


def choose(name: str, *, nbd_listen: str | None, attach: bool):
    """The backend for ``--backend name``."""
    return choose_backend(name, nbd_listen=nbd_listen, attach=attach)


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
