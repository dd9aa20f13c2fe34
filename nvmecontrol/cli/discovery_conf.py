"""nvme-cli's ``/etc/nvme/discovery.conf``: the discovery controllers to ask by default.

One discovery controller per line, written as nvme-cli ``discover``
options (``-t tcp -a 192.168.1.10 -s 8009 -q nqn...``); ``#`` starts a
comment; tokens are split on blanks and ``=`` (``--traddr=10.0.0.1``), as
nvme-cli 2.x reads the file.  ``discover`` and ``connect-all`` given no
address use every line.  Options nvmecontrol has no use for here (host
interface, TOS, persistence...) are reported and ignored; a line without
an address, or with another transport, is skipped with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from nvmecontrol.errors import UsageError

DISCOVERY_CONF = Path("/etc/nvme/discovery.conf")

# nvme-cli option -> our field; both spellings.
_VALUED = {
    "-t": "transport", "--transport": "transport",
    "-a": "traddr", "--traddr": "traddr",
    "-s": "trsvcid", "--trsvcid": "trsvcid",
    "-q": "hostnqn", "--hostnqn": "hostnqn",
    "-I": "hostid", "--hostid": "hostid",
    "-S": "dhchap_secret", "--dhchap-secret": "dhchap_secret",
}
# nvme-cli options that take a value and mean nothing to discovery here.
_IGNORED_VALUED = {"-w", "--host-traddr", "-f", "--host-iface", "-k", "--keep-alive-tmo",
                   "-T", "--tos", "-n", "--nqn", "-c", "--reconnect-delay", "-l",
                   "--ctrl-loss-tmo", "-i", "--nr-io-queues", "-Q", "--queue-size",
                   "-W", "--nr-write-queues", "-P", "--nr-poll-queues", "--keyring",
                   "--tls-key", "--tls-key-identity", "-C", "--dhchap-ctrl-secret"}


@dataclass(slots=True)
class ConfEntry:
    """One discovery controller of the file."""

    line: int
    traddr: str
    trsvcid: str | None = None
    transport: str = "tcp"
    hostnqn: str | None = None
    hostid: str | None = None
    dhchap_secret: str | None = None

    @property
    def address(self) -> str:
        host = f"[{self.traddr}]" if ":" in self.traddr and not self.traddr.startswith("[") \
            else self.traddr
        return f"{host}:{self.trsvcid}" if self.trsvcid else host


def parse(text: str, source: str = str(DISCOVERY_CONF)) -> tuple[list[ConfEntry], list[str]]:
    """The entries of a discovery.conf text, and warnings (``source:line: ...``)."""
    entries, warnings = [], []
    for number, raw in enumerate(text.splitlines(), 1):
        tokens = re.split(r"[\s=]+", raw.split("#", 1)[0].strip())
        tokens = [t for t in tokens if t]
        if not tokens:
            continue
        fields: dict[str, str] = {}
        ignored = []
        i = 0
        while i < len(tokens):
            opt = tokens[i]
            has_value = i + 1 < len(tokens) and not tokens[i + 1].startswith("-")
            if opt in _VALUED:
                if not has_value:
                    warnings.append(f"{source}:{number}: {opt} without a value; line skipped")
                    fields = {}
                    break
                fields[_VALUED[opt]] = tokens[i + 1]
                i += 2
                continue
            ignored.append(opt)
            i += 2 if (opt in _IGNORED_VALUED or not opt.startswith("-")) and has_value else 1
        else:
            if ignored:
                warnings.append(f"{source}:{number}: ignored: {' '.join(ignored)}")
        if not fields:
            continue
        if "traddr" not in fields:
            warnings.append(f"{source}:{number}: no address (-a/--traddr); line skipped")
            continue
        transport = fields.pop("transport", "tcp")
        if transport.lower() != "tcp":
            warnings.append(f"{source}:{number}: transport {transport} is not supported "
                            "(only tcp); line skipped")
            continue
        entries.append(ConfEntry(number, transport=transport.lower(), **fields))
    return entries, warnings


def load(path: Path | None = None) -> tuple[list[ConfEntry], list[str]]:
    """The file's entries and warnings; none when it does not exist."""
    p = DISCOVERY_CONF if path is None else path
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], []
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {p}: {getattr(e, 'strerror', None) or e}") from None
    return parse(text, str(p))


def missing_address(command: str, path: Path | None = None) -> UsageError:
    """The error when neither an address nor the file gives a discovery controller."""
    p = DISCOVERY_CONF if path is None else path
    return UsageError(f"Missing argument 'address' (and {p} lists no discovery controller). "
                      f"usage: nvmecontrol {command} [OPTIONS] [ADDRESS]")
