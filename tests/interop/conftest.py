"""Fixtures for the interop tier: one Linux guest per session, nvmet on demand.

Every test collected under this directory gets the ``interop`` marker, so
``-m "not interop"`` leaves the tier out.

Prerequisite policy: without qemu-system-x86_64, a static busybox or the
kernel package, tests are skipped with a one-line reason, except under CI
(``CI=true``), where that is a failure: a CI run that silently skipped the
kernel peer would look green while testing nothing.  A guest that has the
prerequisites but fails to boot is always an error.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterator, NoReturn

import pytest

from .guest import LinuxGuest, check_qemu
from .guest_cli import GuestCli
from .initramfs import check_busybox
from .kernel import PrerequisiteMissing, fetch_kernel
from .nvmet import KernelTarget

HERE = Path(__file__).resolve().parent
_boot_report: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "interop: needs the Linux kernel peer in a qemu guest (slow)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees the whole session's items, not just this directory's.
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.interop)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _boot_report:
        terminalreporter.write_line(line)


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"interop prerequisites missing under CI: {reason}", pytrace=False)
    pytest.skip(f"interop: {reason}")


@pytest.fixture(scope="session")
def linux_guest(request: pytest.FixtureRequest) -> Iterator[LinuxGuest]:
    """A booted guest shared by the whole session (boot costs 6-11 s under TCG)."""
    try:
        check_qemu()
        check_busybox()
        kernel = fetch_kernel()
    except PrerequisiteMissing as exc:
        missing = str(exc)
    else:
        missing = None
    if missing is not None:
        _unavailable(missing)  # outside the except: no chained traceback
    guest = LinuxGuest(kernel)
    request.addfinalizer(guest.stop)
    t0 = time.monotonic()
    guest.start()
    line = (
        f"interop: guest {kernel.release} booted in {time.monotonic() - t0:.1f}s wall "
        f"({guest.accel}, agent answered after {guest.boot_time_s:.1f}s)"
    )
    _boot_report.append(line)
    print(line)
    yield guest


@pytest.fixture
def kernel_target(linux_guest: LinuxGuest) -> Iterator[KernelTarget]:
    """The guest's nvmet, empty at the start and cleared after the test.

    ``kernel_target.apply(NvmetConfig(...))`` returns ("127.0.0.1", port),
    the host side of the guest's forwarded port 4420.
    """
    if not linux_guest.alive:
        # An earlier test took the guest down (e.g. a kernel panic): give
        # the following tests a fresh one rather than a cascade of errors.
        _boot_report.append("interop: guest was dead, restarted\n" + linux_guest.diagnostics(15))
        linux_guest.restart()
    target = KernelTarget(linux_guest)
    yield target
    if linux_guest.alive:
        target.clear()


@pytest.fixture(scope="session")
def _guest_cli_server(linux_guest: LinuxGuest) -> Iterator[GuestCli]:
    cli = GuestCli(linux_guest)
    yield cli
    cli.stop()


@pytest.fixture
def guest_cli(linux_guest: LinuxGuest, _guest_cli_server: GuestCli) -> GuestCli:
    """``nvmecontrol`` in the guest as root: ``guest_cli("devlist")`` -> Result.

    A warm server started once per guest boot (see ``guest_cli.py``): each
    command is its own forked process, without Python's start-up cost.
    """
    return _guest_cli_server.ensure()
