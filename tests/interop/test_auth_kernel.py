"""DH-HMAC-CHAP: our host against the Linux kernel's nvmet (6.12, NVME_TARGET_AUTH).

The guest's nvmet holds the keys per host (configfs ``dhchap_key``,
``dhchap_ctrl_key``, ``dhchap_hash``, ``dhchap_dhgroup``); our host runs on
the host side of the forwarded port.  Every hash function with the null
group, ffdhe2048 and ffdhe4096, one way and both ways; a wrong host key is
refused by the kernel, a wrong controller key is caught by us.  The I/O
queues are proven authenticated by I/O on them: nvmet fails commands on an
unauthenticated queue with Authentication Required.
"""

from __future__ import annotations

import itertools
import re
import uuid

import pytest

from nvmecontrol.cli import exitcodes as X
from nvmecontrol.cli.app import main
from nvmecontrol.host.association import AssociationParams, connect_association
from nvmecontrol.hostid import HostIdentity
from nvmecontrol.transport.address import Address
from nvmecontrol.wire import nvm
from nvmecontrol.wire.auth_crypto import HASH_NAMES, DhGroup, HashId
from nvmecontrol.wire.dhchap_key import format_secret, generate_secret, parse_secret

from .nvmet import Host, Namespace, NvmetConfig, Port, Subsystem

NQN = "nqn.2014-08.org.nvmexpress.test:auth"
HOSTID = "6b1d0e5c-3f2a-4c8b-9e7d-1a2b3c4d5e6f"
OUR_HOST = f"nqn.2014-08.org.nvmexpress:uuid:{HOSTID}"
HOST = HostIdentity(OUR_HOST, uuid.UUID(HOSTID), "test", "test")
GROUPS = {DhGroup.NULL: "null", DhGroup.FFDHE2048: "ffdhe2048", DhGroup.FFDHE4096: "ffdhe4096"}


def _keys(transform: int):
    return format_secret(generate_secret(transform=transform)), \
        format_secret(generate_secret(transform=transform))


@pytest.fixture
def auth_target(kernel_target, linux_guest):
    if linux_guest.kernel.config("NVME_TARGET_AUTH") not in ("y", "m"):
        pytest.skip("guest kernel has no NVME_TARGET_AUTH")

    def apply(hash_id: int, group: int, transform: int = 1):
        host_key, ctrl_key = _keys(transform)
        host, port = kernel_target.apply(NvmetConfig(
            subsystems=[Subsystem(NQN, [Namespace(1, size_mib=8)], allow_any_host=False,
                                  allowed_hosts=[OUR_HOST])],
            hosts=[Host(OUR_HOST, dhchap_key=host_key, dhchap_ctrl_key=ctrl_key,
                        dhchap_hash=HASH_NAMES[HashId(hash_id)],
                        dhchap_dhgroup=GROUPS[group])],
            ports=[Port(1, 4420, subsystems=[NQN])],
        ))
        return f"{host}:{port}", host_key, ctrl_key

    return apply


def identify(capsys, address, *extra):
    rc = main(["identify", "-q", OUR_HOST, "-I", HOSTID, "-o", "json", address, NQN, *extra])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("hash_id,group", list(itertools.product(
    [HashId.SHA256, HashId.SHA384, HashId.SHA512], list(GROUPS))),
    ids=lambda v: getattr(v, "name", str(v)).lower())
def test_identify_one_way_and_both_ways(capsys, auth_target, hash_id, group):
    address, host_key, ctrl_key = auth_target(hash_id, group, transform=hash_id)
    rc, out, err = identify(capsys, address, "--dhchap-secret", host_key)
    assert rc == 0, err
    assert '"subnqn"' in out or NQN in out
    rc, out, err = identify(capsys, address, "--dhchap-secret", host_key,
                            "--dhchap-ctrl-secret", ctrl_key)
    assert rc == 0, err


def test_every_io_queue_authenticates(auth_target):
    address, host_key, ctrl_key = auth_target(HashId.SHA256, DhGroup.FFDHE2048)
    host, port = address.rsplit(":", 1)
    params = AssociationParams(num_io_queues=3, timeout_s=20,
                               dhchap_secret=parse_secret(host_key),
                               dhchap_ctrl_secret=parse_secret(ctrl_key))
    assoc = connect_association(Address(host, int(port), address), NQN, HOST, params)
    try:
        assert len(assoc.io) == 3
        for q in assoc.io:
            # Write then read a block on each queue: nvmet would answer
            # Authentication Required (0x191) on a queue that skipped it.
            payload = bytes([q.qid]) * 512
            q.execute(nvm.build_write(1, q.qid, 1), "Write", write_data=payload)
            _, data = q.execute(nvm.build_read(1, q.qid, 1), "Read", read_len=512)
            assert data == payload
    finally:
        assoc.shutdown()


