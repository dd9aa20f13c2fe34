"""DH-HMAC-CHAP re-authentication with the Linux kernel, both ways.

* The kernel host connected to nvmfd: nvmfd learns a new key for it
  (``target.auth.rekey_host``) and the new key is written to
  ``/sys/class/nvme/nvmeX/dhchap_secret``, which makes the kernel run a new
  transaction on every queue; I/O goes on.  Then nvmfd withdraws the
  authentication alone while the guest reads and writes without pause: the
  I/O meets Authentication Required (without DNR, with a Command Retry Delay,
  since the kernel enabled ACRE on seeing CRDT1), the kernel re-authenticates
  every queue in the background and retries after the delay, and not one
  read or write fails.
* Our host against nvmet: the host key changes in configfs (nvmet reads it
  again at the next admin-queue Negotiate) and ``Association.reauthenticate``
  proves the new key on every queue of the live association.
"""

from __future__ import annotations

import shlex
import time
import uuid

import pytest

from nvmecontrol.errors import ConnectionLost
from nvmecontrol.host.association import AssociationParams, connect_association
from nvmecontrol.hostid import HostIdentity
from nvmecontrol.transport.address import Address
from nvmecontrol.wire import auth as A
from nvmecontrol.wire import nvm
from nvmecontrol.wire.dhchap_key import format_secret, generate_secret, parse_secret
from nvmecontrol.wire.status import decode_status

from .nvmet import Host, Namespace, NvmetConfig, Port, Subsystem

GUEST_HOST = "nqn.2014-08.org.nvmexpress:uuid:7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d"
HOSTID = "1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9"
OUR_HOST = f"nqn.2014-08.org.nvmexpress:uuid:{HOSTID}"
NQN = "nqn.2014-08.org.nvmexpress.test:reauth"


def _key(transform: int = 1) -> str:
    return format_secret(generate_secret(transform=transform))


def _machines(server, hostnqn: str) -> list:
    """The controller-side state machines of every queue of ``hostnqn``'s associations."""
    out = []
    for ctrl in list(server.controllers.values()):
        if ctrl.hostnqn == hostnqn and ctrl.admin_auth is not None:
            out.append(ctrl.admin_auth.machine)
            out += [c.auth_gate.auth.machine for c in list(ctrl.io_queues.values())
                    if c.auth_gate is not None]
    return out


