"""FreeBSD ``identify`` text for controllers and namespaces, and their JSON."""

import json

from nvmecontrol.cli.render.identify import (
    controller_to_json,
    namespace_to_json,
    render_controller_text,
    render_fabrics_attributes,
    render_namespace_text,
)
from nvmecontrol.wire.identify import (
    IdentifyController,
    IdentifyNamespace,
    LbaFormat,
    decode_identify_controller,
    decode_identify_namespace,
    encode_identify_controller,
    encode_identify_namespace,
)

SUBNQN = "nqn.2014-08.org.nvmexpress:uuid:0d5b7b8c-1b2a-4f7e-9c1d-3e0a2b4c5d6e"

# FreeBSD Journal, "NVMe over Fabrics in FreeBSD" (identify of a Linux target).
JOURNAL_FABRICS = """\

Fabrics Attributes
==================
I/O Command Capsule Size:    16448 bytes
I/O Response Capsule Size:   16 bytes
In Capsule Data Offset:      0 bytes
Controller Model:            Dynamic
Max SGL Descriptors:         1
Disconnect of I/O Queues:    Not Supported
"""


def linux_like_controller() -> IdentifyController:
    return IdentifyController(
        vid=0x1B36, ssvid=0x1AF4, sn="a1b2c3d4e5f6", mn="Linux", fr="6.8.0-45", rab=6,
        ieee=0x00AF8C, cmic=0x0B, mdts=5, cntlid=0x11, ver=0x00010400, ctratt=0x41,
        cntrltype=1, oacs=0x0006, acl=3, aerl=3, frmw=0x03, lpa=0x07, elpe=127, npss=0,
        tnvmcap=(0x99 << 64) | 0x1122334455667788, fwug=1, kas=50, sanicap=0x80000003,
        sqes=0x66, cqes=0x44, maxcmd=128, nn=1024, oncs=0x5D, fuses=1, fna=0x05, vwc=0x07,
        subnqn=SUBNQN, ioccsz=1028, iorcsz=1, icdoff=0, fcatt=0, msdbd=1, ofcs=1,
    )


EXPECTED_CONTROLLER = """\
Controller Capabilities/Features
================================
Vendor ID:                   1b36
Subsystem Vendor ID:         1af4
Serial Number:               a1b2c3d4e5f6
Model Number:                Linux
Firmware Version:            6.8.0-45
Recommended Arb Burst:       6
IEEE OUI Identifier:         00 af 8c
Multi-Path I/O Capabilities: Asymmetric, Multiple controllers, Multiple ports
Max Data Transfer Size:      131072 bytes
Sanitize Crypto Erase:       Supported
Sanitize Block Erase:        Supported
Sanitize Overwrite:          Not Supported
Sanitize NDI:                Not Supported
Sanitize NODMMAS:            Yes
Controller ID:               0x0011
Version:                     1.4.0
Traffic Based Keep Alive:    Supported
Controller Type:             I/O Controller
Keep Alive Timer             5000 ms granularity
Maximum Outstanding Commands 128

Admin Command Set Attributes
============================
Security Send/Receive:       Not Supported
Format NVM:                  Supported
Firmware Activate/Download:  Supported
Namespace Management:        Not Supported
Device Self-test:            Not Supported
Directives:                  Not Supported
NVMe-MI Send/Receive:        Not Supported
Virtualization Management:   Not Supported
Doorbell Buffer Config:      Not Supported
Get LBA Status:              Not Supported
Sanitize:                    crypto, block, 
Abort Command Limit:         4
Async Event Request Limit:   4
Number of Firmware Slots:    1
Firmware Slot 1 Read-Only:   Yes
Per-Namespace SMART Log:     Yes
Error Log Page Entries:      128
Number of Power States:      1
Total NVM Capacity:          2823586448893997905800 bytes
Unallocated NVM Capacity:    0 bytes
Firmware Update Granularity: 01 (4096 bytes)
Host Buffer Preferred Size:  0 bytes
Host Buffer Minimum Size:    0 bytes

NVM Command Set Attributes
==========================
Submission Queue Entry Size
  Max:                       64
  Min:                       64
Completion Queue Entry Size
  Max:                       16
  Min:                       16
Number of Namespaces:        1024
Compare Command:             Supported
Write Uncorrectable Command: Not Supported
Dataset Management Command:  Supported
Write Zeroes Command:        Supported
Save Features:               Supported
Reservations:                Not Supported
Timestamp feature:           Supported
Verify feature:              Not Supported
Fused Operation Support:     Compare and Write
Format NVM Attributes:       Crypto Erase, Per-NS Erase, All-NVM Format
Volatile Write Cache:        Present, flush all

NVM Subsystem Name:          nqn.2014-08.org.nvmexpress:uuid:0d5b7b8c-1b2a-4f7e-9c1d-3e0a2b4c5d6e

Fabrics Attributes
==================
I/O Command Capsule Size:    16448 bytes
I/O Response Capsule Size:   16 bytes
In Capsule Data Offset:      0 bytes
Controller Model:            Dynamic
Max SGL Descriptors:         1
Disconnect of I/O Queues:    Supported
"""


