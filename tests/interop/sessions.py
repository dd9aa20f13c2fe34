"""Userspace sessions started on the host by interop tests, their tools and their end."""

from __future__ import annotations

import os
import shutil
import signal

import pytest

from nvmecontrol.backends.userspace.backend import UserspaceBackend, process_alive
from nvmecontrol.cli.app import main


# Host tools the session tests drive (they also run inside the guest's chroot).
PACKAGES = {"nbdcopy": "libnbd-bin", "fio": "fio", "nbd-client": "nbd-client"}


def need(*tools: str) -> None:
    """Skip without the tools, or fail under CI (as the tier's other prerequisites)."""
    missing = [t for t in tools if shutil.which(t) is None]
    if not missing:
        return
    msg = "interop: not installed: " + ", ".join(f"{t} ({PACKAGES.get(t, t)})" for t in missing)
    if os.environ.get("CI") == "true":
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


def end_sessions() -> None:
    """disconnect-all, then make sure no session process of this test survives.

    The runtime directory is the test's own (tests/conftest.py), so this
    only touches sessions the test started.
    """
    pids = [c.pid for c in UserspaceBackend().list()]
    main(["disconnect-all"])
    for pid in pids:
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)
