"""A Connect refused with Invalid Parameters, said with the field and the value given.

The controller points at the offending byte (IATTR/IPO; the API names the
field, ``api.fabrics.connect_refusal``); "byte 256 of the Connect data"
means nothing to a user, "the controller does not offer subsystem NQN 'x'"
does, with the option that set it.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from nvmecontrol.errors import CommandFailed


@dataclass(slots=True)
class Asked:
    """What this host put in the Connect command, for the explanation."""

    subnqn: str
    hostnqn: str
    hostid: str
    cntlid: int = 0xFFFF
    queue_size: int = 0  # 0: the controller's maximum
    num_io_queues: int = 1


def explain_field(field: str, asked: Asked) -> str:
    cntlid = {0xFFFF: "dynamic", 0xFFFE: "static"}.get(asked.cntlid, f"{asked.cntlid:#x}")
    return {
        "SUBNQN": f"the controller does not offer subsystem NQN {asked.subnqn!r} "
                  "(see nvmecontrol discover)",
        "HOSTNQN": f"the controller refuses host NQN {asked.hostnqn!r} (-q/--hostnqn)",
        "HOSTID": f"the controller refuses host ID {asked.hostid} (-I/--hostid; another host "
                  "may use it with another host NQN)",
        "CNTLID": f"the controller refuses controller ID {cntlid} (-c/--cntlid)",
        "SQSIZE": "the controller refuses the queue size "
                  + (f"{asked.queue_size} (-Q/--queue-size; at most CAP.MQES+1)"
                     if asked.queue_size else "(SQSIZE)"),
        "QID": f"the controller refuses a queue ID: it grants fewer than the "
               f"{asked.num_io_queues} I/O queues asked (-i/--nr-io-queues)",
        "KATO": "the controller refuses the keep-alive timeout (-k/--keep-alive-tmo)",
        "CATTR": "the controller refuses the connect attributes (SQ flow control: -F)",
        "RECFMT": "the controller does not support this Connect record format",
    }[field]


def explain(e: CommandFailed, asked: Asked) -> CommandFailed:
    """``e`` with its message naming the field, when it is an Invalid Parameters refusal."""
    from nvmecontrol.api.fabrics import connect_refusal

    refusal = connect_refusal(e)
    if refusal is None:
        return e
    head = str(e).split("; invalid parameter at", 1)[0]
    # The field and the value first; the offset stays, last, for protocol work.
    where = "Connect data" if refusal.in_data else "Connect command"
    e.args = (f"{head}: {refusal.field}: {explain_field(refusal.field, asked)} "
              f"(invalid parameter at byte {refusal.offset} of the {where})",)
    return e


@contextmanager
def explained(asked: Asked):
    """Re-raise a Connect refusal with its field explained."""
    try:
        yield
    except CommandFailed as e:
        raise explain(e, asked)