def test_full_controller_text():
    c = decode_identify_controller(encode_identify_controller(linux_like_controller()))
    assert render_controller_text(c) == EXPECTED_CONTROLLER


def test_journal_fabrics_block_exactly():
    c = IdentifyController(ver=0x00010300, ioccsz=1028, iorcsz=1, icdoff=0, fcatt=0,
                           msdbd=1, ofcs=0)
    assert render_fabrics_attributes(c) == JOURNAL_FABRICS
    assert render_controller_text(c).endswith(JOURNAL_FABRICS)


def test_fabrics_block_only_when_ioccsz_nonzero():
    c = linux_like_controller()
    c.ioccsz = 0
    text = render_controller_text(c)
    assert "Fabrics Attributes" not in text
    assert text.endswith("NVM Subsystem Name:          " + SUBNQN + "\n")


def test_fabrics_block_variants():
    c = IdentifyController(ioccsz=4, iorcsz=1, icdoff=1, fcatt=1, msdbd=0, ofcs=1)
    block = render_fabrics_attributes(c)
    assert "I/O Command Capsule Size:    64 bytes\n" in block
    assert "In Capsule Data Offset:      16 bytes\n" in block
    assert "Controller Model:            Static\n" in block
    assert "Max SGL Descriptors:         Unlimited\n" in block
    assert "Disconnect of I/O Queues:    Supported\n" in block


def test_version_gates_capacity_and_subsystem_name():
    c = linux_like_controller()
    c.ver = 0x00010100  # NVMe 1.1: neither line
    text = render_controller_text(c)
    assert "Total NVM Capacity" not in text and "NVM Subsystem Name" not in text
    c.ver = 0x00010200  # 1.2.0: capacity, still no name (needs 1.2.1)
    text = render_controller_text(c)
    assert "Total NVM Capacity" in text and "NVM Subsystem Name" not in text


def test_controller_text_other_values():
    c = IdentifyController(cmic=0x4, mdts=0, cntrltype=2, kas=0, maxcmd=0, fwug=0xFF, sanicap=0,
                           fuses=0, vwc=0x5, hmpre=2, ctratt=0, sn="  Lead\x01\udcff ")
    text = render_controller_text(c)
    for expected in (
        "Multi-Path I/O Capabilities: SR-IOV VF, \n",
        "Max Data Transfer Size:      Unlimited\n",
        "Controller Type:             Discovery Controller\n",
        "Keep Alive Timer             Not Supported\n",
        "Maximum Outstanding Commands Not Specified\n",
        "Traffic Based Keep Alive:    Not Supported\n",
        "Sanitize:                    Not Supported\n",
        "Sanitize NODMMAS:            Undefined\n",
        "Firmware Update Granularity: ff (No Granularity)\n",
        "Host Buffer Preferred Size:  8192 bytes\n",
        "Fused Operation Support:     Not Supported\n",
        "Volatile Write Cache:        Present, no flush all\n",
        "Serial Number:               Lead??\n",
    ):
        assert expected in text, expected
    assert "Controller Type:             7 (Reserved)\n" in render_controller_text(
        IdentifyController(cntrltype=7))
    assert "Controller Type:             Not Reported\n" in render_controller_text(
        IdentifyController())


# --- namespace ----------------------------------------------------------------------

EXPECTED_NAMESPACE = """\
Size:                        2097152 blocks
Capacity:                    2097152 blocks
Utilization:                 1048576 blocks
Thin Provisioning:           Supported
Number of LBA Formats:       3
Current LBA Format:          LBA Format #01 Extended metadata
Metadata Capabilities
  Extended:                  Supported
  Separate:                  Supported
Data Protection Caps:        Last Bytes, First Bytes, Type 3, Type 2, Type 1
Data Protection Settings:    Type 1, First Bytes
Multi-Path I/O Capabilities: May be shared
Reservation Capabilities:    IEKEY13, EX_AC_AR, WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX, PTPL
Format Progress Indicator:   5% remains
Deallocate Logical Block:    Read 00h, Write Zero
Optimal I/O Boundary:        8 blocks
NVM Capacity:                1099511627776 bytes
Preferred Write Granularity: 8 blocks
Preferred Write Alignment:   8 blocks
Preferred Deallocate Granul: 8 blocks
Preferred Deallocate Align:  8 blocks
Optimal Write Size:          16 blocks
Globally Unique Identifier:  00112233445566778899aabbccddeeff
IEEE EUI64:                  0123456789abcdef
LBA Format #00: Data Size:   512  Metadata Size:     0  Performance: Good
LBA Format #01: Data Size:  4096  Metadata Size:     8  Performance: Best
"""


