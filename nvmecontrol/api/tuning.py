"""How an association is tuned: :class:`Tuning`, one record for connect, connect-all and reconnect.

Its fields are the option table's record fields (``nvmecontrol/options.py``)
and so are their defaults: FreeBSD's (one I/O queue, KATO 120 s, reconnect
every 10 s, give up after 600 s, the controller's largest queue size).
Standard library and the option table only: the command line builds its
option records from this module before anything else is loaded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from nvmecontrol.options import CNTLID_DYNAMIC, default, record_fields

TYPE_CHECKING = False  # typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from nvmecontrol.backends.model import ConnectParams
    from nvmecontrol.hostid import HostIdentity

__all__ = ["Tuning"]


@dataclass(slots=True)
class Tuning:
    """The tuning of an association (the option table's defaults unless given).

    ``queue_size`` 0 takes the controller's largest (CAP.MQES+1, capped);
    ``kato_s`` 0 means no keep-alive; ``reconnect_delay_s`` and
    ``ctrl_loss_tmo_s`` are how a session or the kernel redials a lost
    association; the secrets are ``DHHC-1:..`` text (see
    :func:`nvmecontrol.api.keys.check_key`).
    """

    num_io_queues: int = default("num_io_queues")
    queue_size: int = default("queue_size")
    kato_s: int = default("kato_s")
    reconnect_delay_s: int = default("reconnect_delay_s")
    ctrl_loss_tmo_s: int = default("ctrl_loss_tmo_s")
    hdgst: bool = default("hdgst")
    ddgst: bool = default("ddgst")
    sq_flow_control: bool = default("sq_flow_control")
    timeout_s: float = default("timeout_s")
    dhchap_secret: str | None = default("dhchap_secret")
    dhchap_ctrl_secret: str | None = default("dhchap_ctrl_secret")

    @classmethod
    def from_options(cls, **values) -> "Tuning":
        """The tuning of command options by their names (``keep_alive_tmo=...``,
        as the option table spells them); options that tune nothing are ignored."""
        fields = record_fields()
        return cls(**{fields[k]: v for k, v in values.items() if k in fields})

    def params(self, traddr: str, trsvcid: str, subnqn: str, host: HostIdentity, *,
               cntlid: int = CNTLID_DYNAMIC) -> ConnectParams:
        """What a backend keeps of one association: this tuning for one subsystem and host."""
        from nvmecontrol.backends.model import ConnectParams

        return ConnectParams(traddr, str(trsvcid), subnqn, host.hostnqn, str(host.hostid),
                             cntlid=cntlid, **dataclasses.asdict(self))
