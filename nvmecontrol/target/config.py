"""The target's configuration model and nvmetcli's saved-config JSON.

nvmfd is configured either from the command line (FreeBSD nvmfd style: one
subsystem, devices as arguments, listen addresses) or from a JSON file in
the format ``nvmetcli saveconfig`` writes for the Linux kernel target
(``/etc/nvmet/config.json``), so a configuration written for nvmet can be
served unchanged:

    {"hosts": [{"nqn": ..., "dhchap_key": "DHHC-1:..", "dhchap_ctrl_key": "DHHC-1:..",
                "dhchap_hash": "hmac(sha256)", "dhchap_dhgroup": "ffdhe2048"}],
     "ports": [{"portid": 1, "addr": {"trtype": "tcp", "adrfam": "ipv4",
                "traddr": "0.0.0.0", "trsvcid": "4420", "treq": "not specified"},
                "param": {...}, "subsystems": [nqn, ...],
                "ana_groups": [{"grpid": 1, "ana": {"state": "optimized"}}],
                "referrals": [{"name": ..., "enable": 1, "addr": {..., "portid": 2}}]}],
     "subsystems": [{"nqn": ..., "allowed_hosts": [nqn, ...],
                     "attr": {"allow_any_host": "1", "serial": ..., "model": ...,
                              "version": "1.3", "cntlid_min": "1", "cntlid_max": "65519"},
                     "namespaces": [{"nsid": 1, "enable": 1, "ana_grpid": 1,
                                     "device": {"path": ..., "uuid": ..., "nguid": ...}}]}]}

Values that configfs holds as text (attributes, TRSVCID) are strings in the
file; ``nsid``, ``portid`` and ``enable`` are numbers.  Both are accepted
either way on load; :func:`dump_nvmetcli` writes nvmetcli's types.

Kernel defaults are kept where they matter: a subsystem without
``allow_any_host`` admits only its ``allowed_hosts``; a namespace without
``enable`` is disabled.  What nvmfd cannot honour is refused, not silently
weakened: a port with a transport other than TCP.

A host entry may carry DH-HMAC-CHAP settings under the names of the kernel's
configfs host attributes (``dhchap_key``, ``dhchap_ctrl_key``,
``dhchap_hash``, ``dhchap_dhgroup``), flat or in a ``"dhchap"`` group
without the prefix as nvmetcli groups attributes; such a host must
authenticate every queue (NVMe Base 2.1, 8.3.4).

Device paths may also be ``mem:SIZE`` (or FreeBSD's ``ramdisk:SIZE``) for a
RAM namespace, an nvmfd extension.

ANA (``ana.py``): a port's ``ana_groups`` give each group's state on that
port (group 1 is always there, optimized unless listed otherwise); a
namespace's ``ana_grpid`` (or nvmetcli's ``"ana": {"grpid": ..}``) must be
a group some port lists, as nvmet refuses any other.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from nvmecontrol.errors import UsageError
from nvmecontrol.nqn import DISCOVERY_NQN, nqn_problem
from nvmecontrol.target import ana
from nvmecontrol.target.port_params import ConfigRefused, parse_port_params
from nvmecontrol.wire.auth_crypto import DHGROUP_NAMES, HASH_NAMES, DhchapKey, DhGroup, HashId
from nvmecontrol.wire.dhchap_key import BadSecret, parse_secret

# Namespace IDs a subsystem may use: 1..MAX_NSID.  The kernel target's
# default (NVMET_MAX_NAMESPACES) and what one Identify Active Namespace list
# page (1024 entries) can report without paging.
MAX_NSID = 1024
# Controller IDs 0xFFF0..0xFFFF are reserved (dynamic/static markers);
# nvmet's default cntlid_max is 0xFFEF.
CNTLID_MIN_DEFAULT = 1
CNTLID_MAX_DEFAULT = 0xFFEF
from nvmecontrol.target.defaults import BLOCK_SIZES, DEFAULT_BLOCK_SIZE  # noqa: E402
# A mem: namespace is RAM of this process: refuse absurd sizes early.
MAX_MEM_SIZE = 1 << 40
NVME_VERSIONS = {"1.3": (1, 3, 0), "1.4": (1, 4, 0), "2.0": (2, 0, 0)}
DEFAULT_VERSION = "1.3"

TREQ_NAMES = {"not specified": 0, "required": 1, "not required": 2}
ADRFAM_NAMES = {"ipv4": 1, "ipv6": 2}
# Names the kernel target knows that nvmfd cannot serve: refused with the
# key named (ConfigRefused), never served as something weaker.
FOREIGN_TRTYPES = ("rdma", "fc", "loop", "pci")
# addr.tsas of a TCP port: "none", or a security type nvmfd does not have (tls1.3).
TSAS_NONE = ("none", "")

_SIZE_RE = re.compile(r"([0-9]+)\s*([KMGTP]?)(I?B)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
MEM_PREFIXES = ("mem:", "ramdisk:")


def parse_size(text: str) -> int:
    """``64M``, ``1G``, ``4096``, ``2GiB`` -> bytes (binary units)."""
    m = _SIZE_RE.fullmatch(text.strip())
    if not m:
        raise UsageError(f'invalid size "{text}" (expected a number with an optional K/M/G/T suffix)')
    return int(m.group(1)) * _SIZE_UNITS[m.group(2).upper()]


def mem_size(path: str) -> int | None:
    """The size of a ``mem:SIZE``/``ramdisk:SIZE`` device, None for a path."""
    for prefix in MEM_PREFIXES:
        if path.startswith(prefix):
            size = parse_size(path[len(prefix):])
            if not 0 < size <= MAX_MEM_SIZE:
                raise UsageError(f'RAM namespace size of "{path}" must be 1 byte to 1 TiB')
            return size
    return None


@dataclass(slots=True)
class NamespaceConfig:
    nsid: int
    path: str
    uuid: str | None = None
    nguid: str | None = None
    enable: bool = True
    read_only: bool = False
    block_size: int = DEFAULT_BLOCK_SIZE
    ana_grpid: int = 1


@dataclass(slots=True)
class SubsystemConfig:
    nqn: str
    namespaces: list[NamespaceConfig] = field(default_factory=list)
    allowed_hosts: list[str] = field(default_factory=list)
    allow_any_host: bool = False
    serial: str | None = None
    model: str | None = None
    firmware: str | None = None
    version: str = DEFAULT_VERSION
    cntlid_min: int = CNTLID_MIN_DEFAULT
    cntlid_max: int = CNTLID_MAX_DEFAULT
    qid_max: int | None = None
    extra_attr: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class ReferralConfig:
    name: str
    traddr: str
    trsvcid: str
    adrfam: str = "ipv4"
    trtype: str = "tcp"
    portid: int = 0
    treq: str = "not specified"
    enable: bool = True


@dataclass(slots=True)
class PortConfig:
    portid: int
    traddr: str
    trsvcid: str
    adrfam: str = "ipv4"
    trtype: str = "tcp"
    treq: str = "not specified"
    subsystems: list[str] = field(default_factory=list)
    referrals: list[ReferralConfig] = field(default_factory=list)
    param: dict[str, str] = field(default_factory=dict)
    # ANA group ID -> state on this port (ana.py); replaced whole when it changes.
    ana_groups: dict[int, int] = field(default_factory=ana.default_groups)


@dataclass(slots=True)
class HostAuthConfig:
    """A host's DH-HMAC-CHAP settings, the keys in DHHC-1 text as configfs takes them."""

    dhchap_key: str
    dhchap_ctrl_key: str | None = None
    dhchap_hash: str = HASH_NAMES[HashId.SHA256]  # nvmet's default
    dhchap_dhgroup: str = DHGROUP_NAMES[DhGroup.NULL]

    @property
    def host_key(self) -> DhchapKey:
        return parse_secret(self.dhchap_key)

    @property
    def ctrl_key(self) -> DhchapKey | None:
        return parse_secret(self.dhchap_ctrl_key) if self.dhchap_ctrl_key else None

    @property
    def hash_id(self) -> int:
        return _BY_NAME_HASH[self.dhchap_hash]

    @property
    def dhgroup(self) -> int:
        return _BY_NAME_GROUP[self.dhchap_dhgroup]


