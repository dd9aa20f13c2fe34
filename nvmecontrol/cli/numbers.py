"""Numbers on the command line as FreeBSD reads them: ``strtoul(text, NULL, 0)``.

``0x`` or ``0X`` starts hexadecimal, a leading ``0`` octal, anything else
decimal (``-n 0x1``, ``-n 0xffffffff``, ``-Q 0200``).  Unlike strtoul, a
trailing letter, a sign or an empty string is an error, not a silent 0 or a
wrap-around, and every value is checked against its option's range.
"""

from __future__ import annotations

# typer is imported by the two helpers that make typer options, not here:
# parse_number also serves the start-up fast path (cli/argv_parser.py).

_DIGITS = {8: set("01234567"), 10: set("0123456789"), 16: set("0123456789abcdefABCDEF")}


def parse_number(text: str) -> int:
    """The value of ``text`` read with base 0; ValueError when it is not a number."""
    t = text.strip()
    if t[:2].lower() == "0x":
        digits, base = t[2:], 16
    elif len(t) > 1 and t[0] == "0":
        digits, base = t[1:], 8
    else:
        digits, base = t, 10
    # int() would also take a sign, spaces and underscores: strtoul's digits only.
    if not digits or not set(digits) <= _DIGITS[base]:
        raise ValueError(f"{text!r} is not a number (decimal, 0x hexadecimal or 0 octal)")
    return int(digits, base)


def number_parser(lo: int, hi: int, *, also: tuple = ()):
    """A typer ``parser`` for an integer option in ``lo..hi``, or one of ``also``
    (defaults pass through)."""
    import typer

    def parse(value):
        if isinstance(value, int):  # the default, or a value typer parsed already
            return value
        try:
            n = parse_number(value)
        except ValueError as e:
            raise typer.BadParameter(str(e)) from None
        if not (lo <= n <= hi or n in also):
            extra = "".join(f"{a} or " for a in also)
            raise typer.BadParameter(f"{value} is not {extra}in the range {lo}..{hi}")
        return n
    return parse


def NumberOption(*decls: str, lo: int, hi: int, also: tuple = (), **kw):
    """``typer.Option`` for an integer in ``lo..hi`` (or one of ``also``) read as
    strtoul(..., 0) does."""
    import typer

    kw.setdefault("metavar", "N")
    low = min((lo, *also))
    return typer.Option(*decls, parser=number_parser(lo, hi, also=also), min=low, max=hi, **kw)
