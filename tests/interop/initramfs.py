"""Build the guest's initramfs: static busybox, kernel modules, init, agent.

Debian kernels build nvme, nvmet, 9p, null_blk etc. as modules, and the
package ships no ``modules.dep`` (depmod runs at install time), so the
load order is derived here from each module's ``.modinfo`` ``depends=``
field, read straight from the ELF section; no kmod needed on the host.
Modules are stored decompressed (``.ko.xz`` -> ``.ko``) because busybox
``insmod`` hands the file to ``init_module`` as is.

The archive is cpio "newc" (the format the kernel unpacks, see
Documentation/driver-api/early-userspace/buffer-format.rst) written in
Python, so no ``cpio`` package is needed, and gzip-compressed.  It is
cached by kernel release and a hash of everything that goes into it.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import stat
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import agent
from .kernel import Kernel, PrerequisiteMissing, cache_dir

BUSYBOX = Path("/bin/busybox")

# (module, insmod parameters).  "Required" ones must exist as a module file
# or be built in; the optional ones are loaded when the kernel has them.
REQUIRED_MODULES: tuple[tuple[str, str], ...] = (
    ("virtio_pci", ""),
    ("virtio_net", ""),
    ("9pnet_virtio", ""),
    ("9p", ""),
    ("configfs", ""),
    ("crc32c_generic", ""),
    ("nvme_core", ""),
    ("nvme_fabrics", ""),
    ("nvme_tcp", ""),
    ("nvmet", ""),
    ("nvmet_tcp", ""),
    # nr_devices=0: namespaces are created through configfs (nullb/), so a
    # test can have as many as it needs with the sizes it wants.
    ("null_blk", "nr_devices=0"),
    ("loop", ""),
    ("nbd", ""),
)
OPTIONAL_MODULES: tuple[tuple[str, str], ...] = (
    ("crc32c_intel", ""),  # faster digests; needs SSE4.2 (qemu -cpu max has it)
    ("nvme_keyring", ""),  # 6.12: TLS PSKs
    ("nvme_auth", ""),  # 6.12: DH-HMAC-CHAP
    ("tls", ""),  # 6.12: kernel TLS for nvme-tcp
)

# The init script runs as PID 1; it must never exit (the kernel would panic).
INIT_SCRIPT = f"""#!/bin/busybox sh
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
hostname interop-guest
while read -r mod args; do
    insmod "/lib/modules/$mod.ko" $args || echo "interop-init: insmod $mod failed"