_BY_NAME_HASH = {name: h for h, name in HASH_NAMES.items()}
_BY_NAME_GROUP = {name: g for g, name in DHGROUP_NAMES.items()}
_DHCHAP_ATTRS = ("key", "ctrl_key", "hash", "dhgroup")


@dataclass(slots=True)
class TargetConfig:
    hosts: list[str] = field(default_factory=list)
    ports: list[PortConfig] = field(default_factory=list)
    subsystems: list[SubsystemConfig] = field(default_factory=list)
    # Hosts that must authenticate, by NQN.
    host_auth: dict[str, HostAuthConfig] = field(default_factory=dict)

    def subsystem(self, nqn: str) -> SubsystemConfig | None:
        for s in self.subsystems:
            if s.nqn == nqn:
                return s
        return None


# --- validation helpers -----------------------------------------------------

def check_subnqn(nqn: str, where: str) -> None:
    problem = nqn_problem(nqn, strict=False)
    if problem:
        raise UsageError(f"{where}: invalid subsystem NQN: {problem}")
    if nqn == DISCOVERY_NQN:
        raise UsageError(f"{where}: the discovery NQN cannot name an I/O subsystem")


def check_hostnqn(nqn: str, where: str) -> None:
    problem = nqn_problem(nqn, strict=False)
    if problem:
        raise UsageError(f"{where}: invalid host NQN: {problem}")


