"""Options shared by several commands, defined once (as FreeBSD's comnd.c does).

Spellings follow FreeBSD nvmecontrol; nvme-cli long names are aliases where
they do not clash.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from nvmecontrol.cli.output import Format

Transport = Annotated[str, typer.Option("-t", "--transport", help="Transport type (only tcp).",
                                         metavar="tcp")]
HostNqn = Annotated[Optional[str], typer.Option(
    "-q", "--hostnqn", help="Host NQN (default: /etc/nvme/hostnqn, else from the host UUID).")]
HostId = Annotated[Optional[str], typer.Option(
    "--hostid", "-I", help="Host ID UUID (default: /etc/nvme/hostid, else the host UUID).")]
HdrDigest = Annotated[bool, typer.Option("-g", "--hdr-digests", "--hdr_digests",
                                         help="Enable TCP header digests.")]
DataDigest = Annotated[bool, typer.Option("-G", "--data-digests", "--data_digests",
                                          help="Enable TCP data digests.")]
OutputFormat = Annotated[Format, typer.Option("-o", "--format", "--output-format",
                                              help="Output format.")]
# A day at most: sockets take no infinite timeout (inf and 1e309 overflowed).
TimeoutS = Annotated[float, typer.Option("--timeout", help="Seconds to wait for the peer.",
                                         min=0.1, max=86400)]


def check_transport(transport: str) -> None:
    from nvmecontrol.errors import Unsupported

    if transport.lower() != "tcp":
        raise Unsupported(f"unsupported or invalid transport {transport!r} (only tcp)")
