"""Attaching an NBD export to the kernel's nbd driver (/dev/nbdX) with nbd-client.

Only where the kernel has nbd (``/sys/module/nbd`` or ``/dev/nbd0``) and
nbd-client is installed; otherwise the export stays reachable over its
socket for userspace clients (nbdinfo, nbdcopy, qemu-img, nbdfuse, fio).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

from nvmecontrol.errors import DeviceError, Unsupported

ATTACH_TIMEOUT_S = 30.0


def kernel_has_nbd() -> bool:
    return os.path.isdir("/sys/module/nbd") or os.path.exists("/dev/nbd0")


def _free_device() -> str:
    n = 0
    while os.path.exists(f"/sys/block/nbd{n}"):
        # A connected device has a pid file (the client that holds it).
        if not os.path.exists(f"/sys/block/nbd{n}/pid"):
            return f"/dev/nbd{n}"
        n += 1
    raise DeviceError("no free /dev/nbdX device (load nbd with more nbds_max)")


def attach(socket_path: str, export: str) -> str:
    """Attach ``export`` served on ``socket_path``; returns the device path."""
    if not kernel_has_nbd():
        raise Unsupported("the kernel has no nbd driver (modprobe nbd)")
    client = shutil.which("nbd-client")
    if client is None:
        raise Unsupported("nbd-client is not installed (Debian package nbd-client)")
    device = _free_device()
    proc = subprocess.run([client, "-unix", socket_path, device, "-N", export],
                          capture_output=True, text=True, timeout=ATTACH_TIMEOUT_S)
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise DeviceError(f"nbd-client could not attach {device}: {msg[-1] if msg else proc.returncode}")
    deadline = time.monotonic() + 5.0
    name = os.path.basename(device)
    while not os.path.exists(f"/sys/block/{name}/pid") and time.monotonic() < deadline:
        time.sleep(0.05)
    return device


def detach(device: str) -> None:
    client = shutil.which("nbd-client")
    if client is None:
        return
    subprocess.run([client, "-d", device], capture_output=True, timeout=ATTACH_TIMEOUT_S)
