"""What every association backend reports and remembers, in one shape.

``devlist``, ``disconnect``, ``reconnect`` and the shell completions treat
kernel controllers, FreeBSD handoffs and userspace sessions alike, so each
backend describes its controllers with :class:`ControllerInfo` and keeps the
parameters of a connect as :class:`ConnectParams` (FreeBSD's "reconnect
params": everything needed to dial the same association again).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from nvmecontrol.options import CNTLID_DYNAMIC, default, record_fields

TYPE_CHECKING = False  # typing's, without importing typing (start-up)

if TYPE_CHECKING:  # imported when used: listing devices needs no host machinery
    from nvmecontrol.host.association import AssociationParams

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


@dataclass(slots=True, kw_only=True)
class Tuning:
    """How an association is tuned: one record for connect, connect-all and reconnect.

    Its fields are the option table's record fields (``nvmecontrol/options.py``)
    and so are their defaults: FreeBSD's (one I/O queue, KATO 120 s, reconnect
    every 10 s, give up after 600 s, the controller's largest queue size).
    ``queue_size`` 0 takes the controller's largest (CAP.MQES+1, capped);
    ``kato_s`` 0 means no keep-alive; ``reconnect_delay_s`` and
    ``ctrl_loss_tmo_s`` are how a session or the kernel redials a lost
    association; the secrets are ``DHHC-1:..`` text.  Public as
    ``nvmecontrol.api.Tuning``; :class:`ConnectParams` is one for one
    subsystem and host.
    """

    num_io_queues: int = default("num_io_queues")
    queue_size: int = default("queue_size")  # 0: CAP.MQES + 1 (capped)
    kato_s: int = default("kato_s")
    reconnect_delay_s: int = default("reconnect_delay_s")
    ctrl_loss_tmo_s: int = default("ctrl_loss_tmo_s")
    hdgst: bool = default("hdgst")
    ddgst: bool = default("ddgst")
    sq_flow_control: bool = default("sq_flow_control")
    timeout_s: float = default("timeout_s")
    # Every association built with these, reconnects included, authenticates.
    dhchap_secret: str | None = default("dhchap_secret")
    dhchap_ctrl_secret: str | None = default("dhchap_ctrl_secret")

    @classmethod
    def from_options(cls, **values) -> "Tuning":
        """The tuning of command options by their names (``keep_alive_tmo=...``,
        as the option table spells them); options that tune nothing are ignored."""
        names = record_fields()
        return cls(**{names[k]: v for k, v in values.items() if k in names})

    def tuning(self) -> "Tuning":
        """Just the tuning (a ConnectParams without its address and identities)."""
        return Tuning(**{f.name: getattr(self, f.name) for f in fields(Tuning)})

    def params(self, traddr: str, trsvcid: str, subnqn: str, host, *,
               cntlid: int = CNTLID_DYNAMIC) -> "ConnectParams":
        """What a backend keeps of one association: this tuning for one subsystem
        and host (a ``HostIdentity``)."""
        return ConnectParams(traddr, str(trsvcid), subnqn, host.hostnqn, str(host.hostid),
                             cntlid=cntlid, **asdict(self.tuning()))


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
        return asdict(self)

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
