"""The connection options, once: spellings, default, bounds and help.

FreeBSD's ``sbin/nvmecontrol`` keeps the options that ``connect``,
``connect-all`` and ``reconnect`` share in one table (``connect.c``), and
``discover``, ``identify`` and ``logpage`` take the host and digest ones
from it too.  This is that table.  Everything that needs a default reads it
here: the CLI builds its typer options from it (``cli/options.py``,
``cli/connect_options.py``); the records an association is described by
take their field defaults from it (``api.tuning.Tuning``, what the
user chose; ``backends.model.ConnectParams``, what a backend keeps to dial
again; ``host.association.AssociationParams``, what the host logic uses).

Defaults are FreeBSD's: one I/O queue, KATO 120 s, reconnect every 10 s,
give up after 600 s, queue size CAP.MQES+1 (0), dynamic controller ID.

Standard library only, and cheap: ``--help`` and ``devlist`` read it.
"""

from __future__ import annotations

from collections import namedtuple
from types import MappingProxyType

# One option of the table (immutable).  A namedtuple, not a dataclass: every
# command reads this table, and ``import dataclasses`` (inspect, ast, dis)
# would cost them about a bare interpreter start.
Option = namedtuple("Option", (
    "name",  # the command's parameter (and config.json key)
    "flags",  # tuple of spellings: FreeBSD's first, then nvme-cli aliases
    "default",  # any value a parameter takes
    "help",
    # The field of the option records (Tuning, ConnectParams) it sets; None
    # for options that say where or how, not how the association is tuned.
    "field",
    "lo", "hi",  # bounds, inclusive (None: unbounded)
    "also",  # values accepted outside lo..hi
    "metavar",
), defaults=(None, None, None, (), None))
Option.__doc__ = "One option of the table."


_TABLE = (
    Option("transport", ("-t", "--transport"), "tcp", "Transport type (only tcp).",
           metavar="tcp"),
    Option("hostnqn", ("-q", "--hostnqn"), None,
           "Host NQN (default: /etc/nvme/hostnqn, else from the host UUID)."),
    Option("hostid", ("--hostid", "-I"), None,
           "Host ID UUID (default: /etc/nvme/hostid, else the host UUID)."),
    Option("hdr_digests", ("-g", "--hdr-digests", "--hdr_digests", "--hdr-digest"), False,
           "Enable TCP header digests.", field="hdgst"),
    Option("data_digests", ("-G", "--data-digests", "--data_digests", "--data-digest"), False,
           "Enable TCP data digests.", field="ddgst"),
    # A day at most: sockets take no infinite timeout (inf and 1e309 overflowed).
    Option("timeout", ("--timeout",), 30.0, "Seconds to wait for the peer.", field="timeout_s",
           lo=0.1, hi=86400),
    # DH-HMAC-CHAP secrets (nvme-cli's long names; its -S/-C are not taken: no
    # FreeBSD spelling exists to follow).
    Option("dhchap_secret", ("--dhchap-secret",), None,
           "Host secret for DH-HMAC-CHAP authentication (see gen-dhchap-key).",
           field="dhchap_secret", metavar="DHHC-1:NN:KEY:"),
    Option("dhchap_ctrl_secret", ("--dhchap-ctrl-secret",), None,
           "Controller secret: authenticate the controller too (bidirectional).",
           field="dhchap_ctrl_secret", metavar="DHHC-1:NN:KEY:"),
    Option("flow_control", ("-F", "--flow-control", "--flow_control"), False,
           "Ask the controller to keep SQ flow control.", field="sq_flow_control"),
    # nvme-cli's --disable-sqflow asks for what is already the default here
    # (FreeBSD asks to keep SQ flow control only with -F): accepted, and at
    # odds with -F.
    Option("disable_sqflow", ("--disable-sqflow",), False,
           "Let the controller disable SQ flow control (the default; nvme-cli's spelling)."),
    Option("cntlid", ("-c", "--cntlid"), "dynamic", "Controller ID to ask for.",
           metavar="dynamic|static|ID"),
    Option("nr_io_queues", ("-i", "--nr-io-queues"), 1, "Number of I/O queues.",
           field="num_io_queues", lo=1, hi=65535),
    # KATO goes on the wire in milliseconds in 32 bits; the Linux kernel keeps
    # the other two in an int.
    Option("keep_alive_tmo", ("-k", "--keep-alive-tmo"), 120,
           "Keep-alive timeout (KATO), seconds.", field="kato_s", lo=0, hi=0xFFFFFFFF // 1000,
           metavar="SECONDS"),
    Option("ctrl_loss_tmo", ("-l", "--ctrl-loss-tmo"), 600,
           "Seconds disconnected before the controller is deleted (0: never deleted).",
           field="ctrl_loss_tmo_s", lo=0, hi=2**31 - 1, metavar="SECONDS"),
    Option("reconnect_delay", ("-r", "--reconnect-delay"), 10,
           "Seconds between reconnect attempts (0: no automatic attempts, only nvmecontrol "
           "reconnect).", field="reconnect_delay_s", lo=0, hi=2**31 - 1, metavar="SECONDS"),
    # A queue holds at least 2 entries (one command); 0 asks for the largest
    # the controller allows (CAP.MQES + 1, at most 128).
    Option("queue_size", ("-Q", "--queue-size"), 0,
           "I/O queue entries, 2..65536 (0: the controller's maximum, at most 128).",
           field="queue_size", lo=2, hi=65536, also=(0,), metavar="ENTRIES"),
    Option("backend", ("--backend",), "auto",
           "Where the association goes (auto: the kernel when it can, else a userspace NBD "
           "session).", metavar="auto|kernel|nbd|freebsd"),
    Option("nbd_listen", ("--nbd-listen",), None,
           "Also serve a session's NBD exports on this TCP address (port 0: any free one).",
           metavar="HOST:PORT"),
    Option("no_attach", ("--no-attach",), False, "Do not attach a session's exports to /dev/nbdX."),
    # nvme-cli's config.json (-J/--config, -O/--dump-config): see cli/fabrics_config.py.
    Option("config", ("-J", "--config"), None,
           "nvme-cli JSON config of hosts, subsystems and ports (default: /etc/nvme/config.json "
           "when it exists; none: no file).", metavar="FILE|none"),
    Option("dump_config", ("-O", "--dump-config"), False,
           "Print the connections made as nvme-cli JSON config."),
)

OPTIONS: MappingProxyType[str, Option] = MappingProxyType({o.name: o for o in _TABLE})
_BY_FIELD = MappingProxyType({o.field: o for o in _TABLE if o.field is not None})

# Fields of the option records the command line does not set directly.
CNTLID_DYNAMIC = 0xFFFF  # as wire.fabrics.CNTLID_DYNAMIC (tests/test_options.py keeps them equal)
# Discovery associations run without keep-alive, as FreeBSD's discover does.
DISCOVERY_KATO_S = 0


def default(field: str) -> object:
    """The default of the option record field ``field`` (``kato_s``, ``queue_size``...)."""
    return _BY_FIELD[field].default


def record_fields() -> dict[str, str]:
    """Option name -> the record field it sets (``keep_alive_tmo`` -> ``kato_s``)."""
    return {o.name: o.field for o in _TABLE if o.field is not None}
