"""Options shared by several commands, defined once (as FreeBSD's comnd.c does).

Spellings, defaults, bounds and help come from the option table
(``nvmecontrol/options.py``): here they become typer options, and command
signatures take their defaults from :data:`DEFAULTS`.  Spellings follow
FreeBSD nvmecontrol; nvme-cli long names are aliases where they do not clash.
``DEFAULTS`` and the checks of option values live in ``cli/option_values.py``
(re-exported here), where the command bodies, which the start-up fast path
runs without typer, import them.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from nvmecontrol.cli.numbers import NumberOption
# The defaults and checks, typer-free for the command bodies (re-exported here).
from nvmecontrol.cli.option_values import DEFAULTS, check_dhchap, check_transport  # noqa: F401
from nvmecontrol.cli.output import Format
from nvmecontrol.options import OPTIONS


def table_option(name: str, **override):
    """The typer option of ``name`` in the option table (nvmecontrol/options.py).

    Integers with bounds read as FreeBSD reads them (``NumberOption``);
    ``override`` changes what one command says differently (its help).
    """
    o = OPTIONS[name]
    kw = {"help": o.help, **({"metavar": o.metavar} if o.metavar else {}), **override}
    if isinstance(o.default, int) and not isinstance(o.default, bool) and o.lo is not None:
        return NumberOption(*o.flags, lo=o.lo, hi=o.hi, also=o.also, **kw)
    if o.lo is not None:
        # A range lets NaN through (every comparison with it is false).
        kw.update(min=o.lo, max=o.hi, callback=_finite)
    return typer.Option(*o.flags, **kw)


def _finite(value):
    if isinstance(value, float) and value != value:
        raise typer.BadParameter(f"{value} is not a number")
    return value


Transport = Annotated[str, table_option("transport")]
HostNqn = Annotated[Optional[str], table_option("hostnqn")]
HostId = Annotated[Optional[str], table_option("hostid")]
HdrDigest = Annotated[bool, table_option("hdr_digests")]
DataDigest = Annotated[bool, table_option("data_digests")]
OutputFormat = Annotated[Format, typer.Option("-o", "--format", "--output-format",
                                              help="Output format.")]
DhchapSecret = Annotated[Optional[str], table_option("dhchap_secret")]
DhchapCtrlSecret = Annotated[Optional[str], table_option("dhchap_ctrl_secret")]
TimeoutS = Annotated[float, table_option("timeout")]
