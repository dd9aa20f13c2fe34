"""Namespace identifiers and ANA states of kernel controllers, from fake sysroots.

The attribute formats are the kernel's (drivers/nvme/host/sysfs.c): nguid
and uuid printed as UUIDs, eui as bytes separated by spaces, each absent
when zero; ana_grpid and ana_state on the per-path disk of each controller.
"""

from __future__ import annotations

from nvmecontrol.backends.linux_sysfs import Sysfs
from nvmecontrol.cli.render.devices import render_topology_text, topology_json

from .test_linux_sysfs import FABRICS, SUBSYS, files, multipath_root

assert multipath_root  # the fixture, imported for this module


def test_identifiers_from_the_head_and_ana_state_per_path(multipath_root):
    root = multipath_root
    files(root / SUBSYS / "nvme-subsys0" / "nvme0n1", {
        "nguid": "00112233-4455-6677-8899-aabbccddeeff",
        "uuid": "0f1e2d3c-4b5a-4697-8877-665544332211",
        "eui": "01 02 03 04 05 06 07 08"})
    files(root / FABRICS / "nvme0" / "nvme0c0n1", {"ana_grpid": 1, "ana_state": "optimized"})
    files(root / FABRICS / "nvme2" / "nvme0c2n1", {"ana_grpid": 1, "ana_state": "inaccessible"})
    sysfs = Sysfs(str(root))
    a, b = sysfs.controller("nvme0"), sysfs.controller("nvme2")
    ns = a.namespaces[0]
    assert (ns.nguid, ns.eui64, ns.uuid) == ("00112233445566778899aabbccddeeff",
                                             "0102030405060708",
                                             "0f1e2d3c-4b5a-4697-8877-665544332211")
    assert (ns.anagrpid, ns.ana_state) == (1, "optimized")
    assert (b.namespaces[0].anagrpid, b.namespaces[0].ana_state) == (1, "inaccessible")
    # nvme0n2 has no identifiers and its paths no ana_grpid: None, not zeros.
    other = a.namespaces[1]
    assert (other.nguid, other.eui64, other.uuid, other.anagrpid) == (None, None, None, None)

    text = render_topology_text([a, b])
    assert (" +- nvme0n1 16MB /dev/nvme0n1 nguid=00112233445566778899aabbccddeeff "
            "eui64=0102030405060708 uuid=0f1e2d3c-4b5a-4697-8877-665544332211 "
            "ana=optimized (group 1)") in text
    assert "ana=inaccessible (group 1)" in text
    paths = topology_json([a, b])["subsystems"][0]["paths"]
    assert [p["namespaces"][0]["ana_state"] for p in paths] == ["optimized", "inaccessible"]
    assert paths[0]["namespaces"][1]["nguid"] is None


def test_all_zero_or_garbled_identifiers_are_none(tmp_path, multipath_root):
    files(multipath_root / SUBSYS / "nvme-subsys0" / "nvme0n1", {
        "nguid": "00000000-0000-0000-0000-000000000000", "eui": "01 02", "uuid": "junk"})
    ns = Sysfs(str(multipath_root)).controller("nvme0").namespaces[0]
    assert (ns.nguid, ns.eui64, ns.uuid) == (None, None, None)