def check_nsid(nsid: int, where: str) -> None:
    if not 1 <= nsid <= MAX_NSID:
        raise UsageError(f"{where}: NSID {nsid} out of range 1..{MAX_NSID}")


def parse_uuid_text(text: str | None, where: str) -> str | None:
    """Canonical UUID text, or None for absent/all-zero (nvmetcli writes zeros for "unset")."""
    if text in (None, ""):
        return None
    try:
        u = uuid.UUID(str(text))
    except ValueError:
        raise UsageError(f'{where}: "{text}" is not a UUID') from None
    return None if u.int == 0 else str(u)


def _int(value: Any, where: str) -> int:
    try:
        return int(str(value).strip(), 0)
    except ValueError:
        raise UsageError(f'{where}: "{value}" is not a number') from None


def _bool(value: Any, where: str) -> bool:
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "y"):
        return True
    if text in ("0", "false", "no", "n", ""):
        return False
    raise UsageError(f'{where}: "{value}" is not a boolean (0/1)')


def _obj(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise UsageError(f"{where}: expected a JSON object")
    return value


def _list(value: Any, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise UsageError(f"{where}: expected a JSON array")
    return value


# --- nvmetcli JSON ------------------------------------------------------------

# Subsystem attributes nvmet has that nvmfd has no use for; accepted silently.
_IGNORED_SUBSYS_ATTR = {"pi_enable", "ieee_oui", "passthru_ctrl"}


def _load_addr(addr: dict, where: str, *, served: bool = False) -> dict:
    """A port's or a referral's ``addr``; ``served``: a port nvmfd listens on."""
    out = {}
    for key in ("trtype", "adrfam", "traddr", "trsvcid", "treq", "tsas"):
        if key in addr and addr[key] is not None:
            out[key] = str(addr[key]).strip()
    trtype = out.get("trtype", "tcp").lower()
    if trtype != "tcp":
        what = "a transport nvmfd does not have" if trtype in FOREIGN_TRTYPES \
            else "an unknown transport"
        raise ConfigRefused(f'{where}: addr.trtype "{trtype}" is not supported: {what} '
                            "(nvmfd serves TCP only)")
    out["trtype"] = "tcp"
    adrfam = out.get("adrfam", "ipv4").lower()
    if adrfam not in ADRFAM_NAMES:
        raise ConfigRefused(f'{where}: addr.adrfam "{adrfam}" is not supported (nvmfd '
                            "listens on ipv4 and ipv6 only)")
    out["adrfam"] = adrfam
    tsas = out.pop("tsas", "none").lower()
    if tsas not in TSAS_NONE:
        raise ConfigRefused(f'{where}: addr.tsas "{tsas}": nvmfd has no TLS and does not '
                            "serve a secured port without it")
    treq = out.get("treq", "not specified").lower()
    if treq not in TREQ_NAMES:
        raise UsageError(f'{where}: treq "{treq}" is not one of {", ".join(TREQ_NAMES)}')
    if served and treq == "required":
        raise ConfigRefused(f'{where}: addr.treq "required" asks for a secure channel (TLS), '
                            "which nvmfd does not have")
    out["treq"] = treq
    if "traddr" not in out:
        raise UsageError(f"{where}: traddr is missing")
    if "trsvcid" not in out:
        raise UsageError(f"{where}: trsvcid is missing")
    port = _int(out["trsvcid"], f"{where} trsvcid")
    if not 0 <= port <= 65535:
        raise UsageError(f"{where}: trsvcid {port} out of range")
    out["trsvcid"] = str(port)
    return out


def _load_namespace(n: dict, where: str) -> NamespaceConfig:
    n = _obj(n, where)
    if "nsid" not in n:
        raise UsageError(f"{where}: 'nsid' is missing")
    nsid = _int(n["nsid"], f"{where} nsid")
    check_nsid(nsid, where)
    dev = _obj(n.get("device", {}), f"{where} device")
    path = dev.get("path")
    if not path:
        raise UsageError(f"{where}: device path is missing")
    return NamespaceConfig(
        nsid=nsid,
        path=str(path),
        uuid=parse_uuid_text(dev.get("uuid"), f"{where} uuid"),
        nguid=parse_uuid_text(dev.get("nguid"), f"{where} nguid"),
        enable=_bool(n.get("enable", 0), f"{where} enable"),
        # nvmfd's own keys (ns-add -r / --block-size), saved only when set.
        read_only=_bool(n.get("read_only", 0), f"{where} read_only"),
        block_size=_block_size(n.get("block_size", DEFAULT_BLOCK_SIZE), where),
        ana_grpid=_ana_grpid(n, where),
    )


def _ana_grpid(n: dict, where: str) -> int:
    # nvmetcli writes the group twice: "ana_grpid" and the "ana" attribute group.
    grpid = n.get("ana_grpid", _obj(n.get("ana", {}), f"{where} ana").get("grpid", 1))
    grpid = _int(grpid, f"{where} ana_grpid")
    ana.check_grpid(grpid, where)
    return grpid


def _block_size(value: Any, where: str) -> int:
    size = _int(value, f"{where} block_size")
    if size not in BLOCK_SIZES:
        raise UsageError(f"{where}: block_size {size} is not one of "
                         f"{', '.join(map(str, BLOCK_SIZES))}")
    return size


def _load_subsystem(s: dict, known_hosts: set[str], index: int) -> SubsystemConfig:
    s = _obj(s, f"subsystem {index}")
    if "nqn" not in s:
        raise UsageError(f"subsystem {index}: 'nqn' is missing")
    nqn = str(s["nqn"])
    where = f'subsystem "{nqn}"'
    check_subnqn(nqn, where)
    attr = {k: str(v) for k, v in _obj(s.get("attr", {}), f"{where} attr").items()}
    cfg = SubsystemConfig(nqn=nqn)
    cfg.allow_any_host = _bool(attr.pop("allow_any_host", "0"), f"{where} allow_any_host")
    cfg.serial = attr.pop("serial", None)
    cfg.model = attr.pop("model", None)
    cfg.firmware = attr.pop("firmware", None)
    version = attr.pop("version", DEFAULT_VERSION).strip()
    if version not in NVME_VERSIONS:
        raise UsageError(f'{where}: version "{version}" is not one of {", ".join(NVME_VERSIONS)}')
    cfg.version = version
    cfg.cntlid_min = _int(attr.pop("cntlid_min", CNTLID_MIN_DEFAULT), f"{where} cntlid_min")
    cfg.cntlid_max = _int(attr.pop("cntlid_max", CNTLID_MAX_DEFAULT), f"{where} cntlid_max")
    if not CNTLID_MIN_DEFAULT <= cfg.cntlid_min <= cfg.cntlid_max <= CNTLID_MAX_DEFAULT:
        raise UsageError(f"{where}: cntlid_min/cntlid_max must satisfy 1 <= min <= max <= 65519")
    if "qid_max" in attr:
        cfg.qid_max = _int(attr.pop("qid_max"), f"{where} qid_max")
        if cfg.qid_max < 1:
            raise UsageError(f"{where}: qid_max must be at least 1")
    for key in list(attr):
        if key in _IGNORED_SUBSYS_ATTR:
            if key == "pi_enable" and _bool(attr[key], f"{where} pi_enable"):
                raise UsageError(f"{where}: protection information is not supported")
            attr.pop(key)
    cfg.extra_attr = attr
    for h in _list(s.get("allowed_hosts"), f"{where} allowed_hosts"):
        h = str(h)
        check_hostnqn(h, f"{where} allowed host")
        if known_hosts and h not in known_hosts:
            raise UsageError(f'{where}: allowed host "{h}" is not in "hosts"')
        cfg.allowed_hosts.append(h)
    seen = set()
    for i, n in enumerate(_list(s.get("namespaces"), f"{where} namespaces")):
        ns = _load_namespace(n, f"{where} namespace {i}")
        if ns.nsid in seen:
            raise UsageError(f"{where}: NSID {ns.nsid} appears twice")
        seen.add(ns.nsid)
        cfg.namespaces.append(ns)
    if s.get("passthru"):
        raise UsageError(f"{where}: passthru subsystems are not supported")
    return cfg


def _load_port(p: dict, index: int, subsystems: set[str]) -> PortConfig:
    p = _obj(p, f"port {index}")
    if "portid" not in p:
        raise UsageError(f"port {index}: 'portid' is missing")
    portid = _int(p["portid"], f"port {index} portid")
    where = f"port {portid}"
    if not 0 <= portid <= 0xFFFF:
        raise UsageError(f"{where}: portid out of range 0..65535")
    addr = _load_addr(_obj(p.get("addr", {}), f"{where} addr"), where, served=True)
    cfg = PortConfig(portid=portid, traddr=addr["traddr"], trsvcid=addr["trsvcid"],
                     adrfam=addr["adrfam"], trtype=addr["trtype"], treq=addr["treq"])
    cfg.param = {k: str(v) for k, v in _obj(p.get("param", {}), f"{where} param").items()}
    parse_port_params(cfg.param, where)  # checked now; the server applies them
    for nqn in _list(p.get("subsystems"), f"{where} subsystems"):
        nqn = str(nqn)
        if nqn not in subsystems:
            raise UsageError(f'{where}: subsystem "{nqn}" is not defined in "subsystems"')
        cfg.subsystems.append(nqn)
    for i, r in enumerate(_list(p.get("referrals"), f"{where} referrals")):
        r = _obj(r, f"{where} referral {i}")
        rwhere = f"{where} referral {r.get('name', i)}"
        raddr = _obj(r.get("addr", {}), f"{rwhere} addr")
        a = _load_addr(raddr, rwhere)
        cfg.referrals.append(ReferralConfig(
            name=str(r.get("name", i)), traddr=a["traddr"], trsvcid=a["trsvcid"],
            adrfam=a["adrfam"], trtype=a["trtype"], treq=a["treq"],
            portid=_int(raddr.get("portid", 0), f"{rwhere} portid"),
            enable=_bool(r.get("enable", 1), f"{rwhere} enable")))
    cfg.ana_groups = _load_ana_groups(p.get("ana_groups"), where)
    return cfg


def _load_ana_groups(groups: Any, where: str) -> dict[int, int]:
    """A port's ``ana_groups``: group ID -> state (group 1 optimized unless listed)."""
    out = ana.default_groups()
    seen = set()
    for i, g in enumerate(_list(groups, f"{where} ana_groups")):
        g = _obj(g, f"{where} ana group {i}")
        if "grpid" not in g:
            raise UsageError(f"{where} ana group {i}: 'grpid' is missing")
        grpid = _int(g["grpid"], f"{where} ana group {i} grpid")
        ana.check_grpid(grpid, f"{where} ana_groups")
        if grpid in seen:
            raise UsageError(f"{where}: ANA group {grpid} appears twice")
        seen.add(grpid)
        state = _obj(g.get("ana", {}), f"{where} ana group {grpid} ana").get("state")
        if state is None:  # as nvmet creates a group: inaccessible (group 1: optimized)
            out[grpid] = out.get(grpid, ana.UNLISTED_STATE)
        else:
            out[grpid] = ana.parse_state(state, f"{where} ana group {grpid} ana.state")
    return out


def _check_ana_grpids(cfg: "TargetConfig") -> None:
    """Every namespace's ANA group must be one some port lists (nvmet refuses others)."""
    known = ana.known_groups(cfg.ports)
    for s in cfg.subsystems:
        for n in s.namespaces:
            if n.ana_grpid not in known:
                raise UsageError(f'subsystem "{s.nqn}" namespace {n.nsid}: ana_grpid '
                                 f"{n.ana_grpid} is not an ANA group of any port "
                                 f"(ports[].ana_groups: {', '.join(map(str, known))})")


def _load_host_auth(h: dict, where: str) -> HostAuthConfig | None:
    """The DH-HMAC-CHAP settings of a host entry, checked now rather than at Connect."""
    group = _obj(h.get("dhchap", {}), f"{where} dhchap")
    values = {}
    for attr in _DHCHAP_ATTRS:
        value = h.get(f"dhchap_{attr}", group.get(attr))
        if value not in (None, ""):
            values[attr] = str(value)
    if not values:
        return None
    if "key" not in values:
        raise UsageError(f"{where}: DH-HMAC-CHAP settings without dhchap_key")
    for attr in ("key", "ctrl_key"):
        if attr in values:
            try:
                parse_secret(values[attr])
            except BadSecret as e:
                raise UsageError(f"{where}: dhchap_{attr}: {e}") from None
    auth = HostAuthConfig(values["key"], values.get("ctrl_key"))
    if "hash" in values:
        if values["hash"] not in _BY_NAME_HASH:
            raise UsageError(f"{where}: dhchap_hash {values['hash']!r} is not one of "
                             f"{', '.join(_BY_NAME_HASH)}")
        auth.dhchap_hash = values["hash"]
    if "dhgroup" in values:
        if values["dhgroup"] not in _BY_NAME_GROUP:
            raise UsageError(f"{where}: dhchap_dhgroup {values['dhgroup']!r} is not one of "
                             f"{', '.join(_BY_NAME_GROUP)}")
        auth.dhchap_dhgroup = values["dhgroup"]
    return auth


def host_auth_from(values: dict, where: str) -> HostAuthConfig | None:
    """DH-HMAC-CHAP settings given outside a configuration file (command line,
    control socket) under the configfs names, checked as a host entry's are."""
    return _load_host_auth(values, where)


def _dump_namespace_extras(n: NamespaceConfig) -> dict:
    extras = {}
    if n.read_only:
        extras["read_only"] = 1
    if n.block_size != DEFAULT_BLOCK_SIZE:
        extras["block_size"] = n.block_size
    return extras


def _dump_host(cfg: "TargetConfig", nqn: str) -> dict:
    entry = {"nqn": nqn}
    auth = cfg.host_auth.get(nqn)
    if auth is not None:
        entry.update(dhchap_key=auth.dhchap_key, dhchap_hash=auth.dhchap_hash,
                     dhchap_dhgroup=auth.dhchap_dhgroup)
        if auth.dhchap_ctrl_key:
            entry["dhchap_ctrl_key"] = auth.dhchap_ctrl_key
    return entry


def load_nvmetcli(data: dict) -> TargetConfig:
    """A :class:`TargetConfig` from nvmetcli's saved-config structure."""
    data = _obj(data, "configuration")
    cfg = TargetConfig()
    for i, h in enumerate(_list(data.get("hosts"), "hosts")):
        h = _obj(h, f"host {i}")
        if "nqn" not in h:
            raise UsageError(f"host {i}: 'nqn' is missing")
        nqn = str(h["nqn"])
        check_hostnqn(nqn, f"host {i}")
        auth = _load_host_auth(h, f'host "{nqn}"')
        if auth is not None:
            cfg.host_auth[nqn] = auth
        cfg.hosts.append(nqn)
    known = set(cfg.hosts)
    for i, s in enumerate(_list(data.get("subsystems"), "subsystems")):
        sub = _load_subsystem(s, known, i)
        if cfg.subsystem(sub.nqn):
            raise UsageError(f'subsystem "{sub.nqn}" appears twice')
        cfg.subsystems.append(sub)
    names = {s.nqn for s in cfg.subsystems}
    for i, p in enumerate(_list(data.get("ports"), "ports")):
        port = _load_port(p, i, names)
        if any(q.portid == port.portid for q in cfg.ports):
            raise UsageError(f"port {port.portid} appears twice")
        cfg.ports.append(port)
    _check_ana_grpids(cfg)
    return cfg


def load_nvmetcli_file(path: str) -> TargetConfig:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise UsageError(f"cannot read configuration {path}: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"configuration {path} is not valid JSON: {e}") from None
    try:
        return load_nvmetcli(data)
    except UsageError as e:  # ConfigRefused stays what it is (exit status 78)
        raise type(e)(f"{path}: {e}") from None


def _dump_addr(trtype: str, adrfam: str, traddr: str, trsvcid: str, treq: str) -> dict:
    return {"adrfam": adrfam, "traddr": traddr, "treq": treq, "trsvcid": trsvcid,
            "trtype": trtype}


def dump_nvmetcli(cfg: TargetConfig) -> dict:
    """nvmetcli's saved-config structure (what ``nvmetcli restore`` reads)."""
    subsystems = []
    for s in cfg.subsystems:
        attr = {"allow_any_host": "1" if s.allow_any_host else "0",
                "cntlid_max": str(s.cntlid_max), "cntlid_min": str(s.cntlid_min),
                "version": s.version}
        if s.serial is not None:
            attr["serial"] = s.serial
        if s.model is not None:
            attr["model"] = s.model
        if s.firmware is not None:
            attr["firmware"] = s.firmware
        if s.qid_max is not None:
            attr["qid_max"] = str(s.qid_max)
        attr.update(s.extra_attr)
        subsystems.append({
            "allowed_hosts": list(s.allowed_hosts),
            "attr": attr,
            "namespaces": [{
                "ana_grpid": n.ana_grpid,
                "device": {"nguid": n.nguid or "00000000-0000-0000-0000-000000000000",
                           "path": n.path, "uuid": n.uuid or ""},
                "enable": 1 if n.enable else 0,
                "nsid": n.nsid,
                **_dump_namespace_extras(n),
            } for n in s.namespaces],
            "nqn": s.nqn,
        })
    ports = []
    for p in cfg.ports:
        ports.append({
            "addr": _dump_addr(p.trtype, p.adrfam, p.traddr, p.trsvcid, p.treq),
            "param": dict(p.param),
            "portid": p.portid,
            "referrals": [{
                "addr": dict(_dump_addr(r.trtype, r.adrfam, r.traddr, r.trsvcid, r.treq),
                             portid=str(r.portid)),
                "enable": 1 if r.enable else 0,
                "name": r.name,
            } for r in p.referrals],
            "subsystems": list(p.subsystems),
            "ana_groups": [{"ana": {"state": ana.state_name(state)}, "grpid": grpid}
                           for grpid, state in sorted(p.ana_groups.items())],
        })
    return {"hosts": [_dump_host(cfg, h) for h in cfg.hosts], "ports": ports,
            "subsystems": subsystems}
