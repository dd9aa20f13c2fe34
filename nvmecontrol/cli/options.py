"""Options shared by several commands, defined once (as FreeBSD's comnd.c does).

Spellings, defaults, bounds and help come from the option table
(``nvmecontrol/options.py``): here they become typer options, and command
signatures take their defaults from :data:`DEFAULTS`.  Spellings follow
FreeBSD nvmecontrol; nvme-cli long names are aliases where they do not clash.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Annotated, Optional

import typer

from nvmecontrol.cli.numbers import NumberOption
from nvmecontrol.cli.output import Format
from nvmecontrol.errors import UsageError
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


# The parameter defaults of the commands, read from the table.
DEFAULTS = SimpleNamespace(**{name: o.default for name, o in OPTIONS.items()})

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


def check_transport(transport: str) -> None:
    from nvmecontrol.errors import Unsupported

    if transport.lower() != "tcp":
        raise Unsupported(f"unsupported or invalid transport {transport!r} (only tcp)")


def check_dhchap(secret: str | None, ctrl_secret: str | None) -> None:
    """Both secrets well formed (form, length, CRC), as one line naming the option."""
    from nvmecontrol.api.keys import check_key

    if ctrl_secret and not secret:
        raise UsageError("--dhchap-ctrl-secret needs --dhchap-secret (the host authenticates "
                          "first)")
    for option, text in (("--dhchap-secret", secret), ("--dhchap-ctrl-secret", ctrl_secret)):
        if text:
            try:
                check_key(text)
            except UsageError as exc:
                raise UsageError(f"{option}: {exc}") from None

