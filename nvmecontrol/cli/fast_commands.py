"""The commands ``fastpath`` runs without typer: what each takes, and its body.

One declaration per command (for ``argv_parser``), the twin of its typer
signature: the same parameter names, spellings, defaults and bounds (those
of the shared options from the option table).  A test builds each command
with typer and holds the two to the same spellings and, over a corpus of
command lines, to the same parameters (tests/cli/test_argv_parser.py), so
a change made to one and not to the other fails there; another runs each
command both ways and compares status, stdout and stderr
(tests/cli/test_fastpath_commands.py).

The body is the function both paths call with those parameters (the typer
signature calls it too), named as ``module:function`` so that nothing of
it is imported before the command line is read; a body that reads which
options were given takes ``ctx`` first (``argv_parser.Parsed`` stands in
for typer's context here).
"""

from __future__ import annotations

from nvmecontrol.cli.argv_parser import (Command, argument, flag, number, output_format, table,
                                         text)

NSID_MAX = 0xFFFFFFFF


class Body:
    """Where a command's typer-free body is, and whether it takes ``ctx``."""

    __slots__ = ("module", "function", "takes_ctx")

    def __init__(self, where: str, *, takes_ctx: bool = False):
        self.module, _, self.function = where.partition(":")
        self.takes_ctx = takes_ctx


# What identify, logpage and discover take to reach a controller over the network.
_HOST = ("hostnqn", "hostid")
_DIGESTS = ("hdr_digests", "data_digests")
_SECRETS = ("dhchap_secret", "dhchap_ctrl_secret")

DECLARATIONS: dict[str, Command] = {
    "devlist": Command(
        flag("human", "-h", "--human"),
        flag("verbose", "-v", "--verbose"),
        output_format(),
    ),
    "identify": Command(
        argument("target", required=True),
        argument("subnqn"),
        number("nsid", "-n", "--nsid", lo=0, hi=NSID_MAX),
        flag("hex_", "-x", "--hex"),
        flag("verbose", "-v", "--verbose"),
        table(*_HOST, *_DIGESTS),
        output_format(),
        table("timeout", *_SECRETS),
    ),
    "logpage": Command(
        argument("target"),
        argument("subnqn"),
        text("page", "-p", "--page"),
        flag("hex_", "-x", "--hex"),
        flag("binary", "-b", "--binary"),
        text("vendor", "-v", "--vendor"),
        number("lsp", "-f", "--lsp", lo=0, hi=0x7F, default=0),
        number("lsi", "-i", "--lsi", lo=0, hi=0xFFFF, default=0),
        flag("rae", "-r", "--rae"),
        number("nsid", "-n", "--nsid", lo=0, hi=NSID_MAX),
        table(*_HOST, *_DIGESTS),
        output_format(),
        table("timeout", *_SECRETS),
    ),
    "discover": Command(
        argument("address"),
        flag("verbose", "-v", "--verbose"),
        table("transport", *_HOST),
        flag("walk", "--walk"),
        output_format(),
        table("timeout", *_SECRETS),
    ),
    "hostnqn": Command(
        flag("generate", "--generate"),
        flag("write", "--write"),
        flag("force", "--force"),
        flag("verbose", "-v", "--verbose"),
        table(*_HOST),
        output_format(),
    ),
    "gen-dhchap-key": Command(
        text("secret", "-s", "--secret"),
        number("key_length", "-l", "--key-length", lo=0, hi=0xFFFF, default=0),
        text("nqn", "-n", "--nqn"),
        number("hmac", "-m", "--hmac", lo=0, hi=0xFF, default=0),
        output_format(),
    ),
    "check-dhchap-key": Command(
        text("key", "-k", "--key", required=True),
        output_format(),
    ),
}

BODIES: dict[str, Body] = {
    "devlist": Body("nvmecontrol.cli.listing:show"),
    "identify": Body("nvmecontrol.cli.identify:execute", takes_ctx=True),
    "logpage": Body("nvmecontrol.cli.logpage:execute", takes_ctx=True),
    "discover": Body("nvmecontrol.cli.discover:execute", takes_ctx=True),
    "hostnqn": Body("nvmecontrol.cli.hostnqn:execute"),
    "gen-dhchap-key": Body("nvmecontrol.cli.gen_dhchap_key:execute"),
    "check-dhchap-key": Body("nvmecontrol.cli.check_dhchap_key:execute"),
}
