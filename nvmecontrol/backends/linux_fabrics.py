"""Handing an association to the Linux kernel through ``/dev/nvme-fabrics``.

The protocol (drivers/nvme/host/fabrics.c, ``nvmf_dev_write``/``nvmf_dev_show``):

- open and read without writing: since Linux 5.17 the answer lists every
  option token, ``instance=-1,cntlid=-1,transport=%s,traddr=%s,...``; older
  kernels fail the read with EINVAL.  The leading ``instance``/``cntlid``
  are dummies, not options.
- open read-write, one ``write()`` of a comma-separated options string; the
  kernel parses it, dials the target itself (it cannot adopt our sockets)
  and returns only once the controller is live or has failed;
- a ``read()`` on the same descriptor answers ``instance=N,cntlid=M``: the
  new controller is ``nvmeN``.

Unknown tokens make the whole write fail with EINVAL, so options the kernel
does not list are left out (with a warning), as libnvme does.
"""

from __future__ import annotations

import errno
import os
import re
from typing import NamedTuple

from nvmecontrol.backends.model import ConnectParams
from nvmecontrol.errors import (ConnectError, DeviceError, HostRefused, Unsupported,
                                UsageError)
from nvmecontrol.nqn import is_discovery_nqn
from nvmecontrol.wire.fabrics import CNTLID_DYNAMIC

FABRICS_DEV = "/dev/nvme-fabrics"

# What kernels before the token list knew (libnvme's default_supported_options,
# taken from opt_tokens when the list was added, kernel f18ee3d988157).
BASE_OPTIONS = frozenset({
    "transport", "traddr", "trsvcid", "nqn", "queue_size", "nr_io_queues",
    "reconnect_delay", "ctrl_loss_tmo", "keep_alive_tmo", "hostnqn", "host_traddr",
    "host_iface", "hostid", "duplicate_connect", "disable_sqflow", "hdr_digest",
    "data_digest", "nr_write_queues", "nr_poll_queues", "tos", "fast_io_fail_tmo",
    "discovery",
})
# Printed ahead of the tokens to mean "no controller yet"; never options.
_DUMMY_TOKENS = frozenset({"instance", "cntlid"})
# Without these the kernel cannot dial at all, so they are never left out.
_REQUIRED = ("transport", "traddr", "trsvcid", "nqn")
# Options whose values are secrets: never in an error message.
_SECRET_OPTIONS = ("dhchap_secret", "dhchap_ctrl_secret")

# drivers/nvme/host/fabrics.h NVMF_MIN_QUEUE_SIZE / NVMF_MAX_QUEUE_SIZE:
# anything outside fails the whole write with EINVAL.
KERNEL_MIN_QUEUE_SIZE = 16
KERNEL_MAX_QUEUE_SIZE = 1024
# The answer is one short line; a page is what the kernel's seq_file gives.
_READ_MAX = 4096
# libnvme retries nvmf_add_ctrl on EAGAIN; a few tries, not forever.
ADD_ATTEMPTS = 3

_ANSWER_RE = re.compile(r"^instance=(-?\d+),cntlid=(-?\d+)\s*$")


class AlreadyConnected(UsageError):
    """The kernel already has this association (EALREADY without duplicate_connect)."""


class BuiltOptions(NamedTuple):
    text: str
    warnings: list[str]


class FabricsDevice:
    """The ``/dev/nvme-fabrics`` node; every request opens it afresh.

    ``opener(path, flags) -> fd`` is ``os.open`` unless a test gives another
    (a socket pair can play the kernel's side of write-then-read).
    """

    def __init__(self, path: str = FABRICS_DEV, opener=os.open):
        self.path = path
        self._open = opener

    def _open_fd(self, flags: int) -> int:
        try:
            return self._open(self.path, flags | os.O_CLOEXEC)
        except OSError as e:
            raise _open_error(self.path, e) from None

    def read_tokens(self) -> str:
        fd = self._open_fd(os.O_RDONLY)
        try:
            return os.read(fd, _READ_MAX).decode("ascii", "replace")
        finally:
            os.close(fd)

    def create(self, options: str) -> str:
        """Write the options in one call, then read the kernel's answer.

        Errors of the write are the kernel's verdict on the connect and come
        out as OSError; a missing or forbidden node as our own errors.
        """
        fd = self._open_fd(os.O_RDWR)
        try:
            data = options.encode("ascii")
            # The kernel parses exactly what one write() brings.
            if os.write(fd, data) != len(data):
                raise DeviceError(f"{self.path}: short write of the options")
            return os.read(fd, _READ_MAX).decode("ascii", "replace")
        finally:
            os.close(fd)


