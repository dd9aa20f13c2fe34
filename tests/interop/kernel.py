"""Obtain a Debian kernel to run as the NVMe/TCP peer in a qemu guest.

The machine's own kernel has no nvme/nvmet support and cannot load modules
(see ``linux-peer-facts.md``), so the interop tier boots a stock Debian
kernel.  This module owns getting that kernel: resolve the meta package
(``linux-image-6.12-amd64``) to the versioned image package it depends on,
``apt-get download`` it and unpack it with ``dpkg-deb -x`` into a per-user
cache directory.  Nothing is ever written into the repository or ``/boot``.

Environment:
  ``NVMECONTROL_INTEROP_KERNEL``  package to use (default ``linux-image-6.12-amd64``;
                                  ``linux-image-amd64`` gives 6.1, which lacks
                                  DH-HMAC-CHAP and TLS).
  ``NVMECONTROL_INTEROP_CACHE``   cache directory (default
                                  ``~/.cache/nvmecontrol-interop``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

DEFAULT_PACKAGE = "linux-image-6.12-amd64"
ENV_KERNEL = "NVMECONTROL_INTEROP_KERNEL"
ENV_CACHE = "NVMECONTROL_INTEROP_CACHE"

# A meta package points at the versioned image through at most a couple of
# other meta packages; the bound stops a dependency cycle from looping.
MAX_META_HOPS = 4

# apt-get on a slow mirror; the 6.12 image is ~110 MB.
DOWNLOAD_TIMEOUT_S = 900
# Asking apt which image a meta package means costs ~2 s; an answer younger
# than this is reused (a new security kernel is picked up the next day).
RESOLVE_TTL_S = 24 * 3600

_IMAGE_DEP = re.compile(r"^\s*\|?Depends:\s*(linux-image-\S+)\s*$")


class PrerequisiteMissing(RuntimeError):
    """Something the interop tier needs (a tool, a package) is not available.

    The conftest turns this into a skip, or a failure when ``CI=true``.
    """


@dataclass(frozen=True)
class Kernel:
    """An unpacked kernel image package."""

    package: str  # versioned package name, e.g. linux-image-6.12.117+deb12-amd64
    package_version: str  # Debian version, e.g. 6.12.117-1~deb12u1
    release: str  # `uname -r` of the guest, e.g. 6.12.117+deb12-amd64
    root: Path  # where the package was unpacked
    vmlinuz: Path
    modules_dir: Path  # root/lib/modules/<release>

    def config(self, option: str) -> str | None:
        """Value of ``CONFIG_<option>`` ("y", "m", ...) or None if unset.

        Lets tests gate on features: ``kernel.config("NVME_TARGET_AUTH")``
        is None on Debian's 6.1, "y" on 6.12.
        """
        path = self.root / "boot" / f"config-{self.release}"
        prefix = f"CONFIG_{option}="
        for line in path.read_text().splitlines():
            if line.startswith(prefix):
                return line[len(prefix) :].strip('"')
        return None


def cache_dir() -> Path:
    """The cache directory, created if needed; refuses paths inside a git checkout."""
    env = os.environ.get(ENV_CACHE)
    path = Path(env) if env else Path.home() / ".cache" / "nvmecontrol-interop"
    path = path.expanduser().resolve()
    # Unpacked kernels are hundreds of MB: keep them out of any repository.
    for parent in (path, *path.parents):
        if (parent / ".git").exists():
            raise PrerequisiteMissing(f"interop cache {path} is inside the git checkout {parent}")
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def cache_lock(name: str) -> Iterator[None]:
    """Serialize cache writers (e.g. pytest-xdist workers) with an flock."""
    lock_path = cache_dir() / f".{name}.lock"
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(argv: list[str], *, cwd: Path | None = None, timeout: float = 120) -> str:
    if shutil.which(argv[0]) is None:
        raise PrerequisiteMissing(f"{argv[0]} not found (Debian host with apt needed)")
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise PrerequisiteMissing(
            f"`{' '.join(argv)}` failed ({proc.returncode}): {proc.stderr.strip()[-500:]}"
        )
    return proc.stdout


def _image_dependency(package: str) -> str | None:
    """The linux-image-* package that *package* depends on, if any."""
    for line in _run(["apt-cache", "depends", package]).splitlines():
        m = _IMAGE_DEP.match(line)
        if m and m.group(1) != package:
            return m.group(1)
    return None


def resolve_package(package: str) -> str:
    """Follow meta packages down to the versioned image package.

    ``linux-image-6.12-amd64`` depends on ``linux-image-6.12.117+deb12-amd64``,
    which ships the vmlinuz; the versioned package itself depends on no other
    ``linux-image-*`` package, which is how the walk knows it has arrived.
    """
    current = package
    for _ in range(MAX_META_HOPS):
        dep = _image_dependency(current)
        if dep is None:
            return current
        current = dep
    raise PrerequisiteMissing(f"cannot resolve {package}: too many meta-package hops")


def package_version(package: str) -> str:
    out = _run(["apt-cache", "show", "--no-all-versions", package])
    for line in out.splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    raise PrerequisiteMissing(f"apt-cache show {package}: no Version field")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+_-]", "_", name)


def _describe(root: Path, package: str, version: str) -> Kernel:
    releases = sorted(p.name for p in (root / "lib" / "modules").iterdir() if p.is_dir())
    if len(releases) != 1:
        raise PrerequisiteMissing(f"{root}: expected one lib/modules/<release>, found {releases}")
    release = releases[0]
    vmlinuz = root / "boot" / f"vmlinuz-{release}"
    if not vmlinuz.is_file():
        raise PrerequisiteMissing(f"{vmlinuz} missing from {package}")
    return Kernel(package, version, release, root, vmlinuz, root / "lib" / "modules" / release)


def _cached_kernels(cache: Path, meta: str, max_age_s: float | None = None) -> Kernel | None:
    """The kernel last resolved for *meta* (at most *max_age_s* ago, if given)."""
    pointer = cache / f"resolved-{_safe(meta)}"
    if not pointer.is_file():
        return None
    if max_age_s is not None and time.time() - pointer.stat().st_mtime > max_age_s:
        return None
    package, version = pointer.read_text().split()
    root = cache / "kernels" / f"{_safe(package)}_{_safe(version)}"
    if not (root / ".complete").exists():
        return None
    return _describe(root, package, version)


def fetch_kernel(package: str | None = None) -> Kernel:
    """Download (once) and unpack the kernel package; return where its parts are.

    A resolution from the last day is reused without asking apt.  If apt
    cannot resolve the package (offline machine) but an earlier run left an
    unpacked kernel for the same request in the cache, that is used.
    """
    meta = package or os.environ.get(ENV_KERNEL) or DEFAULT_PACKAGE
    cache = cache_dir()
    with cache_lock("kernel"):
        fresh = _cached_kernels(cache, meta, RESOLVE_TTL_S)
        if fresh is not None:
            return fresh
        try:
            real = resolve_package(meta)
            version = package_version(real)
        except PrerequisiteMissing:
            cached = _cached_kernels(cache, meta)
            if cached is None:
                raise
            return cached
        root = cache / "kernels" / f"{_safe(real)}_{_safe(version)}"
        if not (root / ".complete").exists():
            _download_and_unpack(real, version, root)
        (cache / f"resolved-{_safe(meta)}").write_text(f"{real} {version}\n")
        return _describe(root, real, version)


def _download_and_unpack(package: str, version: str, root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=".download-") as tmp:
        argv = ["apt-get", "download", f"{package}={version}"]
        if os.geteuid() == 0:
            # As root apt drops to the `_apt` user, which cannot write into a
            # private cache; it then warns and downloads unsandboxed anyway.
            argv[1:1] = ["-o", "APT::Sandbox::User=root"]
        _run(argv, cwd=Path(tmp), timeout=DOWNLOAD_TIMEOUT_S)
        debs = list(Path(tmp).glob("*.deb"))
        if len(debs) != 1:
            raise PrerequisiteMissing(f"apt-get download {package}: got {debs}")
        staging = Path(tmp) / "root"
        _run(["dpkg-deb", "-x", str(debs[0]), str(staging)], timeout=600)
        (staging / ".complete").write_text(f"{package} {version}\n")
        # The .deb is dropped with the temporary directory: only the
        # unpacked tree is needed and it is what the cache key names.
        staging.rename(root)
