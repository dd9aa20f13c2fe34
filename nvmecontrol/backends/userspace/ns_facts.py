"""What ``devlist -v`` shows of a session's namespaces beyond their size.

The identifiers (NGUID and EUI-64 from Identify Namespace, the UUID from
the Namespace Identification Descriptor list, CNS 03h) and, when the
controller reports Asymmetric Namespace Access (Identify Controller CMIC
bit 3), each namespace's ANA group and its state through this controller
(ANA log page 0Ch).  Read when the session reads its namespaces: at start,
after a reconnect and on a Namespace Attribute Notice.

A controller that refuses the descriptor list or the ANA log costs only
those facts: they stay None, the namespaces are exported all the same.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

from nvmecontrol.errors import (CommandFailed, ConnectionLost, NvmeControlError,
                                PeerProtocolError, PeerTimeout)
from nvmecontrol.wire.admin import GetLogPage
from nvmecontrol.wire.identify import (CMIC_ANA, CNS_NS_ID_DESCRIPTORS, Nidt,
                                       decode_ns_id_descriptors)
from nvmecontrol.wire.logpages import AnaState, LogPage, ana_log_size, decode_ana_log

log = logging.getLogger("nvmecontrol.session")

# The ANA log a controller may make us read: its size follows NANAGRPID and
# NN, both the controller's to choose.
MAX_ANA_LOG_BYTES = 1 << 20
ANA_STATE_NAMES = {AnaState.OPTIMIZED: "optimized", AnaState.NON_OPTIMIZED: "non-optimized",
                   AnaState.INACCESSIBLE: "inaccessible",
                   AnaState.PERSISTENT_LOSS: "persistent-loss", AnaState.CHANGE: "change"}


class NamespaceFacts(NamedTuple):
    """The ``NamespaceInfo`` fields of one namespace (None: not reported)."""

    nguid: str | None = None
    eui64: str | None = None
    uuid: str | None = None
    anagrpid: int | None = None
    ana_state: str | None = None


NO_FACTS = NamespaceFacts()


def _nonzero_hex(b: bytes) -> str | None:
    return b.hex() if any(b) else None


def _uuid_text(b: bytes) -> str:
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def ana_state_name(state: int) -> str:
    try:
        return ANA_STATE_NAMES[AnaState(state)]
    except (ValueError, KeyError):
        return f"reserved ({state:#x})"


def facts_of(ns, descriptors: list | None, ana_states: dict[int, int] | None) -> NamespaceFacts:
    """The facts of one namespace from its decoded Identify Namespace data, its
    descriptor list (or None) and the ANA state per group (None without ANA)."""
    nguid, eui64 = _nonzero_hex(ns.nguid), _nonzero_hex(ns.eui64)
    uuid = None
    for d in descriptors or ():
        if d.nidt == Nidt.UUID and any(d.nid):
            uuid = _uuid_text(d.nid)
        elif d.nidt == Nidt.NGUID and nguid is None:
            nguid = _nonzero_hex(d.nid)
        elif d.nidt == Nidt.EUI64 and eui64 is None:
            eui64 = _nonzero_hex(d.nid)
    if ana_states is None or not ns.anagrpid:
        return NamespaceFacts(nguid, eui64, uuid)
    state = ana_states.get(ns.anagrpid)
    return NamespaceFacts(nguid, eui64, uuid, ns.anagrpid,
                          ana_state_name(state) if state is not None else None)


def fetch_namespace_facts(assoc, namespaces: dict) -> dict[int, NamespaceFacts]:
    """The facts of ``namespaces`` (NSID -> decoded Identify Namespace) of ``assoc``.

    The caller holds the admin queue's lock, as for any admin command; a
    lost connection raises as any admin command's failure does.
    """
    ana_states = _ana_states(assoc)
    out = {}
    for nsid, ns in namespaces.items():
        out[nsid] = facts_of(ns, _descriptors(assoc, nsid), ana_states)
    return out


def _descriptors(assoc, nsid: int) -> list | None:
    try:
        return decode_ns_id_descriptors(assoc.identify(CNS_NS_ID_DESCRIPTORS, nsid))
    except (CommandFailed, PeerProtocolError) as e:  # an older controller: no UUID then
        log.debug("namespace %d: no identification descriptors: %s", nsid, e)
        return None


def _ana_states(assoc) -> dict[int, int] | None:
    """ANA group -> state through this controller; None when the controller has no ANA."""
    cdata = assoc.cdata
    if cdata is None or not cdata.cmic & CMIC_ANA:
        return None
    length = min(MAX_ANA_LOG_BYTES, ana_log_size(max(cdata.nanagrpid, 1), max(cdata.nn, 1)))
    try:
        raw = assoc.get_log_page(GetLogPage(LogPage.ANA, length))
        return {g.grpid: g.state for g in decode_ana_log(raw).groups}
    except (ConnectionLost, PeerTimeout):
        raise  # the association's failure, for the caller to handle
    except NvmeControlError as e:
        log.warning("ANA log page: %s; ANA states are not shown", e)
        return None