def supported_options(dev: FabricsDevice) -> frozenset[str]:
    """The option names the kernel lists; empty when it is too old to list them."""
    try:
        text = dev.read_tokens()
    except OSError as e:
        # Kernels before 5.17 refuse a read without a controller.
        if e.errno in (errno.EINVAL, errno.ENODEV):
            return frozenset()
        raise DeviceError(f"{dev.path}: {os.strerror(e.errno)}") from None
    names = set()
    for token in re.split(r"[,\n]", text):
        name = token.split("=", 1)[0].strip()
        if name and name not in _DUMMY_TOKENS:
            names.add(name)
    return frozenset(names)


def build_options(params: ConnectParams, *, supported: frozenset[str] | set[str]) -> BuiltOptions:
    """The options string for ``params``; ``supported`` empty means a kernel too old to say.

    Integers go out only when set (> 0), except ctrl_loss_tmo (0 or -1 go
    out as the kernel's -1, "forever"); nqn precedes nr_io_queues because
    the kernel ignores the queue count only once it knows the NQN is the
    discovery one.
    """
    known = frozenset(supported) or BASE_OPTIONS
    if params.queue_size and not KERNEL_MIN_QUEUE_SIZE <= params.queue_size <= KERNEL_MAX_QUEUE_SIZE:
        raise UsageError(f"queue size {params.queue_size}: the Linux kernel accepts "
                         f"{KERNEL_MIN_QUEUE_SIZE} to {KERNEL_MAX_QUEUE_SIZE}")
    wanted: list[tuple[str, object]] = [
        ("transport", params.transport.lower()),
        ("traddr", params.traddr),
        ("trsvcid", str(params.trsvcid)),
        ("nqn", params.subnqn),
        ("hostnqn", params.hostnqn),
        ("hostid", params.hostid),
    ]
    if params.num_io_queues > 0:
        wanted.append(("nr_io_queues", params.num_io_queues))
    if params.queue_size > 0:
        wanted.append(("queue_size", params.queue_size))
    if params.kato_s > 0:
        wanted.append(("keep_alive_tmo", params.kato_s))
    if params.reconnect_delay_s > 0:
        wanted.append(("reconnect_delay", params.reconnect_delay_s))
    # Ours (and FreeBSD's) 0 is "keep it forever"; the kernel's is -1, while its
    # 0 means "never reconnect": max_reconnects = DIV_ROUND_UP(0, delay) = 0, so
    # nvmf_should_reconnect() deletes the controller at the first loss (seen on
    # 6.12: "Removing controller (0)..." right after the target went away).
    ctrl_loss_tmo = params.ctrl_loss_tmo_s if params.ctrl_loss_tmo_s > 0 else -1
    wanted.append(("ctrl_loss_tmo", ctrl_loss_tmo))
    if params.hdgst:
        wanted.append(("hdr_digest", None))
    if params.ddgst:
        wanted.append(("data_digest", None))
    if not params.sq_flow_control:
        wanted.append(("disable_sqflow", None))
    # DH-HMAC-CHAP secrets in the DHHC-1 form the kernel parses itself.
    for name in _SECRET_OPTIONS:
        if getattr(params, name, None):
            wanted.append((name, getattr(params, name)))

    parts, warnings = [], []
    for name, value in wanted:
        if value == "":  # no host NQN/ID: the kernel uses its default host
            continue
        if name in _SECRET_OPTIONS and name not in known:
            # Dropping a secret would connect without the authentication asked for.
            raise Unsupported(f"the kernel does not know the option {name} (DH-HMAC-CHAP needs "
                              f"Linux 6.0 or later with CONFIG_NVME_HOST_AUTH)")
        if name not in _REQUIRED and name not in known:
            warnings.append(f"the kernel does not know the option {name}; left out")
            continue
        parts.append(name if value is None else f"{name}={value}")
    if params.kato_s <= 0 and not is_discovery_nqn(params.subnqn):
        # KATO 0 (no keep-alive) works in our pre-flight and sessions, but
        # the kernel keeps I/O controllers alive regardless: 6.12 takes
        # keep_alive_tmo=0 (logging "won't execute keep alives!!!") and
        # still runs with its default (sysfs kato=5), as with nvme-cli -k 0.
        warnings.append("the kernel does not run I/O controllers without keep-alive; "
                        "it uses its default keep-alive timeout")
    if params.cntlid != CNTLID_DYNAMIC:
        # opt_tokens has no cntlid: the kernel always asks for FFFFh.
        warnings.append(f"the kernel always asks for a dynamic controller; "
                        f"CNTLID {params.cntlid:#06x} is not passed on")
    return BuiltOptions(",".join(parts), warnings)


