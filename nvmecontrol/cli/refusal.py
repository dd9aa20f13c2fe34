"""A Connect refused with Invalid Parameters, said with the field and the value given.

The controller points at the offending byte (IATTR/IPO, decoded by
``wire.status.connect_invalid_field``); "byte 256 of the Connect data" means
nothing to a user, "the controller does not offer subsystem NQN 'x'" does.
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
    from nvmecontrol.wire.fabrics import parse_connect_invalid
    from nvmecontrol.wire.status import (SC_CONNECT_INVALID_PARAM, SCT_COMMAND_SPECIFIC,
                                         connect_invalid_field, decode_status)

    cqe = getattr(e, "cqe", None)
    st = decode_status(e.status)
    if cqe is None or (int(st.sct), st.sc) != (SCT_COMMAND_SPECIFIC, SC_CONNECT_INVALID_PARAM):
        return e
    ipo, in_data = parse_connect_invalid(cqe.dw0)
    field = connect_invalid_field(ipo, in_data)
    if field is None:
        return e
    head = str(e).split("; invalid parameter at", 1)[0]
    # The field and the value first; the offset stays, last, for protocol work.
    where = "Connect data" if in_data else "Connect command"
    e.args = (f"{head}: {field}: {explain_field(field, asked)} "
              f"(invalid parameter at byte {ipo} of the {where})",)
    return e


@contextmanager
def explained(asked: Asked):
    """Re-raise a Connect refusal with its field explained."""
    try:
        yield
    except CommandFailed as e:
        raise explain(e, asked)