def sample_namespace() -> IdentifyNamespace:
    return IdentifyNamespace(
        nsze=2097152, ncap=2097152, nuse=1048576, nsfeat=0x11, nlbaf=2, flbas=0x11, mc=3,
        dpc=0x1F, dps=0x09, nmic=1, rescap=0xFF, fpi=0x85, dlfeat=0x09, noiob=8,
        nvmcap=1 << 40, npwg=7, npwa=7, npdg=7, npda=7, nows=15,
        nguid=bytes.fromhex("00112233445566778899aabbccddeeff"),
        eui64=bytes.fromhex("0123456789abcdef"),
        # The third format has LBADS 0 and is skipped, as FreeBSD does.
        lbaf=[LbaFormat(0, 9, 2), LbaFormat(8, 12, 0), LbaFormat(0, 0, 0)],
    )


def test_full_namespace_text():
    ns = decode_identify_namespace(encode_identify_namespace(sample_namespace()))
    assert render_namespace_text(ns) == EXPECTED_NAMESPACE


def test_namespace_text_plain():
    ns = IdentifyNamespace(nsze=8, ncap=8, nuse=0, nlbaf=0, lbaf=[LbaFormat(0, 9, 3)],
                           dlfeat=0x12)
    text = render_namespace_text(ns)
    assert "Current LBA Format:          LBA Format #00\n" in text
    assert "Thin Provisioning:           Not Supported\n" in text
    assert "Data Protection Caps:        Not Supported\n" in text
    assert "Data Protection Settings:    Not Enabled\n" in text
    assert "Reservation Capabilities:    Not Supported\n" in text
    assert "Deallocate Logical Block:    Read FFh, Guard CRC\n" in text
    assert "Preferred Write Granularity" not in text
    assert text.endswith("LBA Format #00: Data Size:   512  Metadata Size:     0  Performance: Degraded\n")
    sep = IdentifyNamespace(nlbaf=0, flbas=0, lbaf=[LbaFormat(16, 12, 0)])
    assert "LBA Format #00 Separate metadata\n" in render_namespace_text(sep)


# --- JSON ---------------------------------------------------------------------------


def test_controller_json_parses_back_with_mnemonic_keys():
    doc = json.loads(json.dumps(controller_to_json(linux_like_controller())))
    assert "raw" not in doc
    assert doc["vid"] == 0x1B36 and doc["sn"] == "a1b2c3d4e5f6" and doc["mn"] == "Linux"
    assert doc["subnqn"] == SUBNQN
    assert (doc["ioccsz"], doc["iorcsz"], doc["icdoff"], doc["fcatt"], doc["msdbd"], doc["ofcs"]) == (
        1028, 1, 0, 0, 1, 1)
    assert doc["tnvmcap"] == (0x99 << 64) | 0x1122334455667788
    assert doc["fguid"] == "00" * 16
    for key in ("cmic", "mdts", "cntlid", "ver", "ctratt", "cntrltype", "oacs", "acl", "aerl",
                "frmw", "lpa", "elpe", "npss", "kas", "sqes", "cqes", "maxcmd", "nn", "oncs",
                "fuses", "fna", "vwc", "sgls"):
        assert key in doc, key


def test_controller_json_masks_non_printables():
    doc = controller_to_json(IdentifyController(sn="ab\udcff\x00"))
    assert doc["sn"] == "ab?"
    json.dumps(doc)  # no surrogates left


def test_namespace_json_parses_back():
    doc = json.loads(json.dumps(namespace_to_json(sample_namespace())))
    assert doc["nsze"] == 2097152 and doc["nlbaf"] == 2 and doc["flbas"] == 0x11
    assert doc["nguid"] == "00112233445566778899aabbccddeeff"
    assert doc["eui64"] == "0123456789abcdef"
    assert doc["lbaf"][1] == {"ms": 8, "lbads": 12, "rp": 0}
    assert len(doc["lbaf"]) == 3 and "raw" not in doc
