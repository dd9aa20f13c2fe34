"""How an association is tuned: :class:`Tuning`, one record for connect, connect-all and reconnect.

Its fields are the option table's record fields (``nvmecontrol/options.py``)
and so are their defaults: FreeBSD's (one I/O queue, KATO 120 s, reconnect
every 10 s, give up after 600 s, the controller's largest queue size).  The
record a backend keeps of one association (``backends.model.ConnectParams``)
is a Tuning with its address and identities, so the fields are written once
(``nvmecontrol/tuning.py``).  Cheap to import: the command line builds its
option records from it before anything else is loaded.
"""

from __future__ import annotations

from nvmecontrol.tuning import Tuning

__all__ = ["Tuning"]
