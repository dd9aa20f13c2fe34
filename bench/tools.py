"""The external tools: fio (nbd engine), nbdkit (memory plugin), libnbd-bin.

Missing ones are installed with apt-get (through sudo when not root), and
only when missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

# tool -> Debian package
TOOLS = {"fio": "fio", "nbdkit": "nbdkit", "nbdinfo": "libnbd-bin"}
PACKAGES = ["fio", "nbdkit", "libnbd-bin"]


class ToolError(RuntimeError):
    pass


def missing() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


def ensure(install: bool = True) -> None:
    """Make sure fio and nbdkit are there; install the Debian packages if not."""
    lack = missing()
    if not lack:
        return
    what = ", ".join(f"{t} ({TOOLS[t]})" for t in lack)
    if not install:
        raise ToolError(f"not installed: {what}")
    if shutil.which("apt-get") is None:
        raise ToolError(f"not installed: {what}; no apt-get here: install "
                        f"{' '.join(PACKAGES)} yourself")
    prefix = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            raise ToolError(f"not installed: {what}; not root and no sudo")
        prefix = ["sudo"]
    print(f"bench: installing {' '.join(PACKAGES)} (missing: {what})", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = prefix + ["apt-get", "install", "-y", *PACKAGES]
    if subprocess.run(cmd, env=env).returncode:
        # A fresh container often has no package lists yet.
        subprocess.run(prefix + ["apt-get", "update"], env=env)
        if subprocess.run(cmd, env=env).returncode:
            raise ToolError(f"apt-get install {' '.join(PACKAGES)} failed")
    lack = missing()
    if lack:
        raise ToolError(f"still not installed after apt-get: {', '.join(lack)}")
    check_fio_nbd()


def check_fio_nbd() -> None:
    out = subprocess.run(["fio", "--enghelp"], capture_output=True, text=True).stdout
    if "nbd" not in out.split():
        raise ToolError("this fio has no nbd ioengine (fio --enghelp)")
