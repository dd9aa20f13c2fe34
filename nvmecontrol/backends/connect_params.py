"""The parameters of one connect: :class:`ConnectParams`, a :class:`Tuning` with where and who.

FreeBSD's "reconnect params": everything a backend keeps to dial the same
association again.  Named ``nvmecontrol.backends.model.ConnectParams``; it
lives here because it is a dataclass (programs copy it with
``dataclasses.replace``, as they copy a Tuning), and ``import dataclasses``
costs about a bare interpreter start: ``backends.model`` loads this module
on first use, so a devlist that finds no saved parameters does without it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from nvmecontrol.backends.model import REDACTED
from nvmecontrol.options import CNTLID_DYNAMIC
from nvmecontrol.tuning import Tuning

TYPE_CHECKING = False  # typing's, without importing typing (start-up)

if TYPE_CHECKING:  # imported when used: listing devices needs no host machinery
    from nvmecontrol.host.association import AssociationParams

_JSON_ORDER = ("traddr", "trsvcid", "subnqn", "hostnqn", "hostid", "transport", "num_io_queues",
               "queue_size", "kato_s", "reconnect_delay_s", "ctrl_loss_tmo_s", "hdgst", "ddgst",
               "sq_flow_control", "cntlid", "timeout_s", "dhchap_secret", "dhchap_ctrl_secret")


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
