"""Host NQN and Host ID: where they come from, and writing them down.

The host sends both in the Connect command data (NVMe over Fabrics,
"Connect Command and Response": HOSTID, 16 bytes, and HOSTNQN).  Targets
use the NQN for access control; the Linux kernel host additionally insists
that one host NQN always goes with one host ID and vice versa (a second
pairing fails with EINVAL / "hostnqn already in use").  So the identity must
be stable from run to run and agree with what nvme-cli uses on the same
machine.

Resolution (:func:`resolve_host_identity`), first hit wins:

host NQN
    command line, ``$NVMECONTROL_HOSTNQN``, ``/etc/nvme/hostnqn``; otherwise
    derived from the host ID as ``nqn.2014-08.org.nvmexpress:uuid:<hostid>``.
host ID
    command line, ``$NVMECONTROL_HOSTID``, ``/etc/nvme/hostid``, the UUID
    inside a UUID-form host NQN, then the machine: on FreeBSD the
    ``kern.hostuuid`` sysctl, then DMI ``product_uuid``, then
    ``/etc/machine-id``.

Two refinements of "first hit wins":

* A host ID from a *less* specific source than the host NQN yields to the
  UUID inside that NQN: ``-q nqn...:uuid:A`` on the command line with ``B``
  in ``/etc/nvme/hostid`` uses ``A``, so the pair stays consistent (the
  kernel would otherwise see host ID ``B`` with two NQNs).  When both come
  from equally specific sources (both files, as nvme-cli writes them) they
  are used as given, like libnvme does, and the mismatch is recorded apart
  (``HostIdentity.mismatch``, with its cause and fix): only commands that
  connect, and ``hostnqn -v``, show it.  Debian's nvme-cli package writes
  the two files independently, so on a stock system every read-only command
  would otherwise complain.
* On FreeBSD ``kern.hostuuid`` comes before DMI and machine-id because the
  base system's nvmecontrol derives both values from it (libnvmf
  ``nvmf_hostid_from_hostuuid``); using it presents the same host.

``/etc/machine-id`` is never sent as is: machine-id(5) calls it
confidential and asks for an application-specific keyed hash.  The host ID
is systemd's ``sd_id128_get_machine_app_specific()`` with the application
ID libnvme uses (``c7f46181-12be-4932-8c83-106f9dddd86b``), i.e.
HMAC-SHA256 keyed by the 16 machine-id bytes over the application ID, first
16 bytes, stamped as a version 4 UUID.  nvme-cli's ``gen-hostnqn`` derives
the same UUID on machines without DMI, so both tools agree.

Every path is looked up under ``root`` so tests can pass a fake sysroot.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections import namedtuple
from collections.abc import Callable, Mapping

from nvmecontrol import nqn as nqnmod
from nvmecontrol.errors import DeviceError, UsageError

TYPE_CHECKING = False  # typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from pathlib import Path

ENV_HOSTNQN = "NVMECONTROL_HOSTNQN"
ENV_HOSTID = "NVMECONTROL_HOSTID"

HOSTNQN_FILE = "/etc/nvme/hostnqn"
HOSTID_FILE = "/etc/nvme/hostid"
DMI_PRODUCT_UUID_FILE = "/sys/class/dmi/id/product_uuid"
MACHINE_ID_FILE = "/etc/machine-id"
FREEBSD_HOSTUUID_SYSCTL = "kern.hostuuid"

SOURCE_CMDLINE = "command line"
SOURCE_DMI = "DMI product_uuid"
SOURCE_FREEBSD = FREEBSD_HOSTUUID_SYSCTL

# libnvme's NVME_HOSTNQN_ID: the application ID for the machine-id hash.
MACHINE_ID_APP_ID = uuid.UUID("c7f46181-12be-4932-8c83-106f9dddd86b")

# Firmware placeholders that many boards report instead of a real system
# UUID; using one would give every such machine the same host ID.
BOGUS_MACHINE_UUIDS = frozenset(
    {
        uuid.UUID(int=0),
        uuid.UUID(int=(1 << 128) - 1),
        uuid.UUID("03000200-0400-0500-0006-000700080009"),
    }
)

# A hung sysctl must not hang every command.
SYSCTL_TIMEOUT_S = 5.0

# Files we read are one line; a huge file is not ours to slurp.
_MAX_FILE_BYTES = 4096

# Lower rank = more specific source.  Machine-derived sources rank last.
_RANK_CMDLINE, _RANK_ENV, _RANK_FILE, _RANK_NONE = 0, 1, 2, 3


class HostIdentity(namedtuple("HostIdentity", (
        "hostnqn", "hostid",  # str, uuid.UUID
        "hostnqn_source", "hostid_source",
        "warnings",  # list[str]: what resolving skipped on the way
        # Host ID and the UUID in the host NQN disagree: what, why it matters, the fix.
        "mismatch"))):
    """The resolved host NQN and host ID, with where each came from (immutable).

    A namedtuple rather than a dataclass: every command that reaches a
    controller resolves one, and ``import dataclasses`` costs start-up time.
    """

    __slots__ = ()

    def __new__(cls, hostnqn: str, hostid: uuid.UUID, hostnqn_source: str, hostid_source: str,
                warnings: list[str] | None = None, mismatch: str | None = None):
        return super().__new__(cls, hostnqn, hostid, hostnqn_source, hostid_source,
                               [] if warnings is None else warnings, mismatch)


def _read_one_line(root: str, logical: str, warnings: list[str], *,
                   skip_unreadable: bool = False) -> str | None:
    """First line of ``root/logical`` stripped, or None when absent or empty.

    ``skip_unreadable`` is for machine sources (DMI, machine-id), which are
    hints: any problem becomes a warning.  A configured file we cannot read
    is an error, since skipping it would silently change the identity.
    """
    path = os.path.join(root, logical.lstrip("/"))
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_FILE_BYTES)
        text = raw.decode("utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        if skip_unreadable:
            warnings.append(f"cannot read {logical}: {reason}; skipped")
            return None
        raise DeviceError(f"cannot read {logical}: {reason}") from None
    text = text.strip()
    if not text:
        warnings.append(f"{logical} is empty; ignored")
        return None
    return text.splitlines()[0].strip()


def _where(source: str) -> str:
    return "on the command line" if source == SOURCE_CMDLINE else f"in {source}"


def _parse_hostid(value: str | uuid.UUID, source: str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return nqnmod.parse_uuid(value.strip())
    except ValueError as exc:
        raise UsageError(f"invalid host ID {_where(source)}: {exc}") from None


def _check_hostnqn(value: str, source: str) -> None:
    problem = nqnmod.nqn_problem(value, strict=True)
    if problem:
        raise UsageError(
            f"invalid host NQN {_where(source)}: {nqnmod.quote_nqn(value)}: {problem}"
        )


def machine_id_uuid(machine_id: str) -> uuid.UUID:
    """The host ID derived from the text of ``/etc/machine-id`` (see module doc).

    Raises ValueError unless ``machine_id`` is 32 hex digits.
    """
    text = machine_id.strip()
    if len(text) != 32 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise ValueError(f'"{text}" is not 32 hex digits')
    import hashlib
    import hmac

    digest = hmac.new(bytes.fromhex(text), MACHINE_ID_APP_ID.bytes, hashlib.sha256).digest()
    return uuid.UUID(bytes=digest[:16], version=4)


def _freebsd_sysctl(name: str) -> str | None:
    import subprocess

    try:
        done = subprocess.run(
            ["sysctl", "-n", name],
            capture_output=True,
            text=True,
            timeout=SYSCTL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def _machine_uuid(value: str | None, source: str, warnings: list[str]) -> uuid.UUID | None:
    """A firmware/OS UUID, or None (with a warning) when unusable."""
    if value is None:
        return None
    try:
        u = nqnmod.parse_uuid(value)
    except ValueError as exc:
        warnings.append(f"{source}: {exc}; skipped")
        return None
    if u in BOGUS_MACHINE_UUIDS:
        warnings.append(f"{source} is the placeholder {u}; skipped")
        return None
    return u


def _hostid_from_machine(
    root: str,
    platform: str,
    sysctl: Callable[[str], str | None],
    warnings: list[str],
) -> tuple[uuid.UUID, str] | None:
    if platform.startswith("freebsd"):
        u = _machine_uuid(sysctl(FREEBSD_HOSTUUID_SYSCTL), SOURCE_FREEBSD, warnings)
        if u is not None:
            return u, SOURCE_FREEBSD
    # product_uuid is root-only on Linux; a non-root run falls through.
    dmi = _read_one_line(root, DMI_PRODUCT_UUID_FILE, warnings, skip_unreadable=True)
    u = _machine_uuid(dmi, SOURCE_DMI, warnings)
    if u is not None:
        return u, SOURCE_DMI
    mid = _read_one_line(root, MACHINE_ID_FILE, warnings, skip_unreadable=True)
    if mid is not None:
        try:
            return machine_id_uuid(mid), MACHINE_ID_FILE
        except ValueError as exc:
            warnings.append(f"{MACHINE_ID_FILE}: {exc}; skipped")
    return None


def _first_configured(
    explicit: object, env: Mapping[str, str], env_name: str, root: str, logical: str,
    warnings: list[str],
) -> tuple:
    """(value, source, rank) of the first configured source, or (None, "", _RANK_NONE)."""
    if explicit is not None:
        return explicit, SOURCE_CMDLINE, _RANK_CMDLINE
    # An empty environment variable counts as unset, as in shells.
    value = env.get(env_name)
    if value:
        return value, f"${env_name}", _RANK_ENV
    value = _read_one_line(root, logical, warnings)
    if value is not None:
        return value, logical, _RANK_FILE
    return None, "", _RANK_NONE


def resolve_host_identity(
    hostnqn: str | None = None,
    hostid: str | uuid.UUID | None = None,
    *,
    root: str | os.PathLike[str] = "/",
    environ: Mapping[str, str] | None = None,
    platform: str | None = None,
    sysctl: Callable[[str], str | None] | None = None,
) -> HostIdentity:
    """Resolve the host NQN and host ID (order and rules in the module doc).

    ``hostnqn``/``hostid`` are the command-line values (None when not given).
    ``environ``, ``platform`` (a ``sys.platform`` value) and ``sysctl`` (name
    → value or None) default to the running system.  Raises UsageError for
    an invalid value (naming its source) or when no source yields a host ID.
    """
    rootp = os.fspath(root)  # os.path, not pathlib: its import costs start-up time
    env = os.environ if environ is None else environ
    plat = sys.platform if platform is None else platform
    read_sysctl = _freebsd_sysctl if sysctl is None else sysctl
    warnings: list[str] = []
    mismatch = None

    nqn_value, nqn_source, nqn_rank = _first_configured(
        hostnqn, env, ENV_HOSTNQN, rootp, HOSTNQN_FILE, warnings
    )
    if nqn_value is not None:
        _check_hostnqn(nqn_value, nqn_source)
    nqn_uuid = nqnmod.uuid_from_nqn(nqn_value) if nqn_value is not None else None
    if nqn_uuid is not None and len(nqn_value) == len(nqnmod.UUID_NQN_PREFIX) + 32:
        warnings.append(
            f"host NQN {_where(nqn_source)} writes its UUID without hyphens "
            "(old nvme-cli format); accepted as is"
        )

    raw_id, id_source, id_rank = _first_configured(
        hostid, env, ENV_HOSTID, rootp, HOSTID_FILE, warnings
    )
    if raw_id is not None and (nqn_uuid is None or id_rank <= nqn_rank):
        id_value = _parse_hostid(raw_id, id_source)
        if nqn_uuid is not None and id_value != nqn_uuid:
            mismatch = mismatch_message(id_value, id_source, nqn_value, nqn_uuid, nqn_source)
    elif nqn_uuid is not None:
        id_value, id_source = nqn_uuid, f"UUID in host NQN ({nqn_source})"
    else:
        found = _hostid_from_machine(rootp, plat, read_sysctl, warnings)
        if found is None:
            checked = [SOURCE_CMDLINE, f"${ENV_HOSTID}", HOSTID_FILE]
            if plat.startswith("freebsd"):
                checked.append(SOURCE_FREEBSD)
            checked += [DMI_PRODUCT_UUID_FILE, MACHINE_ID_FILE]
            raise UsageError(
                f"cannot determine a host ID (checked {', '.join(checked)}): "
                "pass --hostnqn with a UUID-form NQN or create "
                f"{HOSTNQN_FILE} and {HOSTID_FILE}"
            )
        id_value, id_source = found

    if nqn_value is None:
        nqn_value = nqnmod.nqn_from_uuid(id_value)
        nqn_source = f"derived from host ID ({id_source})"

    return HostIdentity(nqn_value, id_value, nqn_source, id_source, warnings, mismatch)


def mismatch_message(hostid: uuid.UUID, id_source: str, hostnqn: str, nqn_uuid: uuid.UUID,
                     nqn_source: str) -> str:
    """One line: the mismatch, why it matters, and the fix for where it comes from."""
    if id_source == HOSTID_FILE and nqn_source == HOSTNQN_FILE:
        cause = ("the two files were written independently (as Debian's nvme-cli package "
                 "does)")
        fix = f"fix: echo {nqn_uuid} > {HOSTID_FILE}"
    elif id_source == SOURCE_CMDLINE or nqn_source == SOURCE_CMDLINE:
        cause = "--hostid and --hostnqn were given different UUIDs"
        fix = f"fix: --hostid {nqn_uuid}, or leave --hostid out"
    else:
        cause = f"they come from {id_source} and {nqn_source}"
        fix = f"fix: set the host ID to {nqn_uuid}"
    return (f"host ID {hostid} ({id_source}) does not match the UUID in host NQN {hostnqn} "
            f"({nqn_source}): {cause}; a Linux host pairs one host NQN with one host ID and "
            f"targets may check the pair; {fix}")


def generate_hostnqn() -> str:
    """A fresh random UUID-form host NQN, like ``nvme gen-hostnqn``."""
    return nqnmod.nqn_from_uuid(uuid.uuid4())


def hostid_bytes(u: uuid.UUID, byte_order: str = "rfc") -> bytes:
    """The 16-byte HOSTID of the Connect data for ``u``.

    ``"rfc"``: RFC 4122 / big-endian field order, as Linux sends it and as
    our wire code uses.  ``"le"``: the first three fields little-endian,
    FreeBSD's ``uuid_enc_le`` order (libnvmf), needed only to reproduce
    what a FreeBSD host sends for the same UUID text.
    """
    if byte_order == "rfc":
        return u.bytes
    if byte_order == "le":
        return u.bytes_le
    raise ValueError(f"byte_order must be 'rfc' or 'le', not {byte_order!r}")


def _write_atomically(path: Path, text: str) -> None:
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_host_files(
    hostnqn: str,
    hostid: str | uuid.UUID,
    root: str | os.PathLike[str] = "/",
    *,
    overwrite: bool = False,
) -> tuple[Path, Path]:
    """Create ``/etc/nvme/hostnqn`` and ``/etc/nvme/hostid`` under ``root``.

    Refuses (UsageError) to replace existing files unless ``overwrite``:
    changing the identity of a host breaks its existing kernel connections
    and target ACL entries.  Returns the two paths written.
    """
    _check_hostnqn(hostnqn, SOURCE_CMDLINE)
    u = _parse_hostid(hostid, SOURCE_CMDLINE)
    nqn_uuid = nqnmod.uuid_from_nqn(hostnqn)
    if nqn_uuid is not None and nqn_uuid != u:
        raise UsageError(
            f"host ID {u} does not match the UUID in host NQN {hostnqn}; "
            "the kernel pairs them, so they must agree"
        )
    from pathlib import Path

    rootp = Path(root)
    nqn_path = rootp / HOSTNQN_FILE.lstrip("/")
    id_path = rootp / HOSTID_FILE.lstrip("/")
    if not overwrite:
        for path, logical in ((nqn_path, HOSTNQN_FILE), (id_path, HOSTID_FILE)):
            if path.exists():
                raise UsageError(f"{logical} already exists; not replacing it")
    try:
        nqn_path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        _write_atomically(nqn_path, hostnqn + "\n")
        _write_atomically(id_path, str(u) + "\n")
    except OSError as exc:
        raise DeviceError(f"cannot write {exc.filename or nqn_path.parent}: {exc.strerror}") from None
    return nqn_path, id_path
