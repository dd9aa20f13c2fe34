"""Our discover / identify / logpage against the Linux kernel's nvmet-tcp.

The guest's port 4420 is forwarded to the host's loopback; our commands run
on the host (in-process, as a user would call them), nvme-cli runs in the
guest against the same target for the JSON comparisons.
"""

from __future__ import annotations

import json
import re

import pytest

from nvmecontrol.cli import exitcodes as X
from nvmecontrol.cli.app import main

from .nvmet import Host, Namespace, NvmetConfig, Port, Referral, Subsystem

NQN_A = "nqn.2014-08.org.nvmexpress.test:kernel-a"
NQN_B = "nqn.2014-08.org.nvmexpress.test:kernel-b"
NQN_LOCKED = "nqn.2014-08.org.nvmexpress.test:locked"
OUR_HOST = "nqn.2014-08.org.nvmexpress:uuid:5a2f3c1e-8d4b-4f6a-9c7e-0b1d2e3f4a5b"
GUEST_ADDR = "10.0.2.15"
OTHER_HOST = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-4333-8444-555555555555"


def cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def two_subsystems(kernel_target):
    cfg = NvmetConfig(
        subsystems=[
            Subsystem(NQN_A, [Namespace(1, size_mib=32), Namespace(2, size_mib=16)]),
            Subsystem(NQN_B, [Namespace(1, size_mib=8)]),
            Subsystem(NQN_LOCKED, [Namespace(1, size_mib=8)], allow_any_host=False,
                      allowed_hosts=[OTHER_HOST]),
        ],
        hosts=[Host(OTHER_HOST)],
        # A specific traddr (the guest's address, where qemu delivers the
        # forwarded connections) so that the log reads the same to our host
        # on the forwarded port and to nvme-cli inside the guest.
        ports=[Port(portid=1, trsvcid=4420, traddr=GUEST_ADDR,
                    subsystems=[NQN_A, NQN_B, NQN_LOCKED],
                    referrals=[Referral("ref1", "192.0.2.7", 8009)])],
    )
    host, port = kernel_target.apply(cfg)
    return f"{host}:{port}"


def test_discover_lists_subsystems_and_referral(capsys, two_subsystems):
    rc, out, err = cli(capsys, "discover", "-q", OUR_HOST, two_subsystems)
    assert rc == 0, err
    assert out.startswith("Discovery\n=========\n")
    assert f" Sub NQN:              {NQN_A}\n" in out
    assert f" Sub NQN:              {NQN_B}\n" in out
    # The referral shows as a Discovery subsystem entry with its address.
    assert " Subsystem type:       Discovery\n" in out
    assert " Transport address:    192.0.2.7\n" in out
    # The locked subsystem is hidden from a host that may not use it.
    assert NQN_LOCKED not in out


def test_discover_json_matches_nvme_cli(capsys, two_subsystems, linux_guest):
    rc, out, err = cli(capsys, "discover", "-o", "json", "-q", OUR_HOST, two_subsystems)
    assert rc == 0, err
    ours = json.loads(out)
    res = linux_guest.run(f"nvme discover -t tcp -a {GUEST_ADDR} -s 4420 -q {OUR_HOST} -o json",
                          check=True)
    theirs = json.loads(res.stdout)
    assert ours["genctr"] == theirs["genctr"]
    assert ours["numrec"] == len(theirs["records"]) == len(ours["records"])
    key = lambda r: (r["subnqn"], r["traddr"], r["trsvcid"])
    for o, t in zip(sorted(ours["records"], key=key), sorted(theirs["records"], key=key)):
        for field in ("trtype", "adrfam", "subtype", "portid", "trsvcid", "subnqn", "traddr",
                      "treq", "sectype"):
            assert str(o[field]) == str(t[field]), (field, o, t)
        # nvme-cli 2.3 names fewer fields; every one it has must agree.
        shared = set(o) & set(t)
        assert {"trtype", "subnqn", "traddr"} <= shared
        for field in shared:
            assert str(o[field]) == str(t[field]), (field, o, t)


