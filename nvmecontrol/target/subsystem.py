"""An NVM subsystem as served: identity, namespaces, host ACL, controller IDs.

Namespaces are published copy-on-write: ``namespaces`` is a dict that is
replaced, never mutated, so connection threads read it without a lock (one
attribute load) while the control socket adds or removes namespaces.

Host access follows the Linux target: a host may connect when the
subsystem allows any host or lists the host's NQN (exact, case-sensitive
comparison, as peers compare NQNs with strcmp).

SMART counters are per subsystem (like a drive's): each I/O queue owns a
``[bytes read, bytes written, read commands, write commands]`` list it
bumps without locking, and hands it over to ``retired`` when it closes.
"""

from __future__ import annotations

import hashlib
import threading

from nvmecontrol import __version__
from nvmecontrol.target.config import (MAX_NSID, NVME_VERSIONS, NamespaceConfig,
                                       SubsystemConfig)
from nvmecontrol.target.constants import MAX_IO_QUEUES
from nvmecontrol.target.namespace import Namespace, open_namespace
from nvmecontrol.target.reservations import SubsystemReservations
from nvmecontrol.errors import NotFound, UsageError

DEFAULT_MODEL = "nvmfd"
SERIAL_LEN = 20
FIRMWARE_LEN = 8


def default_serial(nqn: str) -> str:
    """A stable serial number per subsystem (hosts use SN+MN to spot multipath)."""
    return hashlib.sha256(nqn.encode()).hexdigest()[:16]


class Subsystem:
    def __init__(self, cfg: SubsystemConfig, *, read_only: bool = False):
        self.cfg = cfg
        self.nqn = cfg.nqn
        self.read_only = read_only
        self.serial = (cfg.serial or default_serial(cfg.nqn))[:SERIAL_LEN]
        self.model = (cfg.model or DEFAULT_MODEL)[:40]
        self.firmware = (cfg.firmware or __version__)[:FIRMWARE_LEN]
        mjr, mnr, ter = NVME_VERSIONS[cfg.version]
        self.vs = mjr << 16 | mnr << 8 | ter
        self.max_io_queues = min(cfg.qid_max or MAX_IO_QUEUES, MAX_IO_QUEUES)
        self.namespaces: dict[int, Namespace] = {}
        self.controllers: dict[int, object] = {}  # cntlid -> Controller
        self.retired = [0, 0, 0, 0]
        self.live_stats: dict[int, list[int]] = {}  # id(list) -> list
        self.lock = threading.Lock()
        # Reservations per namespace, shared by all controllers (NVMe Base 2.0, 8.19).
        self.reservations = SubsystemReservations(lambda: list(self.controllers.values()))

    # -- access --
    def host_allowed(self, hostnqn: str) -> bool:
        return self.cfg.allow_any_host or hostnqn in self.cfg.allowed_hosts

    # -- controller IDs --
    def alloc_cntlid(self) -> int | None:
        """The lowest free controller ID in cntlid_min..cntlid_max (as nvmet's IDA)."""
        for cntlid in range(self.cfg.cntlid_min, self.cfg.cntlid_max + 1):
            if cntlid not in self.controllers:
                return cntlid
        return None

    # -- namespaces --
    def open_namespaces(self) -> None:
        """Open every enabled namespace of the configuration (at start-up)."""
        opened: dict[int, Namespace] = {}
        try:
            for ncfg in self.cfg.namespaces:
                if ncfg.enable:
                    opened[ncfg.nsid] = open_namespace(ncfg, self.nqn, read_only=self.read_only)
        except BaseException:
            for ns in opened.values():
                ns.backend.close_now()
            raise
        self.namespaces = opened

    def add_namespace(self, ncfg: NamespaceConfig) -> Namespace:
        if ncfg.nsid in self.namespaces:
            raise UsageError(f"namespace {ncfg.nsid} already exists in {self.nqn}")
        ns = open_namespace(ncfg, self.nqn, read_only=self.read_only)
        new = dict(self.namespaces)
        new[ns.nsid] = ns
        self.namespaces = dict(sorted(new.items()))
        self.cfg.namespaces = [n for n in self.cfg.namespaces if n.nsid != ncfg.nsid] + [ncfg]
        return ns

    def remove_namespace(self, nsid: int) -> Namespace:
        ns = self.namespaces.get(nsid)
        if ns is None:
            raise NotFound(f"namespace {nsid} does not exist in {self.nqn}")
        new = dict(self.namespaces)
        del new[nsid]
        self.namespaces = new
        self.cfg.namespaces = [n for n in self.cfg.namespaces if n.nsid != nsid]
        self.reservations.forget(nsid)
        ns.backend.close()
        return ns

    def free_nsid(self) -> int:
        for nsid in range(1, MAX_NSID + 1):
            if nsid not in self.namespaces:
                return nsid
        raise UsageError(f"all {MAX_NSID} namespace IDs of {self.nqn} are in use")

    def close(self) -> None:
        """Release every namespace (the server stopped: no I/O is left)."""
        for ns in self.namespaces.values():
            ns.backend.close_now()
        self.namespaces = {}

    def flush_all(self) -> None:
        for ns in self.namespaces.values():
            if ns.backend.writable:
                ns.backend.flush()

    # -- SMART counters --
    def new_stats(self) -> list[int]:
        stats = [0, 0, 0, 0]
        with self.lock:
            self.live_stats[id(stats)] = stats
        return stats

    def retire_stats(self, stats: list[int]) -> None:
        with self.lock:
            if self.live_stats.pop(id(stats), None) is None:
                return
            for i in range(4):
                self.retired[i] += stats[i]

    def totals(self) -> list[int]:
        with self.lock:
            out = list(self.retired)
            for s in self.live_stats.values():
                for i in range(4):
                    out[i] += s[i]
        return out