def test_missing_secret_is_a_usage_error(capsys, auth_target):
    address, _, _ = auth_target(HashId.SHA256, DhGroup.NULL)
    rc, out, err = identify(capsys, address)
    assert rc == X.EX_USAGE
    assert "requires DH-HMAC-CHAP" in err and "--dhchap-secret" in err
    assert err.count("\n") == 1 and out == ""


def test_wrong_host_secret_is_refused(capsys, auth_target):
    address, _, _ = auth_target(HashId.SHA256, DhGroup.FFDHE2048)
    wrong = format_secret(generate_secret(transform=1))
    rc, out, err = identify(capsys, address, "--dhchap-secret", wrong)
    assert rc == X.EX_NOPERM, err
    # nvmet answers with Failure1, or at times tears the controller down
    # before that Failure1 is read: the same verdict, said as such.
    assert ("controller rejected the host's response" in err
            and "Failure1" in err and "reason 0x01" in err) or \
        "after the host's DH-HMAC-CHAP response instead of answering it" in err, err
    assert err.count("\n") == 1


def test_wrong_controller_secret_is_detected(capsys, auth_target):
    address, host_key, _ = auth_target(HashId.SHA384, DhGroup.NULL)
    wrong = format_secret(generate_secret(transform=1))
    rc, out, err = identify(capsys, address, "--dhchap-secret", host_key,
                            "--dhchap-ctrl-secret", wrong)
    assert rc == X.EX_PROTOCOL, err
    assert "controller's response does not match" in err and "Failure2" in err
    assert err.count("\n") == 1


def test_untransformed_secret(capsys, auth_target):
    address, host_key, ctrl_key = auth_target(HashId.SHA512, DhGroup.NULL, transform=0)
    rc, out, err = identify(capsys, address, "--dhchap-secret", host_key,
                            "--dhchap-ctrl-secret", ctrl_key)
    assert rc == 0, err


# --- through the backends ------------------------------------------------------

def test_nbd_session_authenticates_and_reauthenticates_on_reconnect(capsys, auth_target,
                                                                    linux_guest, tmp_path):
    import os
    import subprocess

    from .sessions import end_sessions, need

    need("nbdcopy")
    address, host_key, ctrl_key = auth_target(HashId.SHA512, DhGroup.FFDHE2048)
    try:
        rc = main(["connect", "--backend", "nbd", "--no-attach", "-q", OUR_HOST, "-I", HOSTID,
                   "-i", "2", "--dhchap-secret", host_key, "--dhchap-ctrl-secret", ctrl_key,
                   address, NQN])
        out, err = capsys.readouterr()
        assert rc == 0, err
        uri = re.search(r"(nbd\+unix:///ns1\?socket=\S+)", out).group(1)
        data = os.urandom(1 << 20)
        (tmp_path / "in").write_bytes(data)
        subprocess.run(["nbdcopy", str(tmp_path / "in"), uri], check=True, timeout=120)
        # The secrets stay out of what devlist prints.
        rc = main(["devlist", "-o", "json"])
        out, err = capsys.readouterr()
        assert rc == 0 and host_key not in out and ctrl_key not in out
        assert '"dhchap_secret": "<set>"' in out
        # A reconnect builds a new association: every queue authenticates again.
        mark = linux_guest.run("dmesg | wc -l", chroot=False, check=True).stdout.strip()
        rc = main(["reconnect", "nvmeu0"])
        out, err = capsys.readouterr()
        assert rc == 0, err
        res = subprocess.run(["nbdcopy", uri, "-"], capture_output=True, timeout=120)
        assert res.returncode == 0 and res.stdout[:len(data)] == data
        log = linux_guest.run(f"dmesg | tail -n +{int(mark) + 1}", chroot=False, check=True).stdout
        assert "creating nvm controller" in log
        rc = main(["disconnect", "nvmeu0"])
        capsys.readouterr()
        assert rc == 0
    finally:
        end_sessions()


def test_kernel_backend_in_the_guest(kernel_target, linux_guest, guest_cli):
    from .guest_cli import clear_guest_hosts

    if linux_guest.kernel.config("NVME_HOST_AUTH") != "y":
        pytest.skip("guest kernel has no NVME_HOST_AUTH")
    host_key, ctrl_key = _keys(2)
    kernel_target.apply(NvmetConfig(
        subsystems=[Subsystem(NQN, [Namespace(1, size_mib=8)], allow_any_host=False,
                              allowed_hosts=[OUR_HOST])],
        hosts=[Host(OUR_HOST, dhchap_key=host_key, dhchap_ctrl_key=ctrl_key,
                    dhchap_hash="hmac(sha384)", dhchap_dhgroup="ffdhe4096")],
        ports=[Port(1, 4420, subsystems=[NQN])],
    ))
    clear_guest_hosts(linux_guest)
    try:
        who = ("-q", OUR_HOST, "-I", HOSTID)
        # Wrong controller secret: our pre-flight catches it before the kernel dials.
        wrong = format_secret(generate_secret(transform=2))
        res = guest_cli("connect", "--backend", "kernel", *who, "--dhchap-secret", host_key,
                        "--dhchap-ctrl-secret", wrong, "127.0.0.1:4420", NQN)
        assert res.rc == X.EX_PROTOCOL, res.stderr
        assert "controller's response does not match" in res.stderr
        res = guest_cli("connect", "--backend", "kernel", *who, "--dhchap-secret", host_key,
                        "--dhchap-ctrl-secret", ctrl_key, "127.0.0.1:4420", NQN)
        assert res.ok, res.stderr
        ctrl = re.match(r"(nvme\d+): connected", res.stdout).group(1)
        # The kernel holds the secrets it was given (sysfs, root only).
        got = linux_guest.run(f"cat /sys/class/nvme/{ctrl}/dhchap_secret "
                              f"/sys/class/nvme/{ctrl}/dhchap_ctrl_secret", chroot=False,
                              check=True).stdout.split()
        assert got == [host_key, ctrl_key]
        res = linux_guest.run(f"dd if=/dev/{ctrl}n1 of=/dev/null bs=4096 count=16 iflag=direct",
                              chroot=False)
        assert res.ok, res.stderr
    finally:
        clear_guest_hosts(linux_guest)


