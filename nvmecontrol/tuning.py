"""How an association is tuned: :class:`Tuning`, one record for connect, connect-all and reconnect.

The option table's record fields with its defaults, written once: a
backend's record of one association (``backends.model.ConnectParams``) is a
Tuning with its address and identities, and the public API names it
``nvmecontrol.api.Tuning``.  Standard library and the option table only:
the command line builds its option records from it before anything else
is loaded (``connect --help`` loads no backend).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from nvmecontrol.options import default, record_fields


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
    subsystem and host (``backends.model.ConnectParams.of``).
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
