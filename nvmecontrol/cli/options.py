"""Options shared by several commands, defined once (as FreeBSD's comnd.c does).

Spellings follow FreeBSD nvmecontrol; nvme-cli long names are aliases where
they do not clash.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from nvmecontrol.cli.output import Format
from nvmecontrol.errors import UsageError

Transport = Annotated[str, typer.Option("-t", "--transport", help="Transport type (only tcp).",
                                         metavar="tcp")]
HostNqn = Annotated[Optional[str], typer.Option(
    "-q", "--hostnqn", help="Host NQN (default: /etc/nvme/hostnqn, else from the host UUID).")]
HostId = Annotated[Optional[str], typer.Option(
    "--hostid", "-I", help="Host ID UUID (default: /etc/nvme/hostid, else the host UUID).")]
HdrDigest = Annotated[bool, typer.Option("-g", "--hdr-digests", "--hdr_digests", "--hdr-digest",
                                         help="Enable TCP header digests.")]
DataDigest = Annotated[bool, typer.Option("-G", "--data-digests", "--data_digests", "--data-digest",
                                          help="Enable TCP data digests.")]
OutputFormat = Annotated[Format, typer.Option("-o", "--format", "--output-format",
                                              help="Output format.")]
# DH-HMAC-CHAP secrets (nvme-cli's long names; its -S/-C are not taken: no
# FreeBSD spelling exists to follow).
DhchapSecret = Annotated[Optional[str], typer.Option(
    "--dhchap-secret", metavar="DHHC-1:NN:KEY:",
    help="Host secret for DH-HMAC-CHAP authentication (see gen-dhchap-key).")]
DhchapCtrlSecret = Annotated[Optional[str], typer.Option(
    "--dhchap-ctrl-secret", metavar="DHHC-1:NN:KEY:",
    help="Controller secret: authenticate the controller too (bidirectional).")]
# A day at most: sockets take no infinite timeout (inf and 1e309 overflowed).
TimeoutS = Annotated[float, typer.Option("--timeout", help="Seconds to wait for the peer.",
                                         min=0.1, max=86400)]


def check_transport(transport: str) -> None:
    from nvmecontrol.errors import Unsupported

    if transport.lower() != "tcp":
        raise Unsupported(f"unsupported or invalid transport {transport!r} (only tcp)")


def check_dhchap(secret: str | None, ctrl_secret: str | None) -> None:
    """Both secrets well formed (form, length, CRC), as one line naming the option."""
    from nvmecontrol.wire.dhchap_key import BadSecret, parse_secret

    if ctrl_secret and not secret:
        raise UsageError("--dhchap-ctrl-secret needs --dhchap-secret (the host authenticates "
                          "first)")
    for option, text in (("--dhchap-secret", secret), ("--dhchap-ctrl-secret", ctrl_secret)):
        if text:
            try:
                parse_secret(text)
            except BadSecret as exc:
                raise UsageError(f"{option}: {exc}") from None


def dhchap_keys(secret: str | None, ctrl_secret: str | None):
    """(host key, controller key) parsed for AssociationParams, after ``check_dhchap``."""
    from nvmecontrol.wire.dhchap_key import parse_secret

    check_dhchap(secret, ctrl_secret)
    return (parse_secret(secret) if secret else None,
            parse_secret(ctrl_secret) if ctrl_secret else None)

