"""Lists on a terminal: a rich table; piped, the stable text the caller made.

A table never cuts a value: NQNs, addresses and NBD URIs are copied from
it into other commands.  When the whole table does not fit the terminal,
the columns named ``long`` leave it and are printed on lines of their own
under their row (``label: value``), where the terminal may wrap them but
nothing is lost.

Colour follows NO_COLOR (https://no-color.org) and is never used when the
output is not a terminal; JSON never goes through here.
"""

from __future__ import annotations

import os
import sys


def is_terminal() -> bool:
    return sys.stdout.isatty()


def _console(**kw):
    from rich.console import Console

    # No emoji codes and no markup: ":1234:" in an IPv6 address and "[...]" in
    # an NQN are data, not a picture or a style.
    return Console(no_color=bool(os.environ.get("NO_COLOR")), highlight=False, emoji=False,
                   markup=False, **kw)


def _table(columns: list[str], rows: list[list[str]], title: str | None):
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, header_style="bold", box=None, pad_edge=False)
    for col in columns:
        # fold, never "…": if a cell must narrow, its characters all stay.
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def _wanted_width(console, table) -> int:
    """The width the table needs to show every cell on one line."""
    from rich.measure import Measurement

    return Measurement.get(console, console.options.update_width(1 << 20), table).maximum


def print_table(columns: list[str], rows, *, title: str | None = None,
                long: tuple[str, ...] = ()) -> None:
    # rich is loaded only for a terminal: piped output must start fast.
    rows = [[str(x) for x in row] for row in rows]
    console = _console()
    table = _table(columns, rows, title)
    if not long or _wanted_width(console, table) <= console.width:
        console.print(table)
        return
    if title:
        console.print(title)
    for line in stacked_lines(columns, rows, long):
        # soft_wrap: the terminal wraps a long line, rich does not cut or fold it.
        console.print(line, soft_wrap=True)


def stacked_lines(columns: list[str], rows: list[list[str]], long: tuple[str, ...]) -> list[str]:
    """The narrow layout: short columns aligned on a row's line, long ones below it."""
    keep = [i for i, c in enumerate(columns) if c not in long]
    widths = {i: max(len(columns[i]), *(len(r[i]) for r in rows)) for i in keep}
    out = ["  ".join(columns[i].ljust(widths[i]) for i in keep).rstrip()]
    for r in rows:
        out.append("  ".join(r[i].ljust(widths[i]) for i in keep).rstrip())
        indent = " " * (4 + len(r[keep[0]]) - len(r[keep[0]].lstrip())) if keep else "    "
        out += [f"{indent}{c}: {r[i]}" for i, c in enumerate(columns) if c in long and r[i]]
    return out


def progress(total: int, description: str):
    """A progress display on stderr for long loops, or None when not on a terminal."""
    if total < 2 or not sys.stderr.isatty():
        return None
    from rich.progress import Progress

    p = Progress(console=_console(stderr=True), transient=True)
    p.add_task(description, total=total)
    return p
