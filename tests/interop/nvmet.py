"""Configure the guest kernel's NVMe target (nvmet) from a declarative description.

A test states the subsystems, hosts and ports it wants (dataclasses below);
``render_apply`` turns that into one shell script that ``KernelTarget`` runs
in the guest's busybox root through the agent.  Every ``apply`` first tears
the whole configuration down, so tests can reconfigure freely.

configfs layout (Documentation/nvme/nvmet ... and drivers/nvme/target/configfs.c):
``/sys/kernel/config/nvmet/{subsystems,hosts,ports}``; a subsystem links its
``allowed_hosts/`` to ``hosts/``, a port links ``subsystems/``.  Namespaces
are backed by null_blk devices created through ``/sys/kernel/config/nullb``
(null_blk is loaded with ``nr_devices=0``), by a file, or by a loop device
over a file; files live in the guest's tmpfs, i.e. in guest RAM.

Attributes the running kernel may lack (6.1 has no ``dhchap_*``): explicitly
requested subsystem/host attributes fail the apply; port ``params`` are
written only where the attribute exists and the rest are reported in
``Applied.skipped`` (e.g. ``addr_tsas`` on 6.1).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .guest import LinuxGuest

NVMET = "/sys/kernel/config/nvmet"
NULLB = "/sys/kernel/config/nullb"
# Our null_blk devices: 6.12 names the disk after the configfs directory, so
# the prefix must not look like "nvme*" (tests glob /dev/nvme*n1) or "nullb".
NULLB_PREFIX = "tgtnull"
FILE_PREFIX = "/tmp/nvmet-backing-"
LOOP_RECORD = "/run/nvmet-loops"

Backend = Literal["null_blk", "file", "loop"]


@dataclass
class Namespace:
    nsid: int
    size_mib: int = 64
    # null_blk with memory_backed=1 keeps written data (RAM); "file" gives
    # nvmet's file backend, "loop" a block device over a file.
    backend: Backend = "null_blk"
    uuid: str | None = None
    nguid: str | None = None
    blocksize: int = 512  # null_blk only
    enable: bool = True


@dataclass
class Subsystem:
    nqn: str
    namespaces: list[Namespace] = field(default_factory=list)
    allow_any_host: bool = True
    allowed_hosts: list[str] = field(default_factory=list)
    serial: str | None = None
    model: str | None = None
    # Further attr_* files by name without the prefix, e.g. {"cntlid_min": "5"}.
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass
class Host:
    nqn: str
    # DH-HMAC-CHAP (kernel >= 6.0 with NVME_TARGET_AUTH); keys in DHHC-1 form.
    dhchap_key: str | None = None
    dhchap_ctrl_key: str | None = None
    dhchap_hash: str | None = None  # e.g. "hmac(sha256)"
    dhchap_dhgroup: str | None = None  # e.g. "ffdhe2048" or "null"


@dataclass
class Referral:
    name: str
    traddr: str
    trsvcid: int = 4420
    portid: int | None = None
    trtype: str = "tcp"
    adrfam: str = "ipv4"


@dataclass
class Port:
    portid: int = 1
    trsvcid: int = 4420
    traddr: str = "0.0.0.0"
    trtype: str = "tcp"
    adrfam: str = "ipv4"
    subsystems: list[str] = field(default_factory=list)  # NQNs to expose
    referrals: list[Referral] = field(default_factory=list)
    # Written only if present in this kernel, e.g. {"addr_tsas": "tls1.3",
    # "param_inline_data_size": "16384"}.
    params: dict[str, str] = field(default_factory=dict)


@dataclass
class NvmetConfig:
    subsystems: list[Subsystem] = field(default_factory=list)
    hosts: list[Host] = field(default_factory=list)
    ports: list[Port] = field(default_factory=list)


@dataclass(frozen=True)
class Applied:
    """What ``apply`` did: backing devices per (nqn, nsid), skipped port params."""

    devices: dict[tuple[str, int], str]
    skipped: tuple[str, ...]
    output: str


# --- script generation ----------------------------------------------------

_PRELUDE = """\
fail() { echo "nvmet: $*" >&2; exit 1; }
w() { printf '%s\\n' "$2" > "$1" || fail "cannot write '$2' to $1"; }
need() { [ -e "$1" ] || fail "$1 not supported by kernel $(uname -r)"; }
"""

TEARDOWN_SCRIPT = f"""\
# Hosts in this guest connected to our subsystems would retry for minutes.
for c in /sys/class/nvme-fabrics/ctl/nvme*; do
    [ -e "$c/delete_controller" ] && echo 1 > "$c/delete_controller"
