"""Kernel controllers and namespaces read from fake sysroots laid out like real ones.

The trees copy what Linux 6.12 shows (Debian linux-image-6.12-amd64, nvme-tcp
against nvmet): class entries are symlinks into /sys/devices, fabrics
controllers hang under /sys/devices/virtual/nvme-fabrics/ctl, subsystems
under /sys/devices/virtual/nvme-subsystem, /sys/block links to every disk.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nvmecontrol.backends.linux_sysfs import Sysfs, parse_address
from nvmecontrol.nqn import DISCOVERY_NQN

SUBNQN = "nqn.2014-08.org.example:sub1"
HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:3d39c2a4-5e1f-4b8e-9a1c-0f6e2d7b8c90"
HOSTID = "3d39c2a4-5e1f-4b8e-9a1c-0f6e2d7b8c90"
FABRICS = "sys/devices/virtual/nvme-fabrics/ctl"
SUBSYS = "sys/devices/virtual/nvme-subsystem"


def files(d: Path, attrs: dict) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for k, v in attrs.items():
        p = d / k
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"{v}\n" if v is not None else "")


def link(root: Path, at: str, to: str) -> None:
    p = root / at
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.is_symlink():
        return
    os.symlink(os.path.relpath(root / to, p.parent), p)


def fabrics_ctrl(root: Path, inst: int, *, subnqn=SUBNQN, traddr="10.0.2.2", trsvcid="4420",
                 state="live", cntlid=1, queue_count=2, sqsize=127, kato=120,
                 reconnect_delay="10", ctrl_loss_tmo="600", cntrltype="io") -> Path:
    d = root / FABRICS / f"nvme{inst}"
    files(d, {
        "address": f"traddr={traddr},trsvcid={trsvcid},src_addr=10.0.2.15",
        "cntlid": cntlid, "cntrltype": cntrltype, "ctrl_loss_tmo": ctrl_loss_tmo,
        "dctype": "none", "delete_controller": None, "dev": f"239:{inst}",
        "fast_io_fail_tmo": "off", "firmware_rev": "6.12.117", "hostid": HOSTID,
        "hostnqn": HOSTNQN, "kato": kato, "model": "Linux".ljust(40), "numa_node": -1,
        "queue_count": queue_count, "reconnect_delay": reconnect_delay,
        "rescan_controller": None, "reset_controller": None, "serial": "b3f1e0c6a5d4e2f1",
        "sqsize": sqsize, "state": state, "subsysnqn": subnqn, "transport": "tcp",
        "uevent": f"MAJOR=239\nMINOR={inst}\nDEVNAME=nvme{inst}",
    })
    link(root, f"sys/class/nvme/nvme{inst}", f"{FABRICS}/nvme{inst}")
    return d


def subsystem(root: Path, inst: int, subnqn=SUBNQN) -> Path:
    d = root / SUBSYS / f"nvme-subsys{inst}"
    files(d, {"subsysnqn": subnqn, "model": "Linux".ljust(40), "iopolicy": "numa",
              "subsystype": "nvm", "firmware_rev": "6.12.117", "serial": "b3f1e0c6a5d4e2f1"})
    link(root, f"sys/class/nvme-subsystem/nvme-subsys{inst}", f"{SUBSYS}/nvme-subsys{inst}")
    return d


def disk(root: Path, where: Path, name: str, *, nsid: int, sectors: int, lba: int = 512) -> None:
    files(where / name, {"nsid": nsid, "size": sectors, "queue/logical_block_size": lba,
                         "queue/physical_block_size": lba, "wwid": f"uuid.{nsid:08x}",
                         "uevent": f"DEVNAME={name}\nDEVTYPE=disk"})
    link(root, f"sys/block/{name}", str((where / name).relative_to(root)))


def multipath_path(root: Path, subsys_inst: int, ctrl_inst: int, head: int, *, nsid: int,
                   sectors: int, lba: int = 512) -> None:
    """A shared namespace with native multipath: hidden path plus head disk."""
    ctrl_dir = root / FABRICS / f"nvme{ctrl_inst}"
    disk(root, ctrl_dir, f"nvme{subsys_inst}c{ctrl_inst}n{head}", nsid=nsid, sectors=sectors, lba=lba)
    files(ctrl_dir / f"nvme{subsys_inst}c{ctrl_inst}n{head}", {"ana_state": "optimized"})
    files(ctrl_dir / f"ng{ctrl_inst}n{head}", {"dev": "241:0"})  # the per-path char device
    sub = root / SUBSYS / f"nvme-subsys{subsys_inst}"
    link(root, f"{SUBSYS}/nvme-subsys{subsys_inst}/nvme{ctrl_inst}", f"{FABRICS}/nvme{ctrl_inst}")
    if not (sub / f"nvme{subsys_inst}n{head}").exists():
        disk(root, sub, f"nvme{subsys_inst}n{head}", nsid=nsid, sectors=sectors, lba=lba)
        files(sub / f"ng{subsys_inst}n{head}", {"dev": "241:1"})


def pcie_ctrl(root: Path, inst: int) -> None:
    dev = f"sys/devices/pci0000:00/0000:00:04.0/nvme/nvme{inst}"
    files(root / dev, {"address": "0000:00:04.0", "cntlid": 0, "firmware_rev": "1.0",
                       "model": "QEMU NVMe Ctrl".ljust(40), "numa_node": -1, "queue_count": 3,
                       "sqsize": 1023, "state": "live", "subsysnqn": "nqn.2019-08.org.qemu:deadbeef",
                       "transport": "pcie", "kato": 0, "reset_controller": None,
                       "rescan_controller": None, "serial": "deadbeef"})
    link(root, f"sys/class/nvme/nvme{inst}", dev)
    # Single-controller PCIe subsystem: no head disk, the namespace is the controller's child.
    disk(root, root / dev, f"nvme{inst}n1", nsid=1, sectors=2097152)


@pytest.fixture
def multipath_root(tmp_path) -> Path:
    """Two paths to one subsystem, a PCIe drive, a persistent discovery controller."""
    root = tmp_path
    subsystem(root, 0)
    fabrics_ctrl(root, 0)
    multipath_path(root, 0, 0, 1, nsid=1, sectors=32768)
    multipath_path(root, 0, 0, 2, nsid=5, sectors=8192, lba=4096)  # head 2 is NSID 5
    pcie_ctrl(root, 1)
    subsystem(root, 1, "nqn.2019-08.org.qemu:deadbeef")
    fabrics_ctrl(root, 2, traddr="10.0.3.2", cntlid=2)
    multipath_path(root, 0, 2, 1, nsid=1, sectors=32768)
    multipath_path(root, 0, 2, 2, nsid=5, sectors=8192, lba=4096)
    subsystem(root, 3, DISCOVERY_NQN)
    fabrics_ctrl(root, 10, subnqn=DISCOVERY_NQN, trsvcid="8009", queue_count=1, sqsize=31,
                 kato=0, cntrltype="discovery", ctrl_loss_tmo="off")
    return root


# -- address --

@pytest.mark.parametrize("text, want", [
    ("traddr=10.0.2.2,trsvcid=4420,src_addr=10.0.2.15",
     {"traddr": "10.0.2.2", "trsvcid": "4420", "src_addr": "10.0.2.15"}),
    ("traddr=fe80::1,trsvcid=4420,host_iface=eth0,src_addr=fe80::2",
     {"traddr": "fe80::1", "trsvcid": "4420", "host_iface": "eth0", "src_addr": "fe80::2"}),
    ("traddr=10.0.2.2,trsvcid=4420", {"traddr": "10.0.2.2", "trsvcid": "4420"}),
    ("0000:00:04.0", {"traddr": "0000:00:04.0"}),
    ("", {}),
])
def test_parse_address(text, want):
    assert parse_address(text) == want


# -- enumeration --

def test_controllers_sorted_by_instance(multipath_root):
    names = [c.name for c in Sysfs(str(multipath_root)).controllers()]
    assert names == ["nvme0", "nvme1", "nvme2", "nvme10"]


def test_fabrics_controller_with_multipath_namespaces(multipath_root):
    c = Sysfs(str(multipath_root)).controller("nvme0")
    assert (c.backend, c.transport, c.traddr, c.trsvcid) == ("kernel", "tcp", "10.0.2.2", "4420")
    assert (c.subnqn, c.hostnqn, c.cntlid, c.state, c.connected) == (SUBNQN, HOSTNQN, 1, "live", True)
    assert c.model == "Linux"  # the kernel pads it with spaces
    assert [(n.name, n.nsid, n.size_bytes, n.lba_size, n.path) for n in c.namespaces] == [
        ("nvme0n1", 1, 32768 * 512, 512, "/dev/nvme0n1"),
        ("nvme0n2", 5, 8192 * 512, 4096, "/dev/nvme0n2"),
    ]


def test_params_rebuilt_from_sysfs(multipath_root):
    p = Sysfs(str(multipath_root)).controller("nvme0").params
    assert (p.traddr, p.trsvcid, p.subnqn, p.hostnqn, p.hostid, p.transport) == \
        ("10.0.2.2", "4420", SUBNQN, HOSTNQN, HOSTID, "tcp")
    assert (p.num_io_queues, p.queue_size, p.kato_s, p.reconnect_delay_s, p.ctrl_loss_tmo_s) == \
        (1, 128, 120, 10, 600)


def test_discovery_controller(multipath_root):
    c = Sysfs(str(multipath_root)).controller("nvme10")
    assert c.namespaces == []
    assert (c.params.num_io_queues, c.params.queue_size, c.params.kato_s) == (0, 32, 0)
    assert c.params.ctrl_loss_tmo_s == -1  # "off"


def test_pcie_controller_has_no_params(multipath_root):
    c = Sysfs(str(multipath_root)).controller("nvme1")
    assert (c.transport, c.traddr, c.trsvcid, c.hostnqn, c.params) == \
        ("pcie", "0000:00:04.0", "", "", None)
    assert c.model == "QEMU NVMe Ctrl"
    assert [(n.name, n.nsid, n.size_bytes) for n in c.namespaces] == [("nvme1n1", 1, 1 << 30)]


def test_second_path_shows_the_same_head_disks(multipath_root):
    c = Sysfs(str(multipath_root)).controller("nvme2")
    assert [n.name for n in c.namespaces] == ["nvme0n1", "nvme0n2"]
    assert c.traddr == "10.0.3.2"


def test_controllers_of_namespace_and_subsystem(multipath_root):
    s = Sysfs(str(multipath_root))
    assert s.controllers_of_namespace("nvme0n1") == ["nvme0", "nvme2"]
    assert s.controllers_of_namespace("nvme1n1") == ["nvme1"]
    assert s.controllers_of_namespace("nvme9n1") == []
    assert s.controllers_of_subsystem(SUBNQN) == ["nvme0", "nvme2"]
    assert s.controllers_of_subsystem(DISCOVERY_NQN) == ["nvme10"]


def test_state_values_pass_through(tmp_path):
    for i, state in enumerate(["connecting", "resetting", "deleting (no IO)", "dead", "new"]):
        fabrics_ctrl(tmp_path, i, state=state)
    infos = Sysfs(str(tmp_path)).controllers()
    assert [(c.state, c.connected) for c in infos] == [
        ("connecting", False), ("resetting", False), ("deleting (no IO)", False),
        ("dead", False), ("new", False)]


def test_multipath_off_namespaces_are_children_of_the_controller(tmp_path):
    """nvme_core.multipath=N (or a 6.1 kernel built without it): nvme<ctrl>n<k>."""
    d = fabrics_ctrl(tmp_path, 0)
    disk(tmp_path, d, "nvme0n1", nsid=1, sectors=2048)
    disk(tmp_path, d, "nvme0n2", nsid=2, sectors=4096)
    c = Sysfs(str(tmp_path)).controller("nvme0")
    assert [(n.name, n.nsid, n.size_bytes) for n in c.namespaces] == [
        ("nvme0n1", 1, 2048 * 512), ("nvme0n2", 2, 4096 * 512)]


def test_private_namespace_under_multipath_uses_the_subsystem_instance(tmp_path):
    """No head disk (CMIC without multi-controller): nvme<subsys>n<k> under the controller."""
    d = fabrics_ctrl(tmp_path, 5)
    disk(tmp_path, d, "nvme4n1", nsid=1, sectors=2048)
    s = Sysfs(str(tmp_path))
    assert [n.name for n in s.controller("nvme5").namespaces] == ["nvme4n1"]
    assert s.controllers_of_namespace("nvme4n1") == ["nvme5"]


def test_a_path_whose_head_is_not_live_yet_is_skipped(tmp_path):
    d = fabrics_ctrl(tmp_path, 0)
    disk(tmp_path, d, "nvme0c0n1", nsid=1, sectors=2048)
    assert Sysfs(str(tmp_path)).controller("nvme0").namespaces == []


def test_missing_optional_attributes_use_defaults(tmp_path):
    d = fabrics_ctrl(tmp_path, 0)
    for attr in ("kato", "reconnect_delay", "ctrl_loss_tmo", "sqsize"):
        (d / attr).unlink()
    nd = d / "nvme0n1"
    files(nd, {"size": 100})  # no nsid, no queue/
    link(tmp_path, "sys/block/nvme0n1", str(nd.relative_to(tmp_path)))
    c = Sysfs(str(tmp_path)).controller("nvme0")
    assert (c.params.kato_s, c.params.reconnect_delay_s, c.params.ctrl_loss_tmo_s,
            c.params.queue_size) == (120, 10, 600, 0)
    assert [(n.nsid, n.lba_size) for n in c.namespaces] == [(1, 512)]


def test_a_vanished_controller_is_skipped(tmp_path):
    fabrics_ctrl(tmp_path, 0)
    link(tmp_path, "sys/class/nvme/nvme3", f"{FABRICS}/nvme3")  # dangling: deleted meanwhile
    s = Sysfs(str(tmp_path))
    assert [c.name for c in s.controllers()] == ["nvme0"]
    assert s.controller("nvme3") is None


def test_no_nvme_class_means_no_controllers(tmp_path):
    assert Sysfs(str(tmp_path)).controllers() == []


def test_write_goes_to_the_attribute(multipath_root):
    s = Sysfs(str(multipath_root))
    s.write("nvme0", "delete_controller")
    assert (multipath_root / FABRICS / "nvme0" / "delete_controller").read_text() == "1"
    with pytest.raises(FileNotFoundError):
        s.write("nvme7", "delete_controller")
