"""Smoke tests of the interop harness itself: guest, agent, nvmet, forwarding.

These use only the Linux kernel on both sides (nvmet in the guest, the
guest's nvme-tcp host driven by nvme-cli), so a failure here is a harness
or environment problem, never a bug in nvmecontrol.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import zlib

import pytest

from .guest import LinuxGuest
from .nvmet import Host, KernelTarget, Namespace, NvmetConfig, Port, Referral, Subsystem

SUBNQN = "nqn.2024-01.org.nvmecontrol:interop-smoke"
RESTRICTED_NQN = "nqn.2024-01.org.nvmecontrol:interop-restricted"
OTHER_HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-000000000001"
MIB = 1024 * 1024


def smoke_config() -> NvmetConfig:
    return NvmetConfig(
        subsystems=[
            Subsystem(
                SUBNQN,
                [
                    Namespace(1, size_mib=32),
                    Namespace(2, size_mib=16, uuid="6f1c0b5e-8d4a-4c1e-9a57-0d3c2b1a0f01"),
                ],
            ),
            Subsystem(
                RESTRICTED_NQN,
                [Namespace(1, size_mib=8)],
                allow_any_host=False,
                allowed_hosts=[OTHER_HOSTNQN],
            ),
        ],
        ports=[Port(1, 4420, subsystems=[SUBNQN, RESTRICTED_NQN])],
    )


@pytest.mark.parametrize("chroot", [False, True], ids=["busybox", "chroot"])
def test_agent_returns_stdout_stderr_and_status(linux_guest: LinuxGuest, chroot: bool) -> None:
    res = linux_guest.run("echo out; echo 'err line' >&2; exit 7", chroot=chroot)
    assert (res.rc, res.stdout, res.stderr) == (7, "out\n", "err line\n")
    assert not res.timed_out


def test_agent_binary_safe_and_timeout(linux_guest: LinuxGuest) -> None:
    res = linux_guest.run("printf 'a\\0b\\n%%OUT\\n'", chroot=False)
    assert res.stdout == "a\0b\n%OUT\n"
    res = linux_guest.run("sleep 30", chroot=False, timeout=2)
    assert res.timed_out and res.rc != 0


def test_chroot_runs_host_tools_on_guest_kernel(linux_guest: LinuxGuest) -> None:
    assert linux_guest.kernel is not None
    res = linux_guest.run("uname -r; python3 -c 'print(6*7)'; nvme version", check=True)
    release, answer, nvme = res.stdout.splitlines()[:3]
    assert release == linux_guest.kernel.release
    assert answer == "42"
    assert nvme.startswith("nvme version")


def test_discover_lists_subsystem(linux_guest: LinuxGuest, kernel_target: KernelTarget) -> None:
    kernel_target.apply(smoke_config())
    res = linux_guest.run("nvme discover -t tcp -a 127.0.0.1 -s 4420", check=True)
    assert f"subnqn:  {SUBNQN}" in res.stdout


def test_connect_write_read_disconnect(linux_guest: LinuxGuest, kernel_target: KernelTarget) -> None:
    kernel_target.apply(smoke_config())
    assert len({dev for (nqn, _), dev in kernel_target.applied.devices.items() if nqn == SUBNQN}) == 2

    linux_guest.run(f"nvme connect -t tcp -a 127.0.0.1 -s 4420 -n {SUBNQN}", check=True, timeout=60)
    # No udev in the guest: devtmpfs creates the nodes once the scan is done.
    res = linux_guest.run(
        "for i in $(seq 100); do"
        " set -- /dev/nvme*n1 /dev/nvme*n2;"
        ' [ -b "$1" ] && [ -b "$2" ] && { echo "$1"; exit 0; }; sleep 0.1;'
        " done; ls /dev >&2; exit 1",
        check=True,
    )
    dev = res.stdout.strip()
    res = linux_guest.run(
        "head -c 1048576 /dev/urandom > /tmp/pattern\n"
        f"dd if=/tmp/pattern of={dev} bs=64k oflag=direct conv=fsync status=none\n"
        f"dd if={dev} of=/tmp/readback bs=64k count=16 iflag=direct status=none\n"
        "sha256sum < /tmp/pattern; sha256sum < /tmp/readback",
        check=True,
        timeout=120,
    )
    written, read = res.stdout.splitlines()
    assert written == read

    res = linux_guest.run(f"nvme disconnect -n {SUBNQN}", check=True)
    assert "disconnected 1 controller" in res.stdout
    res = linux_guest.run(f"ls /sys/class/nvme-subsystem/*/subsysnqn 2>/dev/null | xargs -r cat")
    assert SUBNQN not in res.stdout


def test_forwarded_port_reaches_nvmet(kernel_target: KernelTarget) -> None:
    """From the host: TCP connect, then an ICReq must get an ICResp.

    A bare connect would prove little: qemu's slirp accepts forwarded
    connections before it knows whether the guest listens.
    """
    host, port = kernel_target.apply(smoke_config())
    # ICReq (NVMe/TCP 1.0 section 3.6.2.2): type 0, hlen 128, pdo 0,
    # plen 128, pfv 0, hpda 0, no digests, maxr2t 0.
    icreq = struct.pack("<BBBBIHBBI", 0x00, 0, 128, 0, 128, 0, 0, 0, 0).ljust(128, b"\0")
    with socket.create_connection((host, port), timeout=30) as s:
        s.sendall(icreq)
        resp = b""
        while len(resp) < 128:
            chunk = s.recv(128 - len(resp))
            assert chunk, "connection closed before ICResp"
            resp += chunk
    pdu_type, _, hlen, _, plen = struct.unpack_from("<BBBBI", resp)
    assert (pdu_type, hlen, plen) == (0x01, 128, 128)


def test_restricted_subsystem(linux_guest: LinuxGuest, kernel_target: KernelTarget) -> None:
    kernel_target.apply(smoke_config())
    base = f"subsystems/{RESTRICTED_NQN}"
    assert kernel_target.read(f"{base}/attr_allow_any_host") == "0"
    res = linux_guest.run(f"ls /sys/kernel/config/nvmet/{base}/allowed_hosts", chroot=False, check=True)
    assert res.stdout.split() == [OTHER_HOSTNQN]
    assert kernel_target.read(f"{base}/namespaces/1/enable") == "1"
    # The guest's own host NQN is not allowed: Connect must be refused.
    res = linux_guest.run(f"nvme connect -t tcp -a 127.0.0.1 -s 4420 -n {RESTRICTED_NQN}", timeout=60)
    assert res.rc != 0, res.stdout


def dhchap_secret(raw: bytes) -> str:
    """A DH-HMAC-CHAP secret in the ``DHHC-1:00:<base64(key || crc32 LE)>:`` form."""
    return f"DHHC-1:00:{base64.b64encode(raw + zlib.crc32(raw).to_bytes(4, 'little')).decode()}:"


def test_nvmet_description_features(linux_guest: LinuxGuest, kernel_target: KernelTarget) -> None:
    """File and loop backends, ids, referrals, port params, auth keys where supported."""
    assert linux_guest.kernel is not None
    auth = linux_guest.kernel.config("NVME_TARGET_AUTH") == "y"
    nguid = "0123456789abcdef0123456789abcdef"
    hosts = []
    if auth:
        hosts = [Host(OTHER_HOSTNQN, dhchap_key=dhchap_secret(os.urandom(32)), dhchap_hash="hmac(sha256)")]
    config = NvmetConfig(
        subsystems=[
            Subsystem(
                SUBNQN,
                [Namespace(1, 8, backend="file", nguid=nguid), Namespace(2, 8, backend="loop")],
                allow_any_host=not auth,
                allowed_hosts=[OTHER_HOSTNQN] if auth else [],
                serial="interop0001",
                model="nvmecontrol-interop",
            )
        ],
        hosts=hosts,
        ports=[
            Port(
                1,
                4420,
                subsystems=[SUBNQN],
                referrals=[Referral("r1", "10.0.2.2", 4421, portid=7)],
                params={"param_inline_data_size": "16384", "no_such_param": "1"},
            )
        ],
    )
    kernel_target.apply(config)
    applied = kernel_target.applied
    assert applied is not None and applied.skipped == ("no_such_param",)
    assert applied.devices[(SUBNQN, 1)].startswith("/tmp/nvmet-backing-")
    assert applied.devices[(SUBNQN, 2)].startswith("/dev/loop")
    sub = f"subsystems/{SUBNQN}"
    assert kernel_target.read(f"{sub}/namespaces/1/device_nguid").replace("-", "") == nguid
    assert kernel_target.read(f"{sub}/attr_serial").rstrip() == "interop0001"  # space-padded
    assert kernel_target.read(f"{sub}/attr_model").rstrip() == "nvmecontrol-interop"
    assert kernel_target.read("ports/1/param_inline_data_size") == "16384"
    assert kernel_target.read("ports/1/referrals/r1/addr_portid") == "7"
    if auth:
        assert kernel_target.read(f"hosts/{OTHER_HOSTNQN}/dhchap_key") == hosts[0].dhchap_key
    # The referral is served in the discovery log page.
    res = linux_guest.run("nvme discover -t tcp -a 127.0.0.1 -s 4420", check=True)
    assert "trsvcid: 4421" in res.stdout and "10.0.2.2" in res.stdout

    # Reconfiguring removes everything, loop devices and files included.
    kernel_target.apply(NvmetConfig())
    res = linux_guest.run("losetup -a; ls /tmp", chroot=False, check=True)
    assert "nvmet-backing" not in res.stdout


def test_apply_failure_leaves_nothing(kernel_target: KernelTarget) -> None:
    bad = NvmetConfig(subsystems=[Subsystem(SUBNQN, [Namespace(1, 8)], attrs={"no_such_attr": "1"})])
    with pytest.raises(RuntimeError, match="not supported"):
        kernel_target.apply(bad)
    assert kernel_target.guest.run("ls /sys/kernel/config/nvmet/subsystems", chroot=False).stdout == ""
