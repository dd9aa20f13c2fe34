"""This host's NVMe identity: the host NQN and host ID, and NQNs in general.

What ``nvmecontrol hostnqn`` shows and makes.  The host NQN and ID are
resolved as the command line does it (an explicit value, then the
environment, then ``/etc/nvme/hostnqn`` and ``/etc/nvme/hostid``, then the
machine's UUID), each with where it came from; a host ID that disagrees with
the UUID in the host NQN is reported (``mismatch``), since the kernel pairs
them.  Bad values raise :class:`nvmecontrol.errors.UsageError` with one line.
"""

from __future__ import annotations

import uuid

from nvmecontrol import hostid as _hostid
from nvmecontrol import nqn as _nqn
from nvmecontrol.hostid import HostIdentity

TYPE_CHECKING = False  # typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["HostIdentity", "DISCOVERY_NQN", "resolve_host", "generate_hostnqn", "hostid_of",
           "write_host_files", "validate_nqn", "looks_like_nqn"]

# The well-known NQN of discovery controllers (NVMe Base Specification, 4.7).
DISCOVERY_NQN: str = _nqn.DISCOVERY_NQN


def resolve_host(hostnqn: str | None = None, hostid: str | uuid.UUID | None = None
                 ) -> HostIdentity:
    """The host NQN and ID to use, given these (None: not given), with their sources.

    ``warnings`` holds what was skipped on the way (an unreadable file, a
    malformed line); ``mismatch``, when set, says that the host ID is not the
    UUID of the host NQN and how to fix it.
    """
    return _hostid.resolve_host_identity(hostnqn, hostid)


def generate_hostnqn() -> str:
    """A new random host NQN of the UUID form (``nqn.2014-08.org.nvmexpress:uuid:...``)."""
    return _hostid.generate_hostnqn()


def hostid_of(hostnqn: str) -> uuid.UUID | None:
    """The UUID a UUID-form NQN carries (the host ID that goes with it), else None."""
    return _nqn.uuid_from_nqn(hostnqn)


def write_host_files(hostnqn: str, hostid: str | uuid.UUID, *, overwrite: bool = False,
                     root: str | Path = "/") -> tuple[Path, Path]:
    """Write ``/etc/nvme/hostnqn`` and ``/etc/nvme/hostid`` (under ``root``); the two paths.

    Existing files are kept (UsageError) unless ``overwrite``: a host that
    changes identity loses its kernel connections and its place in targets'
    access lists.  An ID that is not the NQN's UUID is refused.
    """
    return _hostid.write_host_files(hostnqn, hostid, root, overwrite=overwrite)


def validate_nqn(nqn: str, *, strict: bool = True, what: str = "NQN") -> None:
    """UsageError naming ``what`` and the problem, unless ``nqn`` is a valid NQN.

    ``strict`` applies every rule of the specification (the
    ``nqn.yyyy-mm.reverse-domain`` form among them); without it only what no
    NQN may hold is refused (empty, NUL or control characters, not UTF-8,
    over 223 bytes).
    """
    _nqn.validate_nqn(nqn, strict=strict, what=what)


def looks_like_nqn(text: str) -> bool:
    """Whether ``text`` is meant as an NQN (rather than a device name or an address)."""
    return _nqn.looks_like_nqn(text)