done
for p in {NVMET}/ports/*; do
    [ -d "$p" ] || continue
    rm -f "$p"/subsystems/*
    for r in "$p"/referrals/*; do
        [ -d "$r" ] || continue
        echo 0 > "$r/enable"; rmdir "$r"
    done
    rmdir "$p"
done
for s in {NVMET}/subsystems/*; do
    [ -d "$s" ] || continue
    rm -f "$s"/allowed_hosts/*
    for n in "$s"/namespaces/*; do
        [ -d "$n" ] || continue
        echo 0 > "$n/enable"; rmdir "$n"
    done
    rmdir "$s"
done
for h in {NVMET}/hosts/*; do [ -d "$h" ] && rmdir "$h"; done
for d in {NULLB}/{NULLB_PREFIX}*; do
    [ -d "$d" ] || continue
    echo 0 > "$d/power"; rmdir "$d"
done
if [ -f {LOOP_RECORD} ]; then
    for l in $(cat {LOOP_RECORD}); do losetup -d "$l"; done
    rm -f {LOOP_RECORD}
fi
rm -f {FILE_PREFIX}*
left=$(ls {NVMET}/subsystems; ls {NVMET}/ports; ls {NVMET}/hosts)
[ -z "$left" ] || {{ echo "nvmet: teardown left: $left" >&2; exit 1; }}
exit 0
"""


def _q(value: object) -> str:
    return shlex.quote(str(value))


def _namespace(lines: list[str], sub: Subsystem, ns: Namespace, index: int) -> None:
    nsdir = f"{NVMET}/subsystems/{sub.nqn}/namespaces/{ns.nsid}"
    buffered = False
    if ns.backend == "null_blk":
        name = f"{NULLB_PREFIX}{index}"
        nb = f"{NULLB}/{name}"
        lines += [
            f"mkdir {nb} || fail 'cannot create null_blk {name}'",
            f"w {nb}/memory_backed 1",
            f"w {nb}/size {ns.size_mib}",
            f"w {nb}/blocksize {ns.blocksize}",
            f"w {nb}/power 1",
            # 6.12 names the disk after the directory, 6.1 nullb<index>.
            f"if [ -b /dev/{name} ]; then dev=/dev/{name}; else dev=/dev/nullb$(cat {nb}/index); fi",
        ]
    else:
        backing = f"{FILE_PREFIX}{index}.img"
        lines.append(f"truncate -s {ns.size_mib}M {backing} || fail 'cannot create {backing}'")
        if ns.backend == "file":
            lines.append(f"dev={backing}")
            # nvmet opens files O_DIRECT unless buffered_io=1, and tmpfs
            # only supports O_DIRECT since 6.6: enabling fails on 6.1.
            buffered = True
        else:
            lines += [
                "dev=$(losetup -f) || fail 'no free loop device'",
                f'losetup "$dev" {backing} || fail "losetup $dev"',
                f'echo "$dev" >> {LOOP_RECORD}',
            ]
    lines += [
        f"mkdir {_q(nsdir)} || fail 'cannot create namespace {ns.nsid}'",
        f'w {_q(nsdir)}/device_path "$dev"',
    ]
    if buffered:
        lines.append(f"w {_q(nsdir)}/buffered_io 1")
    if ns.uuid:
        lines.append(f"w {_q(nsdir)}/device_uuid {_q(ns.uuid)}")
    if ns.nguid:
        lines.append(f"w {_q(nsdir)}/device_nguid {_q(ns.nguid)}")
    if ns.enable:
        lines.append(f"w {_q(nsdir)}/enable 1")
    lines.append(f'echo "ns {sub.nqn} {ns.nsid} $dev"')


def render_apply(config: NvmetConfig) -> str:
    """Shell script (busybox sh) creating *config* on an empty nvmet tree."""
    lines = [_PRELUDE.rstrip("\n"), f"need {NVMET}"]
    hosts = {h.nqn: h for h in config.hosts}
    for sub in config.subsystems:
        for nqn in sub.allowed_hosts:
            hosts.setdefault(nqn, Host(nqn))
    for host in hosts.values():
        hdir = _q(f"{NVMET}/hosts/{host.nqn}")
        lines.append(f"mkdir {hdir} || fail 'cannot create host {host.nqn}'")
        for attr in ("dhchap_hash", "dhchap_dhgroup", "dhchap_key", "dhchap_ctrl_key"):
            value = getattr(host, attr)
            if value is not None:
                lines += [f"need {hdir}/{attr}", f"w {hdir}/{attr} {_q(value)}"]
    index = 0
    for sub in config.subsystems:
        sdir = _q(f"{NVMET}/subsystems/{sub.nqn}")
        lines.append(f"mkdir {sdir} || fail 'cannot create subsystem {sub.nqn}'")
        attrs = dict(sub.attrs)
        if sub.serial is not None:
            attrs["serial"] = sub.serial
        if sub.model is not None:
            attrs["model"] = sub.model
        attrs["allow_any_host"] = "1" if sub.allow_any_host else "0"
        for name, value in attrs.items():
            lines += [f"need {sdir}/attr_{name}", f"w {sdir}/attr_{name} {_q(value)}"]
        for nqn in sub.allowed_hosts:
            link = f"{NVMET}/subsystems/{sub.nqn}/allowed_hosts/{nqn}"
            lines.append(f"ln -s {_q(f'{NVMET}/hosts/{nqn}')} {_q(link)} || fail 'cannot allow {nqn}'")
        for ns in sub.namespaces:
            _namespace(lines, sub, ns, index)
            index += 1
    for port in config.ports:
        pdir = f"{NVMET}/ports/{port.portid}"
        lines += [
            f"mkdir {pdir} || fail 'cannot create port {port.portid}'",
            f"w {pdir}/addr_trtype {_q(port.trtype)}",
            f"w {pdir}/addr_adrfam {_q(port.adrfam)}",
            f"w {pdir}/addr_traddr {_q(port.traddr)}",
            f"w {pdir}/addr_trsvcid {port.trsvcid}",
        ]
        for name, value in port.params.items():
            lines.append(
                f"if [ -e {pdir}/{name} ]; then w {pdir}/{name} {_q(value)}; "
                f"else echo 'skipped {name}'; fi"
            )
        for ref in port.referrals:
            rdir = f"{pdir}/referrals/{_q(ref.name)}"
            lines += [
                f"mkdir {rdir} || fail 'cannot create referral {ref.name}'",
                f"w {rdir}/addr_trtype {_q(ref.trtype)}",
                f"w {rdir}/addr_adrfam {_q(ref.adrfam)}",
                f"w {rdir}/addr_traddr {_q(ref.traddr)}",
                f"w {rdir}/addr_trsvcid {ref.trsvcid}",
            ]
            if ref.portid is not None:
                lines += [f"need {rdir}/addr_portid", f"w {rdir}/addr_portid {ref.portid}"]
            lines.append(f"w {rdir}/enable 1")
        # Linking a subsystem is what makes the port listen: do it last.
        for nqn in port.subsystems:
            lines.append(
                f"ln -s {_q(f'{NVMET}/subsystems/{nqn}')} {pdir}/subsystems/{_q(nqn)} "
                f"|| fail 'cannot link {nqn} to port {port.portid}'"
            )
    lines.append("exit 0")
    return "\n".join(lines) + "\n"


def _parse_applied(output: str) -> Applied:
    devices: dict[tuple[str, int], str] = {}
    skipped: list[str] = []
    for line in output.splitlines():
        words = line.split()
        if len(words) == 4 and words[0] == "ns":
            devices[(words[1], int(words[2]))] = words[3]
        elif len(words) == 2 and words[0] == "skipped":
            skipped.append(words[1])
    return Applied(devices, tuple(skipped), output)


class KernelTarget:
    """The guest's nvmet: apply/clear descriptions, map ports to host addresses."""

    def __init__(self, guest: "LinuxGuest") -> None:
        self.guest = guest
        self.applied: Applied | None = None
        self.config: NvmetConfig | None = None

    def clear(self) -> None:
        """Remove every port, subsystem, host and backing device."""
        self.guest.run(TEARDOWN_SCRIPT, chroot=False, timeout=60, check=True)
        self.applied = None
        self.config = None

    def apply(self, config: NvmetConfig) -> tuple[str, int]:
        """Replace the target's configuration; return the host address of port 4420.

        The returned address is the host side of the guest's forwarded nvmet
        port (``address()`` for other forwarded ports).  Details of what was
        created are in ``self.applied``.
        """
        self.clear()
        res = self.guest.run(render_apply(config), chroot=False, timeout=120)
        if not res.ok:
            # Leave nothing half-configured behind for the next test.
            self.guest.run(TEARDOWN_SCRIPT, chroot=False, timeout=60)
            raise RuntimeError(f"nvmet apply failed (rc={res.rc}): {res.stderr.strip()}")
        self.applied = _parse_applied(res.stdout)
        self.config = config
        return self.address()

    def address(self, trsvcid: int = 4420) -> tuple[str, int]:
        """(host address, host port) forwarded to guest port *trsvcid*."""
        return ("127.0.0.1", self.guest.host_port(trsvcid))

    def read(self, relpath: str) -> str:
        """Contents of ``/sys/kernel/config/nvmet/<relpath>`` (one attribute)."""
        res = self.guest.run(f"cat {_q(f'{NVMET}/{relpath}')}", chroot=False, check=True)
        return res.stdout.rstrip("\n")