# --- the kernel host against nvmfd ---------------------------------------------

GUEST_HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:2b4d6f80-1a3c-4e5f-8a9b-0c1d2e3f4a5b"


@pytest.mark.parametrize("hash_name,group", [("hmac(sha256)", "null"),
                                             ("hmac(sha384)", "ffdhe2048"),
                                             ("hmac(sha512)", "ffdhe4096")])
@pytest.mark.parametrize("bidi", [False, True], ids=["oneway", "bidi"])
def test_kernel_host_against_nvmfd(linux_guest, nvmfd_factory, hash_name, group, bidi):
    import shlex

    from nvmecontrol.target.config import HostAuthConfig

    from tests.conftest import simple_config

    from .test_kernel_host_nvmfd import HOST_FROM_GUEST, _block_device, _nvme

    host_key, ctrl_key = _keys(1)
    cfg = simple_config(namespaces=["mem:8M"], addresses=("127.0.0.1",),
                        allow_hosts=[GUEST_HOSTNQN])
    cfg.host_auth[GUEST_HOSTNQN] = HostAuthConfig(host_key, ctrl_key, hash_name, group)
    srv = nvmfd_factory(cfg)
    base = f"connect -t tcp -a {HOST_FROM_GUEST} -s {srv.port} -n {srv.subnqn} -q {GUEST_HOSTNQN}"
    # A wrong host key: nvmfd refuses it, the kernel reports the rejection.
    wrong = format_secret(generate_secret(transform=1))
    res = _nvme(linux_guest, f"{base} --dhchap-secret={shlex.quote(wrong)}")
    assert not res.ok
    auth = f"--dhchap-secret={shlex.quote(host_key)}"
    if bidi:
        auth += f" --dhchap-ctrl-secret={shlex.quote(ctrl_key)}"
    res = _nvme(linux_guest, f"{base} {auth}")
    assert res.ok, res.stderr
    try:
        dev = _block_device(linux_guest, srv.subnqn)
        res = linux_guest.run(
            f"set -e; head -c 1048576 /dev/urandom > /tmp/p; "
            f"dd if=/tmp/p of={dev} bs=1M oflag=direct status=none; "
            f"dd if={dev} of=/tmp/b bs=1M count=1 iflag=direct status=none; cmp /tmp/p /tmp/b "
            f"&& echo SAME", chroot=False, timeout=120)
        assert res.ok and "SAME" in res.stdout, res.stderr
    finally:
        _nvme(linux_guest, f"disconnect -n {srv.subnqn}")
    if bidi:
        # A wrong controller key (ours): the kernel host refuses nvmfd.
        res = _nvme(linux_guest, f"{base} --dhchap-secret={shlex.quote(host_key)} "
                                 f"--dhchap-ctrl-secret="
                                 f"{shlex.quote(format_secret(generate_secret(transform=1)))}")
        assert not res.ok
        _nvme(linux_guest, f"disconnect -n {srv.subnqn}")


def test_tshark_decodes_the_exchange(capsys, auth_target):
    from .tshark import Capture, have_tshark

    if not have_tshark():
        pytest.skip("tshark not installed")
    address, host_key, ctrl_key = auth_target(HashId.SHA256, DhGroup.FFDHE2048)
    cap = Capture(int(address.rsplit(":", 1)[1]))
    try:
        with cap:
            rc, _, err = identify(capsys, address, "--dhchap-secret", host_key,
                                  "--dhchap-ctrl-secret", ctrl_key)
            assert rc == 0, err
        # Fabrics commands with FCTYPE Authentication Send (05h) and Receive (06h) went by.
        fctypes = {row[0] for row in cap.fields("nvme-tcp.type == 4", "nvme.fabrics.cmd.fctype")
                   if row and row[0]}
        assert {"0x05", "0x06"} <= fctypes or {"5", "6"} <= fctypes, fctypes
        assert cap.problems() == []
    finally:
        cap.cleanup()
