"""What every association backend reports and remembers, in one shape.

``devlist``, ``disconnect``, ``reconnect`` and the shell completions treat
kernel controllers, FreeBSD handoffs and userspace sessions alike, so each
backend describes its controllers with :class:`ControllerInfo` and keeps the
parameters of a connect as :class:`ConnectParams` (FreeBSD's "reconnect
params": everything needed to dial the same association again).
"""

from __future__ import annotations

from nvmecontrol.options import CNTLID_DYNAMIC, default  # noqa: F401 (CNTLID_DYNAMIC re-exported)
from nvmecontrol.wire.records import Record

TYPE_CHECKING = False  # typing's, without importing typing (start-up)

if TYPE_CHECKING:
    from nvmecontrol.backends.connect_params import ConnectParams

# The option table's defaults (FreeBSD connect.c: NVMF_KATO_DEFAULT,
# NVMF_DEFAULT_RECONNECT_DELAY, NVMF_DEFAULT_CONTROLLER_LOSS), by the names
# the backends read them under.
DEFAULT_KATO_S = default("kato_s")
DEFAULT_RECONNECT_DELAY_S = default("reconnect_delay_s")
DEFAULT_CTRL_LOSS_TMO_S = default("ctrl_loss_tmo_s")
DEFAULT_NUM_IO_QUEUES = default("num_io_queues")


REDACTED = "<set>"


def __getattr__(name: str):
    # ConnectParams is a dataclass (a Tuning, which programs copy with
    # dataclasses.replace); ``import dataclasses`` costs about a bare
    # interpreter start, so devlist loads it only when a controller has
    # saved parameters (PEP 562).
    if name == "ConnectParams":
        from nvmecontrol.backends.connect_params import ConnectParams

        globals()["ConnectParams"] = ConnectParams
        return ConnectParams
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "ConnectParams"])


class NamespaceInfo(Record):
    """One namespace of a controller, and where the system exposes it."""

    __slots__ = ("name", "nsid", "size_bytes", "lba_size", "path", "uri", "tcp_uris", "nguid",
                 "eui64", "uuid", "anagrpid", "ana_state")

    def __init__(self, name: str, nsid: int, size_bytes: int = 0, lba_size: int = 512,
                 path: str | None = None, uri: str | None = None,
                 tcp_uris: list[str] | None = None, nguid: str | None = None,
                 eui64: str | None = None, uuid: str | None = None,
                 anagrpid: int | None = None, ana_state: str | None = None):
        self.name = name  # nvme0n1, nvmeu0ns1
        self.nsid = nsid
        self.size_bytes = size_bytes
        self.lba_size = lba_size
        self.path = path  # /dev/nvme0n1, /dev/nbd0
        self.uri = uri  # nbd+unix:///ns1?socket=...
        self.tcp_uris = [] if tcp_uris is None else tcp_uris  # nbd://host:port/ns1 (--nbd-listen)
        # Identifiers (None: the controller reports none, or they were not read):
        # NGUID as 32 hex digits, EUI-64 as 16, the UUID in its dashed form.
        self.nguid = nguid
        self.eui64 = eui64
        self.uuid = uuid
        # This controller's ANA group of the namespace and its state through
        # this controller ("optimized", "non-optimized", "inaccessible",
        # "persistent-loss", "change"); None without ANA (CMIC bit 3 clear).
        self.anagrpid = anagrpid
        self.ana_state = ana_state

    def to_json(self) -> dict:
        d = self._asdict()
        d["tcp_uris"] = list(self.tcp_uris)
        return d


class ControllerInfo(Record):
    """One controller as devlist shows it."""

    __slots__ = ("name", "backend", "model", "subnqn", "transport", "traddr", "trsvcid",
                 "hostnqn", "cntlid", "state", "connected", "disconnected_since", "namespaces",
                 "pid", "params", "warnings")

    def __init__(self, name: str, backend: str, model: str = "", subnqn: str = "",
                 transport: str = "tcp", traddr: str = "", trsvcid: str = "", hostnqn: str = "",
                 cntlid: int = 0, state: str = "live", connected: bool = True,
                 disconnected_since: float | None = None,
                 namespaces: list[NamespaceInfo] | None = None, pid: int | None = None,
                 params: ConnectParams | None = None, warnings: list[str] | None = None):
        self.name = name  # nvme0, nvmeu0
        self.backend = backend  # "kernel", "nbd", "freebsd"
        self.model = model
        self.subnqn = subnqn
        self.transport = transport
        self.traddr = traddr
        self.trsvcid = trsvcid
        self.hostnqn = hostnqn
        self.cntlid = cntlid
        self.state = state  # backend's own word: live, connecting, resetting, deleting, dead
        self.connected = connected
        self.disconnected_since = disconnected_since  # time.time() of the loss, when not connected
        self.namespaces = [] if namespaces is None else namespaces
        self.pid = pid  # the session process, for userspace sessions
        self.params = params
        self.warnings = [] if warnings is None else warnings  # what connect could not do (attach)

    def to_json(self) -> dict:
        d = self._asdict()
        d["namespaces"] = [ns.to_json() for ns in self.namespaces]
        d["warnings"] = list(self.warnings)
        d["params"] = self.params.to_json() if self.params else None
        if d["params"]:
            # What devlist prints and state files keep: whether a secret is
            # set, never the secret (the session holds it in memory).
            for name in ("dhchap_secret", "dhchap_ctrl_secret"):
                if d["params"].get(name):
                    d["params"][name] = REDACTED
        return d
