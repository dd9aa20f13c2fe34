"""Turning a command's target arguments into a controller to ask, through the API.

``identify``, ``logpage`` and ``resv`` accept, like FreeBSD, a device
(``nvme0``, ``nvme0n1``, ``nvme0ns1``, with or without ``/dev/``) held by the
kernel, a userspace session (``nvmeu0``, ``nvmeu0ns1``, asked over its
control socket), or, beyond FreeBSD, a network address with a subsystem NQN
for a one-shot association (the discovery NQN when only an address is
given): :mod:`nvmecontrol.api.admin` and :mod:`nvmecontrol.api.reservations`
reach them.  What the command line adds: the secrets checked with the
options' spellings, and a refused Connect explained with the option that
set the field (``cli/refusal.py``).
"""

from __future__ import annotations

from nvmecontrol.api.admin import ConnectOptions

TYPE_CHECKING = False  # typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from nvmecontrol.api.admin import AdminController
    from nvmecontrol.api.reservations import Reservations

__all__ = ["ConnectOptions", "open_controller", "open_namespace"]


def explain_refusal(subnqn: str, hostnqn: str, hostid: str) -> AbstractContextManager:
    """Around a one-shot Connect: a refusal re-raised naming the option behind the field."""
    from nvmecontrol.cli.refusal import Asked, explained

    return explained(Asked(subnqn, hostnqn, hostid))


def _check_secrets(target: str, opts: ConnectOptions) -> None:
    """The secrets, as the command line spells them, when an address will use them."""
    from nvmecontrol.api.admin import target_kind
    from nvmecontrol.cli.option_values import check_dhchap

    if target_kind(target) == "address":
        check_dhchap(opts.dhchap_secret, opts.dhchap_ctrl_secret)


def open_controller(target: str, subnqn: str | None, opts: ConnectOptions) -> AdminController:
    """The controller ``target`` (and ``subnqn``) name, for admin commands."""
    from nvmecontrol.api.admin import open_controller as open_admin_controller

    _check_secrets(target, opts)
    return open_admin_controller(target, subnqn, opts, explain_refusal=explain_refusal)


def open_namespace(target: str, subnqn: str | None, nsid: int | None,
                   opts: ConnectOptions) -> Reservations:
    """The namespace ``target`` (with ``subnqn`` and ``-n``) names, for reservations."""
    from nvmecontrol.api.reservations import open_reservations

    _check_secrets(target, opts)
    return open_reservations(target, subnqn, nsid, opts, explain_refusal=explain_refusal)