def test_discover_verbose_shows_discovery_controller(capsys, two_subsystems):
    rc, out, err = cli(capsys, "discover", "-v", "-q", OUR_HOST, two_subsystems)
    assert rc == 0, err
    head, _, log = out.partition("Discovery\n=========\n")
    assert "Controller Capabilities/Features" in head
    assert "Controller Type:" in head and "Discovery Controller" in head
    assert NQN_A in log


@pytest.mark.parametrize("digests", [[], ["-g"], ["-G"], ["-g", "-G"]],
                         ids=["plain", "hdgst", "ddgst", "both"])
def test_identify_controller(capsys, two_subsystems, linux_guest, digests):
    rc, out, err = cli(capsys, "identify", *digests, "-q", OUR_HOST, two_subsystems, NQN_A)
    assert rc == 0, err
    assert re.search(r"^Model Number:\s+Linux$", out, re.M), out
    release = linux_guest.run("uname -r", chroot=False, check=True).stdout.strip()
    fw = re.search(r"^Firmware Version:\s+(\S+)$", out, re.M).group(1)
    assert release.startswith(fw) or fw.startswith(release.split("-")[0]), (fw, release)
    assert "Fabrics Attributes\n==================\n" in out
    assert re.search(r"^I/O Command Capsule Size:\s+\d+ bytes$", out, re.M)
    assert f"NVM Subsystem Name:" in out and NQN_A in out


def test_identify_json_matches_nvme_cli(capsys, two_subsystems, linux_guest):
    rc, out, err = cli(capsys, "identify", "-o", "json", "-q", OUR_HOST, two_subsystems, NQN_A)
    assert rc == 0, err
    ours = json.loads(out)
    # nvme-cli on the guest's own kernel connection to the same subsystem.
    linux_guest.run(f"nvme connect -t tcp -a {GUEST_ADDR} -s 4420 -n {NQN_A} -q {OUR_HOST}",
                    check=True, timeout=60)
    try:
        dev = linux_guest.run(
            f"for c in /sys/class/nvme/nvme*; do [ \"$(cat $c/subsysnqn)\" = {NQN_A} ] && "
            "basename $c && break; done", check=True).stdout.strip()
        theirs = json.loads(linux_guest.run(f"nvme id-ctrl -o json /dev/{dev}", check=True).stdout)
    finally:
        linux_guest.run(f"nvme disconnect -n {NQN_A}", timeout=60)
    for field in ("vid", "ssvid", "sn", "mn", "fr", "ver", "mdts", "oacs", "acl", "aerl",
                  "lpa", "elpe", "sqes", "cqes", "nn", "oncs", "vwc", "sgls", "subnqn",
                  "ioccsz", "iorcsz", "icdoff", "fcatt", "msdbd", "ofcs", "kas", "ctratt"):
        o, t = ours[field], theirs[field]
        if isinstance(t, str):
            assert str(o).strip() == t.strip(), field
        else:
            assert o == t, field


def test_identify_namespace(capsys, two_subsystems):
    rc, out, err = cli(capsys, "identify", "-n", "2", "-q", OUR_HOST, two_subsystems, NQN_A)
    assert rc == 0, err
    # 16 MiB null_blk in 512-byte blocks.
    assert re.search(r"^Size:\s+32768 blocks$", out, re.M), out
    rc, out, err = cli(capsys, "identify", "-n", "1", "-o", "json", "-q", OUR_HOST,
                       two_subsystems, NQN_A)
    assert rc == 0, err
    assert json.loads(out)["nsze"] == 32 * 1024 * 1024 // 512


@pytest.mark.parametrize("page", ["1", "2", "3", "4", "5", "0x0c"])
def test_logpage_every_supported_page(capsys, two_subsystems, page):
    rc, out, err = cli(capsys, "logpage", "-p", page, "-q", OUR_HOST, two_subsystems, NQN_A)
    assert rc == 0, err
    assert out.strip()
    rc, js, err = cli(capsys, "logpage", "-p", page, "-o", "json", "-q", OUR_HOST,
                      two_subsystems, NQN_A)
    assert rc == 0, err
    assert json.loads(js)["lid"] == int(page, 0)


