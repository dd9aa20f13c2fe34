"""Lists on a terminal: a rich table; piped, the stable text the caller made.

Colour follows NO_COLOR (https://no-color.org) and is never used when the
output is not a terminal; JSON never goes through here.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.table import Table


def is_terminal() -> bool:
    return sys.stdout.isatty()


def print_table(columns: list[str], rows, *, title: str | None = None) -> None:
    table = Table(title=title, header_style="bold", box=None, pad_edge=False)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*[str(x) for x in row])
    Console(no_color=bool(os.environ.get("NO_COLOR")), highlight=False).print(table)


def progress(total: int, description: str):
    """A progress display on stderr for long loops, or None when not on a terminal."""
    if total < 2 or not sys.stderr.isatty():
        return None
    from rich.progress import Progress

    p = Progress(console=Console(stderr=True, no_color=bool(os.environ.get("NO_COLOR"))),
                 transient=True)
    p.add_task(description, total=total)
    return p
