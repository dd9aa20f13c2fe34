"""devlist and connect results: FreeBSD's text, a table on a terminal, JSON.

FreeBSD devlist (devlist.c): ``%6s: %s`` with the model, then
`` (connected via TCP addr:port)`` or `` (disconnected for N seconds)``,
then one ``  %10s (%juMB)`` line per namespace.  Sessions add where their
exports are (NBD URI, /dev/nbdX) after the size.
"""

from __future__ import annotations

import time

TYPE_CHECKING = False  # typing's, without importing typing (start-up)

if TYPE_CHECKING:  # annotations only: devlist loads the backends when it runs
    from nvmecontrol.api.structures import ControllerInfo, NamespaceInfo

_UNITS = "KMGTPE"


def humanize(size: int) -> str:
    """FreeBSD humanize_number style: 3 significant digits, decimal prefix on 1024s."""
    if size < 1024:
        return f"{size}B"
    value = float(size)
    for unit in _UNITS:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            return f"{value:.1f}{unit}" if value < 10 else f"{value:.0f}{unit}"
    return f"{size}B"


def size_text(ns: NamespaceInfo, human: bool) -> str:
    return humanize(ns.size_bytes) if human else f"{ns.size_bytes // 1024 // 1024}MB"


def address_text(c: ControllerInfo) -> str:
    host = f"[{c.traddr}]" if ":" in c.traddr else c.traddr
    return f"{host}:{c.trsvcid}" if c.trsvcid else host


def state_text(c: ControllerInfo, now: float | None = None) -> str:
    if c.transport.lower() == "pcie":
        return ""
    if c.connected:
        return f"connected via {c.transport.upper()} {address_text(c)}"
    if c.disconnected_since:
        seconds = max(0, int((now or time.time()) - c.disconnected_since))
        what = "session process exited" if c.state == "dead" else "disconnected"
        return f"{what} for {seconds} seconds"
    return c.state


def where(ns: NamespaceInfo) -> str:
    return " ".join(x for x in (ns.path, ns.uri, *ns.tcp_uris) if x)


def identity_text(ns: NamespaceInfo) -> str:
    """The namespace's identifiers and its ANA state through this path, as
    ``key=value`` words (those the controller reports)."""
    words = [f"{k}={v}" for k, v in (("nguid", ns.nguid), ("eui64", ns.eui64),
                                     ("uuid", ns.uuid)) if v]
    if ns.ana_state:
        words.append(f"ana={ns.ana_state}"
                     + (f" (group {ns.anagrpid})" if ns.anagrpid is not None else ""))
    return " ".join(words)


def render_devlist_text(controllers: list[ControllerInfo], *, human: bool = False,
                        now: float | None = None) -> str:
    lines = []
    for c in controllers:
        state = state_text(c, now)
        lines.append(f"{c.name:>6s}: {c.model}" + (f" ({state})" if state else ""))
        for ns in c.namespaces:
            extra = where(ns) if c.backend == "nbd" else ""
            lines.append(f"  {ns.name:>10s} ({size_text(ns, human)})" + (f" {extra}" if extra else ""))
    return "\n".join(lines) + "\n"


def devlist_rows(controllers: list[ControllerInfo], *, human: bool, now: float | None = None):
    for c in controllers:
        yield [c.name, c.backend, c.model, c.subnqn, state_text(c, now), "", ""]
        for ns in c.namespaces:
            yield ["  " + ns.name, "", "", "", "", size_text(ns, human), where(ns)]


DEVLIST_COLUMNS = ["Device", "Backend", "Model", "Subsystem NQN", "State", "Size", "Exported as"]
# Copied into other commands: never cut; on a narrow terminal each on its own line.
DEVLIST_LONG_COLUMNS = ("Subsystem NQN", "State", "Exported as")


def devlist_json(controllers: list[ControllerInfo]) -> dict:
    return {"controllers": [c.to_json() for c in controllers]}


def connect_line(c: ControllerInfo, existing: bool) -> str:
    """One line per controller connect made (or found): the names scripts need."""
    verb = "already connected to" if existing else "connected to"
    head = f"{c.name}: {verb} {c.subnqn} at {address_text(c)}"
    if not c.namespaces:
        return head
    if c.backend == "nbd":
        return head + "\n" + "\n".join(f"  {ns.name}: {where(ns)}" for ns in c.namespaces)
    return head + " (" + ", ".join(ns.name for ns in c.namespaces) + ")"


# --- devlist -v: the topology, as `nvme list-subsys` draws it ----------------------------
#
# Subsystem (per host NQN, as a host sees subsystems) -> controllers, which are
# the paths to it -> namespaces.  A path shows the connect parameters it was
# made with (what the backend keeps), not a second query of the controller.

def _digests(p) -> str:
    names = [n for n, on in (("header", p.hdgst), ("data", p.ddgst)) if on]
    return "+".join(names) or "none"


def path_details(c: ControllerInfo) -> str:
    p = c.params
    if p is None:
        return c.backend
    queues = f"{p.num_io_queues} I/O queue{'s' if p.num_io_queues != 1 else ''}"
    size = f"{p.queue_size} entries" if p.queue_size else "CAP.MQES+1 entries"
    return (f"{c.backend}, {queues} x {size}, digests {_digests(p)}, kato {p.kato_s} s, "
            f"cntlid {c.cntlid:#x}")


def subsystems(controllers: list[ControllerInfo]) -> list[tuple[str, str, list[ControllerInfo]]]:
    """``(subnqn, hostnqn, controllers)`` in the order first seen."""
    groups: dict[tuple[str, str], list[ControllerInfo]] = {}
    for c in controllers:
        groups.setdefault((c.subnqn, c.hostnqn), []).append(c)
    return [(s, h, cs) for (s, h), cs in groups.items()]


def render_topology_text(controllers: list[ControllerInfo], *, human: bool = False,
                         now: float | None = None) -> str:
    lines = []
    for subnqn, hostnqn, paths in subsystems(controllers):
        if lines:
            lines.append("")
        lines.append(f"NQN={subnqn}")
        if hostnqn:
            lines.append(f"    hostnqn={hostnqn}")
        lines.append("\\")
        for i, c in enumerate(paths):
            last = i == len(paths) - 1
            addr = f"traddr={c.traddr},trsvcid={c.trsvcid}" if c.traddr else ""
            state = c.state if c.connected else state_text(c, now)
            lines.append(" +- " + " ".join(x for x in (c.name, c.transport.lower(), addr, state,
                                                       f"({path_details(c)})") if x))
            bar = "   " if last else " | "
            for ns in c.namespaces:
                extra = " ".join(x for x in (where(ns), identity_text(ns)) if x)
                lines.append(f"{bar}   +- {ns.name} {size_text(ns, human)}"
                             + (f" {extra}" if extra else ""))
    return "\n".join(lines) + "\n"


def topology_json(controllers: list[ControllerInfo]) -> dict:
    return {"subsystems": [{"subnqn": s, "hostnqn": h, "paths": [c.to_json() for c in cs]}
                           for s, h, cs in subsystems(controllers)]}