def _option_values(options: str) -> dict[str, str]:
    return dict(p.split("=", 1) for p in options.split(",") if "=" in p)


def redact_secrets(options: str) -> str:
    """The options string with the DH-HMAC-CHAP secrets' values hidden."""
    return ",".join(f"{p.split('=', 1)[0]}=<secret>" if p.split("=", 1)[0] in _SECRET_OPTIONS
                    else p for p in options.split(","))


def _target_text(options: str) -> str:
    v = _option_values(options)
    host = v.get("traddr", "?")
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{v.get('trsvcid', '?')} {v.get('nqn', '?')}"


def _open_error(path: str, e: OSError) -> Exception:
    if e.errno in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
        return Unsupported("the kernel has no NVMe over Fabrics host (load nvme-tcp): "
                           f"{path}: {os.strerror(e.errno)}")
    if e.errno in (errno.EACCES, errno.EPERM):
        return DeviceError(f"{path}: permission denied (connecting through the kernel needs root)")
    return DeviceError(f"{path}: {os.strerror(e.errno)}")


def add_error(options: str, e: OSError, path: str = FABRICS_DEV) -> Exception:
    """One line naming the target and what the kernel's errno means for a connect."""
    what = _target_text(options)
    n = e.errno
    if n in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT,
             errno.ECONNRESET, errno.EADDRNOTAVAIL):
        return ConnectError(f"{what}: the kernel could not connect: {os.strerror(n)}")
    if n == errno.EALREADY:
        return AlreadyConnected(f"{what}: already connected (the kernel holds this association)")
    if n == errno.EINVAL:
        return UsageError(f"{what}: the kernel rejected the options (invalid argument; the kernel "
                          f"log names the one it refused, or the nvme-tcp module is missing): "
                          f"{redact_secrets(options)}")
    if n == errno.EADDRINUSE:
        return UsageError(f"{what}: the host NQN is already in use with other parameters")
    if n == errno.EKEYREJECTED:
        return HostRefused(f"{what}: DH-HMAC-CHAP failed in the kernel: the controller "
                           f"rejected this host's authentication or the kernel rejected the "
                           f"controller's (the kernel log says which)")
    if n == errno.ENOKEY:
        return Unsupported(f"{what}: the pre-shared TLS key is missing")
    if n == errno.EOPNOTSUPP:
        return Unsupported(f"{what}: the kernel does not support what the controller requires "
                           f"({os.strerror(n)})")
    if n in (errno.EACCES, errno.EPERM):
        return DeviceError(f"{path}: permission denied (connecting through the kernel needs root)")
    if n == errno.EIO:
        return DeviceError(f"{what}: the kernel's Connect failed (I/O error; the kernel log has "
                           f"the NVMe status)")
    return DeviceError(f"{what}: the kernel could not add the controller: {os.strerror(n)}")


def parse_answer(text: str, path: str = FABRICS_DEV) -> tuple[int, int]:
    m = _ANSWER_RE.match(text)
    if not m or int(m.group(1)) < 0:
        raise DeviceError(f"{path}: unexpected answer {text.strip()!r} (want instance=N,cntlid=M)")
    return int(m.group(1)), int(m.group(2))


def add_controller(options: str, dev: FabricsDevice | None = None) -> tuple[int, int]:
    """Have the kernel create the controller; returns (instance, cntlid)."""
    dev = dev or FabricsDevice()
    attempt = 1
    while True:
        try:
            answer = dev.create(options)
        except OSError as e:
            if e.errno == errno.EAGAIN and attempt < ADD_ATTEMPTS:
                attempt += 1
                continue
            raise add_error(options, e, dev.path) from None
        return parse_answer(answer, dev.path)
