"""The subcommands of ``nvmecontrol``: name, module and one-line help.

Kept apart from the modules that implement them so that the command tree,
the top-level help and the start-up fast paths know every subcommand without
importing any of them: a subcommand's module (and the backends, host and
wire layers behind it) is imported only when that subcommand runs or shows
its own help.  Each module defines ``command`` (the typer callback); for the
commands the start-up fast path runs without typer (``fast_commands``) that
module is their typer signature in ``cli/signatures/``, and the body it
calls is ``cli/<command>.py``.
"""

from __future__ import annotations


class Subcommand:
    """One subcommand (a plain class: ``typing`` would cost start-up time here)."""

    __slots__ = ("name", "module", "help", "no_args_is_help", "actions")

    def __init__(self, name: str, module: str, help: str, no_args_is_help: bool = False,
                 actions: tuple[str, ...] = ()):
        self.name = name
        self.module = module  # imported on first use
        self.help = help
        self.no_args_is_help = no_args_is_help
        # The words of a first argument that names an action (FreeBSD's
        # ``resv acquire``): ``SUB ACTION --help`` shows the subcommand's help.
        self.actions = actions

    def __repr__(self) -> str:
        return f"Subcommand({self.name!r}, {self.module!r})"


SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand("devlist", "nvmecontrol.cli.devlist",
               "List NVMe controllers (kernel and userspace sessions) and their namespaces."),
    Subcommand("discover", "nvmecontrol.cli.signatures.discover",
               "Show the discovery log page of a discovery controller (default port 8009)."),
    Subcommand("connect", "nvmecontrol.cli.connect",
               "Connect to an NVMe subsystem and hand the association to the kernel or an NBD "
               "session."),
    Subcommand("connect-all", "nvmecontrol.cli.connect_all",
               "Connect to every NVMe subsystem a discovery controller lists (default port 8009)."),
    Subcommand("disconnect", "nvmecontrol.cli.disconnect",
               "Disconnect a controller (device, namespace or subsystem NQN)."),
    Subcommand("disconnect-all", "nvmecontrol.cli.disconnect_all",
               "Disconnect every NVMe over Fabrics controller and session."),
    Subcommand("reconnect", "nvmecontrol.cli.reconnect",
               "Reconnect a controller, with its saved parameters or to a new address."),
    Subcommand("identify", "nvmecontrol.cli.signatures.identify",
               "Show Identify Controller or Namespace data of a device or a remote controller."),
    Subcommand("logpage", "nvmecontrol.cli.signatures.logpage",
               "Print a log page of a device or a remote controller (-p page; -v help lists "
               "pages)."),
    Subcommand("resv", "nvmecontrol.cli.resv",
               "Reservation commands on a namespace: acquire, register, release, report.",
               no_args_is_help=True, actions=("acquire", "register", "release", "report")),
    Subcommand("hostnqn", "nvmecontrol.cli.signatures.hostnqn",
               "Show the host NQN and host ID (and their sources), or generate a new host NQN."),
    Subcommand("gen-dhchap-key", "nvmecontrol.cli.signatures.gen_dhchap_key",
               "Generate a DH-HMAC-CHAP secret (DHHC-1 form) for in-band authentication."),
    Subcommand("check-dhchap-key", "nvmecontrol.cli.signatures.check_dhchap_key",
               "Check a DH-HMAC-CHAP secret (DHHC-1 form): transform, length and CRC.",
               no_args_is_help=True),
)

BY_NAME = {s.name: s for s in SUBCOMMANDS}
