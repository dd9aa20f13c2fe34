"""What every association backend reports and remembers, in one shape.

``devlist``, ``disconnect``, ``reconnect`` and the shell completions treat
kernel controllers, FreeBSD handoffs and userspace sessions alike, so each
backend describes its controllers with :class:`ControllerInfo` and keeps the
parameters of a connect as :class:`ConnectParams` (FreeBSD's "reconnect
params": everything needed to dial the same association again).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from nvmecontrol.options import CNTLID_DYNAMIC, default
from nvmecontrol.tuning import Tuning

TYPE_CHECKING = False  # typing's, without importing typing (start-up)

if TYPE_CHECKING:  # imported when used: listing devices needs no host machinery
    from nvmecontrol.host.association import AssociationParams

_JSON_ORDER = ("traddr", "trsvcid", "subnqn", "hostnqn", "hostid", "transport", "num_io_queues",
               "queue_size", "kato_s", "reconnect_delay_s", "ctrl_loss_tmo_s", "hdgst", "ddgst",
               "sq_flow_control", "cntlid", "timeout_s", "dhchap_secret", "dhchap_ctrl_secret")

# The option table's defaults (FreeBSD connect.c: NVMF_KATO_DEFAULT,
# NVMF_DEFAULT_RECONNECT_DELAY, NVMF_DEFAULT_CONTROLLER_LOSS), by the names
# the backends read them under.
DEFAULT_KATO_S = default("kato_s")
DEFAULT_RECONNECT_DELAY_S = default("reconnect_delay_s")
DEFAULT_CTRL_LOSS_TMO_S = default("ctrl_loss_tmo_s")
DEFAULT_NUM_IO_QUEUES = default("num_io_queues")


REDACTED = "<set>"


def _secret(text: str | None):
    """A DHHC-1 secret parsed for the association; a redacted copy has none."""
    from nvmecontrol.wire.dhchap_key import parse_secret

    if not text or text == REDACTED:
        return None
    return parse_secret(text)


@dataclass(slots=True)
class ConnectParams(Tuning):
    """Everything needed to build (or rebuild) one association: where, who,
    and the :class:`Tuning` fields (keywords)."""

    traddr: str
    trsvcid: str
    subnqn: str
    hostnqn: str
    hostid: str  # UUID text
    transport: str = "tcp"
    cntlid: int = CNTLID_DYNAMIC

    @classmethod
    def of(cls, tuning: Tuning, traddr: str, trsvcid: str, subnqn: str, host, *,
           cntlid: int = CNTLID_DYNAMIC) -> "ConnectParams":
        """``tuning`` for one subsystem and host (a ``HostIdentity``)."""
        return cls(traddr, str(trsvcid), subnqn, host.hostnqn, str(host.hostid),
                   cntlid=cntlid, **asdict(tuning.tuning()))

    @property
    def address_text(self) -> str:
        host = f"[{self.traddr}]" if ":" in self.traddr else self.traddr
        return f"{host}:{self.trsvcid}"

    def association_params(self) -> "AssociationParams":
        """The one conversion to what the host logic takes (secrets parsed)."""
        from nvmecontrol.host.association import AssociationParams

        return AssociationParams(hdgst=self.hdgst, ddgst=self.ddgst, kato_s=self.kato_s,
                                 num_io_queues=self.num_io_queues,
                                 io_queue_size=self.queue_size,
                                 sq_flow_control=self.sq_flow_control, cntlid=self.cntlid,
                                 timeout_s=self.timeout_s,
                                 dhchap_secret=_secret(self.dhchap_secret),
                                 dhchap_ctrl_secret=_secret(self.dhchap_ctrl_secret))

    def same_association(self, other: "ConnectParams") -> bool:
        """Same subsystem, address and host: connect must not duplicate it."""
        return (self.transport.lower(), self.traddr, str(self.trsvcid), self.subnqn, self.hostnqn) == \
            (other.transport.lower(), other.traddr, str(other.trsvcid), other.subnqn, other.hostnqn)

    def to_json(self) -> dict:
        # Where and who first, then the tuning: the order devlist -o json and
        # the saved state have always had (asdict would put the base's first).
        return {name: getattr(self, name) for name in _JSON_ORDER}

    @classmethod
    def from_json(cls, data: dict) -> "ConnectParams":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(slots=True)
class NamespaceInfo:
    """One namespace of a controller, and where the system exposes it."""

    name: str  # nvme0n1, nvmeu0ns1
    nsid: int
    size_bytes: int = 0
    lba_size: int = 512
    path: str | None = None  # /dev/nvme0n1, /dev/nbd0
    uri: str | None = None  # nbd+unix:///ns1?socket=...
    tcp_uris: list[str] = field(default_factory=list)  # nbd://host:port/ns1 (--nbd-listen)
    # Identifiers (None: the controller reports none, or they were not read):
    # NGUID as 32 hex digits, EUI-64 as 16, the UUID in its dashed form.
    nguid: str | None = None
    eui64: str | None = None
    uuid: str | None = None
    # This controller's ANA group of the namespace and its state through
    # this controller ("optimized", "non-optimized", "inaccessible",
    # "persistent-loss", "change"); None without ANA (CMIC bit 3 clear).
    anagrpid: int | None = None
    ana_state: str | None = None

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(slots=True)
class ControllerInfo:
    """One controller as devlist shows it."""

    name: str  # nvme0, nvmeu0
    backend: str  # "kernel", "nbd", "freebsd"
    model: str = ""
    subnqn: str = ""
    transport: str = "tcp"
    traddr: str = ""
    trsvcid: str = ""
    hostnqn: str = ""
    cntlid: int = 0
    state: str = "live"  # backend's own word: live, connecting, resetting, deleting, dead
    connected: bool = True
    disconnected_since: float | None = None  # time.time() of the loss, when not connected
    namespaces: list[NamespaceInfo] = field(default_factory=list)
    pid: int | None = None  # the session process, for userspace sessions
    params: ConnectParams | None = None
    warnings: list[str] = field(default_factory=list)  # what connect could not do (e.g. attach)

    def to_json(self) -> dict:
        d = asdict(self)
        d["params"] = self.params.to_json() if self.params else None
        if d["params"]:
            # What devlist prints and state files keep: whether a secret is
            # set, never the secret (the session holds it in memory).
            for name in ("dhchap_secret", "dhchap_ctrl_secret"):
                if d["params"].get(name):
                    d["params"][name] = REDACTED
        return d