done < /etc/modules.load
mount -t configfs configfs /sys/kernel/config
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
# The host root, read-only; bind mounts go on top of its existing
# /dev, /proc, /sys, /tmp, /run so a chroot there sees this kernel.
# 9p cache mode from the kernel command line (guest.py chooses it).
p9cache=none
for arg in $(cat /proc/cmdline); do
    case "$arg" in interop.p9cache=*) p9cache=${{arg#interop.p9cache=}} ;; esac
done
p9opts=trans=virtio,version=9p2000.L,ro,msize=262144
if mount -t 9p -o $p9opts,cache=$p9cache hostroot {agent.GUEST_HOSTROOT}; then
    for d in dev proc sys; do mount -o rbind /$d {agent.GUEST_HOSTROOT}/$d; done
    mount -t tmpfs tmpfs {agent.GUEST_HOSTROOT}/run
    # The host's /tmp (pytest's tmp_path) is hidden by the guest's own tmpfs;
    # tests write files there while the guest runs, so it comes from its
    # own 9p device, uncached (a 9p device serves only one mount).
    mkdir -p {agent.GUEST_HOSTROOT}{agent.HOST_TMP_IN_GUEST}
    mount -t 9p -o $p9opts,cache=none hosttmp {agent.GUEST_HOSTROOT}{agent.HOST_TMP_IN_GUEST} \
        || echo "interop-init: 9p mount of the host /tmp failed"
    mount -t tmpfs tmpfs {agent.GUEST_HOSTROOT}/tmp
else
    echo "interop-init: 9p mount of the host root failed"
fi
echo "interop-init: agent on port {agent.AGENT_PORT}, $(cut -d' ' -f1 /proc/uptime)s after boot"
while :; do
    nc -ll -p {agent.AGENT_PORT} -e /agent.sh
    sleep 1
done
"""


# --- kernel modules -------------------------------------------------------


def _norm(name: str) -> str:
    """Module names treat '-' and '_' alike (nvme-core.ko is nvme_core)."""
    return name.replace("-", "_")


def _module_stem(path: Path) -> str:
    name = path.name
    for suffix in (".ko.xz", ".ko.gz", ".ko.zst", ".ko"):
        if name.endswith(suffix):
            return _norm(name[: -len(suffix)])
    raise ValueError(path)


def read_module(path: Path) -> bytes:
    """The uncompressed .ko bytes."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        raise PrerequisiteMissing(f"{path}: zstd-compressed modules are not supported")
    return data


def parse_modinfo(elf: bytes) -> dict[str, list[str]]:
    """Key -> values from the ``.modinfo`` section of an ELF64 LE module.

    The section is a run of NUL-terminated ``key=value`` strings; keys such
    as ``alias`` repeat, hence lists.
    """
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise ValueError("not an ELF64 little-endian object")
    (shoff,) = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        base = shoff + i * shentsize
        (name,) = struct.unpack_from("<I", elf, base)
        offset, size = struct.unpack_from("<QQ", elf, base + 24)
        return name, offset, size

    _, str_off, str_size = section(shstrndx)
    strtab = elf[str_off : str_off + str_size]
    for i in range(shnum):
        name, offset, size = section(i)
        end = strtab.index(b"\0", name)
        if strtab[name:end] == b".modinfo":
            info: dict[str, list[str]] = {}
            for entry in elf[offset : offset + size].split(b"\0"):
                if b"=" in entry:
                    key, _, value = entry.decode(errors="replace").partition("=")
                    info.setdefault(key, []).append(value)
            return info
    return {}


def _softdeps(info: dict[str, list[str]]) -> list[str]:
    """Names from ``softdep=pre: a b post: c`` (pre-dependencies only)."""
    names: list[str] = []
    for value in info.get("softdep", []):
        pre = False
        for word in value.split():
            if word.endswith(":"):
                pre = word == "pre:"
            elif pre:
                names.append(_norm(word))
    return names


@dataclass(frozen=True)
class ModulePlan:
    """Modules to put in the initramfs, in load order, with their parameters."""

    order: tuple[tuple[str, Path, str], ...]  # (name, source file, params)
    builtin: tuple[str, ...]  # requested but built into the kernel
    missing_optional: tuple[str, ...]


def _builtin_names(kernel: Kernel) -> set[str]:
    path = kernel.modules_dir / "modules.builtin"
    if not path.exists():
        return set()
    return {_module_stem(Path(line.strip())) for line in path.read_text().splitlines() if line.strip()}


def plan_modules(kernel: Kernel) -> ModulePlan:
    """Resolve the wanted modules and their dependencies into a load order."""
    files = {_module_stem(p): p for p in kernel.modules_dir.rglob("*.ko*")}
    builtin = _builtin_names(kernel)
    params = {name: args for name, args in (*REQUIRED_MODULES, *OPTIONAL_MODULES)}
    wanted: list[str] = []
    seen_builtin: list[str] = []
    missing_optional: list[str] = []
    for name, _ in REQUIRED_MODULES:
        if name in files:
            wanted.append(name)
        elif name in builtin:
            seen_builtin.append(name)
        else:
            raise PrerequisiteMissing(f"kernel {kernel.release} has no module {name}")
    for name, _ in OPTIONAL_MODULES:
        if name in files:
            wanted.append(name)
        elif name in builtin:
            seen_builtin.append(name)
        else:
            missing_optional.append(name)

    infos: dict[str, dict[str, list[str]]] = {}
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        # Depth-first: dependencies land in `order` before their users.
        if name in order or name in builtin:
            return
        if name in visiting:
            raise PrerequisiteMissing(f"module dependency cycle through {name}")
        if name not in files:
            raise PrerequisiteMissing(f"kernel {kernel.release}: dependency {name} not found")
        visiting.add(name)
        info = infos.setdefault(name, parse_modinfo(read_module(files[name])))
        deps = [_norm(d) for v in info.get("depends", []) for d in v.split(",") if d]
        # Soft pre-dependencies may name aliases (e.g. "crc32c"); only
        # those that are real module files are followed.
        deps += [d for d in _softdeps(info) if d in files]
        for dep in deps:
            visit(dep)
        visiting.discard(name)
        order.append(name)

    for name in wanted:
        visit(name)
    return ModulePlan(
        tuple((n, files[n], params.get(n, "")) for n in order),
        tuple(seen_builtin),
        tuple(missing_optional),
    )


# --- cpio newc ------------------------------------------------------------


class CpioWriter:
    """Minimal cpio "newc" writer: directories, files, symlinks, device nodes."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        encoded = name.encode() + b"\0"
        fields = (
            self._ino, mode, 0, 0, 1, 0,  # ino, mode, uid, gid, nlink, mtime (0: reproducible)
            len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0,
        )  # fmt: skip
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._ino += 1
        self._chunks.append(header + encoded)
        self._pad()
        self._chunks.append(data)
        self._pad()

    def _pad(self) -> None:
        size = sum(len(c) for c in self._chunks)
        self._chunks.append(b"\0" * (-size % 4))

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        self._entry(name, stat.S_IFCHR | perm, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return b"".join(self._chunks)


# --- the archive ----------------------------------------------------------


def _check_static(path: Path) -> bytes:
    """Busybox bytes; refuse a dynamically linked one (no libc in the initramfs)."""
    if not path.is_file():
        raise PrerequisiteMissing(f"{path} not found (Debian package busybox-static)")
    data = path.read_bytes()
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        (p_type,) = struct.unpack_from("<I", data, phoff + i * phentsize)
        if p_type == 3:  # PT_INTERP: needs a dynamic loader
            raise PrerequisiteMissing(f"{path} is dynamically linked; install busybox-static")
    return data


def build_initramfs(kernel: Kernel, *, busybox: Path = BUSYBOX) -> Path:
    """Return a cached gzip'd cpio for *kernel*, building it if needed."""
    bb = _check_static(busybox)
    plan = plan_modules(kernel)
    modules_load = "".join(f"{name} {args}\n" for name, _, args in plan.order)
    key = hashlib.sha256()
    for part in (INIT_SCRIPT, agent.AGENT_SCRIPT, modules_load):
        key.update(part.encode() + b"\0")
    key.update(hashlib.sha256(bb).digest())
    out_dir = cache_dir() / "initramfs"
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{kernel.release}-{key.hexdigest()[:16]}.cpio.gz"
    if target.exists():
        return target

    cpio = CpioWriter()
    for d in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp",
              "run", "etc", "root", "lib", "lib/modules", agent.GUEST_HOSTROOT.strip("/")):  # fmt: skip
        cpio.directory(d)
    # The kernel opens /dev/console for init's stdio before devtmpfs exists.
    cpio.chardev("dev/console", 5, 1)
    cpio.file("bin/busybox", bb, 0o755)
    cpio.symlink("bin/sh", "busybox")
    cpio.file("init", INIT_SCRIPT.encode(), 0o755)
    cpio.file("agent.sh", agent.AGENT_SCRIPT.encode(), 0o755)
    cpio.file("etc/modules.load", modules_load.encode())
    for name, path, _ in plan.order:
        cpio.file(f"lib/modules/{name}.ko", read_module(path))

    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".build-")
    try:
        with os.fdopen(fd, "wb") as raw:
            raw.write(gzip.compress(cpio.finish(), compresslevel=6, mtime=0))
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
    _prune(out_dir, kernel.release, keep=target)
    return target


# Initramfs images kept per kernel release: a few checkouts with different
# init scripts may share the cache, but edits must not pile up forever.
KEEP_PER_RELEASE = 3


def _prune(out_dir: Path, release: str, keep: Path) -> None:
    images = sorted(out_dir.glob(f"{release}-*.cpio.gz"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in images[KEEP_PER_RELEASE:]:
        if old != keep:
            old.unlink(missing_ok=True)


def check_busybox(path: Path = BUSYBOX) -> None:
    """Raise PrerequisiteMissing unless *path* is a statically linked busybox."""
    _check_static(path)
