"""Printing a Reservation Status data structure (``resv report``).

Text is FreeBSD's ``nvmecontrol resv report`` line for line: labels padded
to column 34, keys and host identifiers as the little-endian 64-bit values
FreeBSD prints (``%08jx``: at least eight digits).  JSON uses the spec's
mnemonics and gives host identifiers as their bytes in order (hex), the way
they were configured.
"""

from __future__ import annotations

from nvmecontrol.api.structures import RCSTS_HOLDER, ReservationStatus, ResvType

_COLUMN = 34


def _line(label: str, value: str, indent: str = "") -> str:
    head = f"{indent}{label}:"
    return f"{head}{' ' * max(1, _COLUMN - len(head))}{value}\n"


def _le64(b: bytes) -> int:
    return int.from_bytes(b[:8], "little")


def render_report_text(st: ReservationStatus, *, extended: bool) -> str:
    out = [
        _line("Generation", str(st.gen)),
        _line("Reservation Type", str(st.rtype)),
        _line("Number of Registered Controllers", str(st.regctl)),
        _line("Persist Through Power Loss State", str(int(st.ptpls))),
    ]
    for c in st.controllers:
        out.append(_line("Controller ID", f"0x{c.cntlid:04x}"))
        out.append(_line("Reservation Status", str(c.rcsts), "  "))
        if extended:
            out.append(_line("Reservation Key", f"0x{c.rkey:08x}", "  "))
            out.append(_line("Host Identifier",
                             f"0x{_le64(c.hostid[:8]):08x}{_le64(c.hostid[8:16]):08x}", "  "))
        else:
            out.append(_line("Host Identifier", f"0x{_le64(c.hostid):08x}", "  "))
            out.append(_line("Reservation Key", f"0x{c.rkey:08x}", "  "))
    return "".join(out)


def rtype_name(rtype: int) -> str:
    if rtype == 0:
        return "none"
    try:
        return ResvType(rtype).name.lower().replace("_", "-")
    except ValueError:
        return f"reserved ({rtype:#x})"


def report_to_json(st: ReservationStatus, *, nsid: int, extended: bool) -> dict:
    return {
        "nsid": nsid,
        "eds": extended,
        "gen": st.gen,
        "rtype": st.rtype,
        "rtype_name": rtype_name(st.rtype),
        "regctl": st.regctl,
        "ptpls": st.ptpls,
        "controllers": [{"cntlid": c.cntlid, "rcsts": c.rcsts,
                         "holder": bool(c.rcsts & RCSTS_HOLDER),
                         "hostid": c.hostid.hex(), "rkey": c.rkey}
                        for c in st.controllers],
    }


def trimmed_for_hex(data: bytes, *, verbose: bool) -> bytes:
    """FreeBSD's ``-x``: the structure without its trailing zeros (never under
    64 bytes), the whole buffer with ``-v``."""
    if verbose:
        return data
    end = len(data)
    while end > 64 and data[end - 1] == 0:
        end -= 1
    return data[:(end + 3) // 4 * 4]  # whole dwords: the dump prints dwords