def _wait(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _io(guest, dev: str, tag: str) -> None:
    res = guest.run(f"set -e; head -c 262144 /dev/urandom > /tmp/{tag}; "
                    f"dd if=/tmp/{tag} of={dev} bs=64k oflag=direct status=none; "
                    f"dd if={dev} of=/tmp/{tag}.b bs=64k count=4 iflag=direct status=none; "
                    f"cmp /tmp/{tag} /tmp/{tag}.b && echo SAME", chroot=False, timeout=120)
    assert res.ok and "SAME" in res.stdout, res.stderr


# Reads and writes 256 KiB at a time, each checked, until /tmp/io.stop
# appears; counts rounds and failures (dd or cmp) in /tmp/io.count and
# /tmp/io.done.  Runs in the guest's host-root chroot (coreutils dd, cmp).
IO_LOOP = """#!/bin/sh
dev=$1
n=0
bad=0
while [ ! -e /tmp/io.stop ]; do
  at=$(( (n % 16) * 4 ))
  head -c 262144 /dev/urandom > /tmp/io.pat
  if dd if=/tmp/io.pat of="$dev" bs=64k seek=$at oflag=direct conv=notrunc status=none &&
     dd if="$dev" of=/tmp/io.back bs=64k skip=$at count=4 iflag=direct status=none &&
     cmp -s /tmp/io.pat /tmp/io.back; then :; else
    bad=$((bad + 1)); echo "round $n failed"
  fi
  n=$((n + 1))
  echo $n > /tmp/io.count
done
echo "$n $bad" > /tmp/io.done
"""


def _rounds(guest) -> int:
    out = guest.run("cat /tmp/io.count 2>/dev/null").stdout.strip()
    return int(out) if out.isdigit() else 0


def test_kernel_host_reauthenticates_on_a_new_key_and_when_asked(linux_guest, nvmfd_factory):
    from nvmecontrol.target.auth import rekey_host
    from nvmecontrol.target.config import HostAuthConfig

    from tests.conftest import simple_config

    from .test_kernel_host_nvmfd import HOST_FROM_GUEST, _block_device, _nvme

    if linux_guest.kernel.config("NVME_HOST_AUTH") != "y":
        pytest.skip("guest kernel has no NVME_HOST_AUTH")
    old_key, ctrl_key, new_key = _key(1), _key(2), _key(3)
    cfg = simple_config(namespaces=["mem:8M"], addresses=("127.0.0.1",), allow_hosts=[GUEST_HOST])
    cfg.host_auth[GUEST_HOST] = HostAuthConfig(old_key, ctrl_key, "hmac(sha256)", "ffdhe2048")
    srv = nvmfd_factory(cfg)
    server = srv.server
    res = _nvme(linux_guest, f"connect -t tcp -a {HOST_FROM_GUEST} -s {srv.port} -n {srv.subnqn} "
                             f"-q {GUEST_HOST} --dhchap-secret={shlex.quote(old_key)} "
                             f"--dhchap-ctrl-secret={shlex.quote(ctrl_key)}")
    assert res.ok, res.stderr
    try:
        dev = _block_device(linux_guest, srv.subnqn)
        ctrl = dev.split("/")[-1].rsplit("n", 1)[0]  # /dev/nvme0n1 -> nvme0
        _io(linux_guest, dev, "a")
        machines = _machines(server, GUEST_HOST)
        assert len(machines) >= 2 and all(m.authenticated for m in machines)
        seen = [m.transactions for m in machines]

        # 1. A new key on both sides: the kernel re-authenticates every queue.
        new = HostAuthConfig(new_key, ctrl_key, "hmac(sha256)", "ffdhe2048")
        server.config.host_auth[GUEST_HOST] = new
        assert rekey_host(server, GUEST_HOST, new) == len(machines)
        linux_guest.run(f"printf %s {shlex.quote(new_key)} > /sys/class/nvme/{ctrl}/dhchap_secret",
                        chroot=False, check=True)
        _wait(lambda: all(m.authenticated and m.transactions > s
                          for m, s in zip(machines, seen)), "re-authentication with the new key")
        assert not any(m.failed for m in machines)
        _io(linux_guest, dev, "b")

        # 2. nvmfd withdraws authentication (same keys) under continuous I/O.
        # The kernel saw CRDT1 in Identify and enabled ACRE (feature 16h),
        # so the refusals carry a CRD: it retries after the delay while its
        # re-authentication (a work item) runs, instead of spending its five
        # retries at once and failing the command.
        (assoc,) = [c for c in server.controllers.values() if c.hostnqn == GUEST_HOST]
        assert assoc.acre, "the kernel did not enable ACRE"
        linux_guest.write_file("/tmp/io-loop.sh", IO_LOOP)
        dmesg_before = len(linux_guest.run("dmesg", chroot=False).stdout.splitlines())
        linux_guest.run(f"rm -f /tmp/io.stop /tmp/io.done /tmp/io.count; setsid sh "
                        f"/tmp/io-loop.sh {dev} </dev/null >/tmp/io.log 2>&1 &", check=True)
        try:
            _wait(lambda: _rounds(linux_guest) >= 2, "the I/O loop to run")
            seen = [m.transactions for m in machines]
            rekey_host(server, GUEST_HOST, new)
            _wait(lambda: all(m.authenticated and m.transactions > s
                              for m, s in zip(machines, seen)), "re-authentication when asked")
            assert not any(m.failed for m in machines)
            after = _rounds(linux_guest)
            _wait(lambda: _rounds(linux_guest) >= after + 3, "I/O after re-authentication")
        finally:
            linux_guest.run("touch /tmp/io.stop")
            _wait(lambda: linux_guest.run("test -e /tmp/io.done").ok, "the I/O loop to end",
                  timeout=120)
        rounds, bad = map(int, linux_guest.run("cat /tmp/io.done", check=True).stdout.split())
        log = linux_guest.run("cat /tmp/io.log").stdout
        dmesg = "\n".join(linux_guest.run("dmesg", chroot=False).stdout.splitlines()
                          [dmesg_before:])
        assert bad == 0, f"{bad} of {rounds} rounds failed:\n{log}\n{dmesg}"
        assert "I/O error" not in dmesg and "Authentication Required" not in dmesg, dmesg
        # The I/O did meet the withdrawal: I/O queues refused commands with a CRD.
        refused = [e for e in list(assoc.error_log)
                   if e.sqid and (decode_status(e.status).sct, decode_status(e.status).sc)
                   == (1, 0x91)]
        assert refused and all(decode_status(e.status).crd for e in refused), refused
        _io(linux_guest, dev, "c")
    finally:
        _nvme(linux_guest, f"disconnect -n {srv.subnqn}")


def test_our_host_reauthenticates_against_nvmet_with_a_new_key(linux_guest, kernel_target):
    if linux_guest.kernel.config("NVME_TARGET_AUTH") not in ("y", "m"):
        pytest.skip("guest kernel has no NVME_TARGET_AUTH")
    old_key, ctrl_key, new_key = _key(2), _key(2), _key(1)
    host, port = kernel_target.apply(NvmetConfig(
        subsystems=[Subsystem(NQN, [Namespace(1, size_mib=8)], allow_any_host=False,
                              allowed_hosts=[OUR_HOST])],
        hosts=[Host(OUR_HOST, dhchap_key=old_key, dhchap_ctrl_key=ctrl_key,
                    dhchap_hash="hmac(sha384)", dhchap_dhgroup="ffdhe2048")],
        ports=[Port(1, 4420, subsystems=[NQN])]))
    who = HostIdentity(OUR_HOST, uuid.UUID(HOSTID), "test", "test")
    params = AssociationParams(num_io_queues=2, timeout_s=30, dhchap_secret=parse_secret(old_key),
                               dhchap_ctrl_secret=parse_secret(ctrl_key))
    assoc = connect_association(Address(host, port, f"{host}:{port}"), NQN, who, params)
    try:
        def io(fill: int) -> None:
            for q in assoc.io:
                data = bytes([fill + q.qid]) * 512
                q.execute(nvm.build_write(1, q.qid, 1), "Write", write_data=data)
                _, back = q.execute(nvm.build_read(1, q.qid, 1), "Read", read_len=512)
                assert back == data

        io(0x10)
        # Host-initiated re-authentication with the same key, then with a new one.
        assert all(r.bidirectional for r in assoc.reauthenticate())
        io(0x20)
        linux_guest.run(f"printf %s {shlex.quote(new_key)} > "
                        f"/sys/kernel/config/nvmet/hosts/{OUR_HOST}/dhchap_key",
                        chroot=False, check=True)
        results = assoc.reauthenticate(dhchap_secret=parse_secret(new_key))
        assert [r.hash_id for r in results] == [2, 2, 2]
        io(0x30)
        # The old key is refused now.  After a failed transaction on the
        # admin queue nvmet also ends the controller (a fatal error), so the
        # refusal arrives as Failure1 or, when the close wins the race, as
        # the end of the connection (both seen here).
        assoc.params.dhchap_secret = parse_secret(old_key)
        with pytest.raises((A.HostKeyRejected, ConnectionLost)):
            assoc.authenticate(assoc.admin)
    finally:
        assoc.shutdown()
