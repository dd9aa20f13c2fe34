"""What ``devlist`` does, without its option parsing (and without typer).

Every controller of every backend, with its namespaces: FreeBSD's format
when piped (``human`` for humanized sizes), a table on a terminal, JSON;
with ``verbose`` the topology (subsystem -> paths -> namespaces) as
``nvme list-subsys`` draws it.
With nothing found it says so and exits EX_UNAVAILABLE, as FreeBSD does
(JSON: an empty list, status 0).  Kept apart from ``devlist`` so that the
start-up fast path (``fastpath``) can run it without loading typer.
"""

from __future__ import annotations

from nvmecontrol.cli.output import Format, emit, emit_json
from nvmecontrol.exitcodes import EX_UNAVAILABLE


def show(human: bool, fmt: Format, verbose: bool = False) -> int:
    from nvmecontrol.api.fabrics import controllers as every_controller
    from nvmecontrol.cli.render.devices import (DEVLIST_COLUMNS, DEVLIST_LONG_COLUMNS,
                                                devlist_json, devlist_rows, render_devlist_text,
                                                render_topology_text, topology_json)
    from nvmecontrol.cli.table import is_terminal, print_table

    controllers = every_controller()
    if fmt is Format.json:
        emit_json((topology_json if verbose else devlist_json)(controllers))
        return 0
    if not controllers:
        emit("No NVMe controllers found.")
        return EX_UNAVAILABLE
    if verbose:
        emit(render_topology_text(controllers, human=human))
    elif is_terminal():
        print_table(DEVLIST_COLUMNS, devlist_rows(controllers, human=human),
                    long=DEVLIST_LONG_COLUMNS)
    else:
        emit(render_devlist_text(controllers, human=human))
    return 0