def test_logpage_smart_and_binary(capsys, two_subsystems):
    rc, out, err = cli(capsys, "logpage", "-p", "2", "-q", OUR_HOST, two_subsystems, NQN_A)
    assert rc == 0, err
    assert "Temperature:" in out and "Power cycles:" in out
    rc, out, err = cli(capsys, "logpage", "-p", "2", "-x", "-q", OUR_HOST, two_subsystems, NQN_A)
    assert rc == 0 and re.match(r"^000: ", out)


def test_logpage_discovery_page(capsys, two_subsystems):
    rc, out, err = cli(capsys, "logpage", "-p", "0x70", "-q", OUR_HOST, two_subsystems)
    assert rc == 0, err
    assert NQN_A in out and NQN_B in out


def test_restricted_subsystem_refused(capsys, two_subsystems):
    rc, out, err = cli(capsys, "identify", "-q", OUR_HOST, two_subsystems, NQN_LOCKED)
    assert rc == X.EX_NOPERM, err
    assert out == ""
    assert "Connect Invalid Host (sct 0x1, sc 0x84, dnr)" in err
    # The allowed host gets in.
    rc, out, err = cli(capsys, "identify", "-q", OTHER_HOST, two_subsystems, NQN_LOCKED)
    assert rc == 0, err


def test_unknown_subsystem_is_reported(capsys, two_subsystems):
    rc, out, err = cli(capsys, "identify", "-q", OUR_HOST, two_subsystems,
                       "nqn.2014-08.org.nvmexpress.test:nope")
    assert rc in (X.EX_IOERR, X.EX_NOPERM), err
    assert "Connect" in err and "sct 0x1" in err


def test_identify_and_logpage_on_kernel_controller(two_subsystems, linux_guest):
    """Inside the guest: the kernel holds the controller, we use the passthrough ioctl."""
    import sys
    from pathlib import Path

    # Host paths under /tmp appear elsewhere inside the guest's chroot.
    repo = linux_guest.guest_path(Path(__file__).resolve().parents[2])
    # The venv's python is a symlink: map its directory, keep its name.
    exe = Path(sys.executable)
    python = f"{linux_guest.guest_path(exe.parent)}/{exe.name}"
    py = f"cd {repo} && {python} -m nvmecontrol"
    linux_guest.run(f"nvme connect -t tcp -a {GUEST_ADDR} -s 4420 -n {NQN_A} -q {OUR_HOST}",
                    check=True, timeout=60)
    try:
        dev = linux_guest.run(
            f"for c in /sys/class/nvme/nvme*; do [ \"$(cat $c/subsysnqn)\" = {NQN_A} ] && "
            "basename $c && break; done", check=True).stdout.strip()
        res = linux_guest.run(f"{py} identify {dev}", timeout=120)
        assert res.ok, res.stderr
        assert re.search(r"^Model Number:\s+Linux$", res.stdout, re.M)
        assert NQN_A in res.stdout
        # With native multipath the namespace node is named after the
        # subsystem instance, not the controller: find it by its NQN.  Its
        # last number is the namespace head's instance, not the NSID (6.12
        # scans namespaces asynchronously; NSID 2 may well be nvmeXn1).
        ns_dev = linux_guest.run(
            f"for b in /sys/block/nvme*n*; do case ${{b##*/}} in nvme*c*n*) continue;; esac; "
            f"[ \"$(cat $b/device/subsysnqn)\" = {NQN_A} ] && [ \"$(cat $b/nsid)\" = 1 ] && "
            f"basename $b && break; done",
            check=True).stdout.strip()
        res = linux_guest.run(f"{py} identify -o json {ns_dev}", timeout=120)
        assert res.ok, res.stderr
        assert json.loads(res.stdout)["nsze"] == 32 * 1024 * 1024 // 512
        res = linux_guest.run(f"{py} logpage -p 2 -o json /dev/{dev}", timeout=120)
        assert res.ok, res.stderr
        assert json.loads(res.stdout)["lid"] == 2
        res = linux_guest.run(f"{py} identify nvme9", timeout=120)
        assert res.rc == X.EX_NOINPUT and "nvme9" in res.stderr
    finally:
        linux_guest.run(f"nvme disconnect -n {NQN_A}", timeout=60)
