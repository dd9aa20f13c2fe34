"""FreeBSD ``logpage`` printers, the page registry, hex dumps and JSON."""

import json
import struct

import pytest

from nvmecontrol.cli.render import logpage as render
from nvmecontrol.cli.render.logpage import (
    DEFAULT_SIZE,
    PAGE_PRINTERS,
    format_temp,
    hexdump,
    hexdump_bytes,
    decode_logpage,
    logpage_size,
    render_logpage_help,
)
from nvmecontrol.errors import PeerProtocolError
from nvmecontrol.wire.identify import IdentifyController
from nvmecontrol.wire.logpages import (
    CE_CCC,
    CE_CSUPP,
    CE_LBCC,
    CE_NCC,
    CE_NIC,
    CE_UUID,
    AnaGroupDescriptor,
    AnaLog,
    ChangedNsList,
    CommandEffectsLog,
    ErrorLogEntry,
    FirmwareSlotLog,
    LogPage,
    SmartLog,
    encode_ana_log,
    encode_changed_ns_list,
    encode_cmd_effects_log,
    encode_error_log,
    encode_fw_slot_log,
    encode_smart_log,
)


def render_logpage_text(lid, raw, cdata=None):
    """Decoded where logpage fetches it, then rendered."""
    return render.render_logpage_text(decode_logpage(lid, raw), cdata)


def logpage_to_json(lid, raw):
    return render.logpage_to_json(decode_logpage(lid, raw))


# --- hex dumps --------------------------------------------------------------------


def test_hexdump_dwords_like_freebsd_print_hex():
    data = bytes(range(40))
    assert hexdump(data) == (
        "000: 03020100 07060504 0b0a0908 0f0e0d0c 13121110 17161514 1b1a1918 1f1e1d1c \n"
        "020: 23222120 27262524 \n"
        "\n"
    )


def test_hexdump_offsets_grow_past_three_digits():
    lines = hexdump(bytes(4096 + 32)).splitlines()
    assert lines[0].startswith("000: ") and lines[127].startswith("fe0: ")
    assert lines[128].startswith("1000: ")
    assert len(lines) == 130 and lines[-1] == ""


def test_hexdump_odd_length_falls_back_to_bytes():
    data = bytes(range(18))
    expected = (
        "000: 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f \n"
        "010: 10 11 \n"
    )
    assert hexdump_bytes(data) == expected
    assert hexdump(data) == expected


# --- 01h --------------------------------------------------------------------------

ERROR_TEXT = """\
Error Information Log
=====================
Entry 01
=========
 Error count:          7
 Submission queue ID:  2
 Command ID:           4660
 Status:
  Phase tag:           1
  Status code:         2
  Status code type:    0
  More:                1
  DNR:                 1
 Error location:       296
 LBA:                  3735928559
 Namespace ID:         1
 Vendor specific info: 85
 Transport type:       3
 Command specific info:51966
 Transport specific:   119
Entry 02
=========
 Error count:          6
 Submission queue ID:  0
 Command ID:           0
 Status:
  Phase tag:           0
  Status code:         132
  Status code type:    1
  More:                0
  DNR:                 0
 Error location:       0
 LBA:                  0
 Namespace ID:         0
 Vendor specific info: 0
 Transport type:       0
 Command specific info:0
 Transport specific:   0
Entry 03
=========
 Error count:          4
 Submission queue ID:  1
 Command ID:           0
 Status:
  Phase tag:           0
  Status code:         130
  Status code type:    1
  More:                0
  DNR:                 0
 Error location:       0
 LBA:                  0
 Namespace ID:         0
 Vendor specific info: 0
 Transport type:       0
 Command specific info:0
 Transport specific:   0
"""


def error_page() -> bytes:
    return encode_error_log([
        ErrorLogEntry(error_count=7, sqid=2, cid=0x1234, status=0x6002, phase=1, pel=0x128,
                      lba=0xDEADBEEF, nsid=1, vs=0x55, trtype=3, cs=0xCAFE, ttsi=0x77),
        ErrorLogEntry(error_count=6, status=0x0184),
        ErrorLogEntry(error_count=4, sqid=1, status=0x0182, opc=0x01),
        ErrorLogEntry(error_count=0),
        ErrorLogEntry(error_count=5),  # after the first empty entry: not shown
    ])


def test_error_log_text():
    assert render_logpage_text(LogPage.ERROR, error_page()) == ERROR_TEXT


def test_error_log_empty():
    assert render_logpage_text(1, bytes(64 * 4)) == (
        "Error Information Log\n=====================\nNo error entries found\n"
    )


def test_error_log_json():
    doc = json.loads(json.dumps(logpage_to_json(1, error_page())))
    assert doc["lid"] == 1 and doc["name"] == "Drive Error Log"
    entries = doc["log"]["entries"]
    assert len(entries) == 3
    assert entries[0]["status"] == {"sct": 0, "sc": 2, "dnr": True, "more": True, "crd": 0,
                                    "name": "Invalid Field in Command"}
    assert entries[0]["cid"] == 0x1234 and entries[0]["cs"] == 0xCAFE
    assert entries[1]["status"]["name"] == "Connect Invalid Host"  # admin queue
    # Same SCT 1 code range on an I/O queue: the NVM command set meaning.
    assert entries[2]["status"]["name"] == "Attempted Write to Read Only Range"


# --- 02h --------------------------------------------------------------------------

SMART_TEXT = """\
SMART/Health Information Log
============================
Critical Warning State:         0x05
 Available spare:               1
 Temperature:                   0
 Device reliability:            1
 Read only:                     0
 Volatile memory backup:        0
Temperature:                    310 K, 36.85 C, 98.33 F
Available spare:                100
Available spare threshold:      10
Percentage used:                3
Data units (512,000 byte) read: 18446744073709551621
Data units written:             12345
Host read commands:             678
Host write commands:            910
Controller busy time (minutes): 42
Power cycles:                   17
Power on hours:                 3000
Unsafe shutdowns:               2
Media errors:                   0
No. error info log entries:     170141183460469231731687303715884105729
Warning Temp Composite Time:    11
Error Temp Composite Time:      12
Temperature Sensor 1:           300 K, 26.85 C, 80.33 F
Temperature Sensor 3:           273 K, -0.15 C, 31.73 F
Temperature 1 Transition Count: 1
Temperature 2 Transition Count: 2
Total Time For Temperature 1:   3
Total Time For Temperature 2:   4
"""


def smart() -> SmartLog:
    return SmartLog(
        critical_warning=0x05, temperature=310, avail_spare=100, spare_thresh=10,
        percent_used=3, data_units_read=(1 << 64) + 5, data_units_written=12345,
        host_read_commands=678, host_write_commands=910, controller_busy_time=42,
        power_cycles=17, power_on_hours=3000, unsafe_shutdowns=2, media_errors=0,
        num_err_log_entries=(1 << 127) + 1, warning_temp_time=11, critical_comp_time=12,
        temp_sensor=(300, 0, 273, 0, 0, 0, 0, 0), thm_temp1_trans_count=1,
        thm_temp2_trans_count=2, thm_temp1_total_time=3, thm_temp2_total_time=4,
    )


def test_smart_text():
    assert render_logpage_text(2, encode_smart_log(smart())) == SMART_TEXT


@pytest.mark.parametrize(
    "kelvin, text",
    [(0, "0 K, -273.15 C, -459.67 F"), (301, "301 K, 27.85 C, 82.13 F"),
     (345, "345 K, 71.85 C, 161.33 F")],
)
def test_format_temp(kelvin, text):
    assert format_temp(kelvin) == text


def test_smart_json():
    doc = json.loads(json.dumps(logpage_to_json(2, encode_smart_log(smart()))))["log"]
    assert doc["critical_warning"] == 5 and doc["temperature"] == 310
    assert doc["data_units_read"] == (1 << 64) + 5
    assert doc["temp_sensor"] == [300, 0, 273, 0, 0, 0, 0, 0]


def test_short_page_is_a_protocol_error():
    with pytest.raises(PeerProtocolError):
        render_logpage_text(2, bytes(100))


# --- 03h --------------------------------------------------------------------------


def fw_page() -> bytes:
    return encode_fw_slot_log(FirmwareSlotLog(afi=0x02, frs=("1.0", "2.1.7", "", "\x01abc", "", "", "")))


def test_fw_text_uses_frmw_slot_count():
    cdata = IdentifyController(oacs=0x4, frmw=(4 << 1) | 1)
    assert render_logpage_text(3, fw_page(), cdata) == (
        "Firmware Slot Log\n"
        "=================\n"
        "Slot 1: [Inactive] 1.0\n"
        "Slot 2: [  Active] 2.1.7\n"
        "Slot 3: Empty\n"
        "Slot 4: [Inactive] 2020202063626101\n"  # bytes 01 61 62 63 20.. as LE u64
    )


def test_fw_text_one_slot_without_firmware_commands():
    assert render_logpage_text(3, fw_page(), IdentifyController(oacs=0, frmw=0xE)) == (
        "Firmware Slot Log\n=================\nSlot 1: [Inactive] 1.0\n"
    )
    assert render_logpage_text(3, fw_page()).count("\nSlot ") == 7  # no Identify data


def test_fw_json():
    doc = logpage_to_json(3, fw_page())["log"]
    assert doc == {"afi": 2, "active_slot": 2, "next_slot": 0,
                   "frs": ["1.0", "2.1.7", "", "?abc", "", "", ""]}


# --- 04h --------------------------------------------------------------------------


def test_changed_ns_text_and_json():
    page = encode_changed_ns_list([1, 0x20, 0xABCDEF])
    assert render_logpage_text(4, page) == (
        "Changed Namespace List\n======================\n00000001\n00000020\n00abcdef\n"
    )
    assert logpage_to_json(4, page)["log"] == {"overflow": False, "nsids": [1, 0x20, 0xABCDEF]}
    over = encode_changed_ns_list(ChangedNsList(overflow=True))
    assert render_logpage_text(4, over).endswith("======================\nffffffff\n")
    assert logpage_to_json(4, over)["log"] == {"overflow": True, "nsids": []}


# --- 05h --------------------------------------------------------------------------


def effects_page() -> bytes:
    acs = [0] * 256
    iocs = [0] * 256
    acs[0x06] = CE_CSUPP
    acs[0x80] = CE_CSUPP | CE_LBCC | CE_NCC | CE_NIC | CE_CCC | (1 << 16)
    acs[0x81] = CE_LBCC  # not supported: not listed
    iocs[0x01] = CE_CSUPP | CE_LBCC | (2 << 16) | CE_UUID
    iocs[0xFF] = CE_CSUPP
    return encode_cmd_effects_log(CommandEffectsLog(tuple(acs), tuple(iocs)))


def test_effects_text():
    assert render_logpage_text(5, effects_page()) == (
        "Commands Supported and Effects\n"
        "==============================\n"
        "  Command\tLBCC\tNCC\tNIC\tCCC\tCSE\tUUID\n"
        "Admin\t06\tNo\tNo\tNo\tNo\t0\tNo\n"
        "Admin\t80\tYes\tYes\tYes\tYes\t1\tNo\n"
        "I/O\t01\tYes\tNo\tNo\tNo\t2\tYes\n"
        "I/O\tff\tNo\tNo\tNo\tNo\t0\tNo\n"
    )


def test_effects_json():
    doc = json.loads(json.dumps(logpage_to_json(5, effects_page())))["log"]
    assert [e["opcode"] for e in doc["acs"]] == [0x06, 0x80]
    assert doc["iocs"][0] == {"opcode": 1, "effects": 0xA0003, "lbcc": True, "ncc": False,
                              "nic": False, "ccc": False, "cse": 2, "uuid": True}


# --- 0Ch --------------------------------------------------------------------------


def ana_page() -> bytes:
    return encode_ana_log(AnaLog(chgcnt=5, groups=[
        AnaGroupDescriptor(1, 3, 0x1, [1, 2]),
        AnaGroupDescriptor(12, 4, 0x4, []),
        AnaGroupDescriptor(2, 0, 0x9, [3]),
    ]))


def test_ana_text():
    assert render_logpage_text(0x0C, ana_page()) == (
        "Asymmetric Namespace Access Log\n"
        "===============================\n"
        "Change count:         5\n"
        "Number of groups:     3\n"
        "Group 1\n"
        "=======\n"
        " ANA state:           Optimized\n"
        " Change count:        3\n"
        " Namespaces:          2\n"
        "  00000001\n"
        "  00000002\n"
        "Group 12\n"
        "========\n"
        " ANA state:           Persistent Loss\n"
        " Change count:        4\n"
        " Namespaces:          0\n"
        "Group 2\n"
        "=======\n"
        " ANA state:           0x09\n"
        " Change count:        0\n"
        " Namespaces:          1\n"
        "  00000003\n"
    )


def test_ana_json():
    doc = json.loads(json.dumps(logpage_to_json(0x0C, ana_page())))
    assert doc["name"] == "Asymmetric Namespace Access"
    log = doc["log"]
    assert log["chgcnt"] == 5 and log["ngrps"] == 3
    assert log["groups"][0] == {"grpid": 1, "chgcnt": 3, "state": "optimized", "nnsids": 2,
                                "nsids": [1, 2]}
    assert log["groups"][1]["state"] == "persistent-loss"
    assert log["groups"][2]["state"] == 9


# --- registry -----------------------------------------------------------------------


def test_registry_size_rules():
    cdata = IdentifyController(elpe=3, nanagrpid=4, mnan=0, nn=10)
    assert logpage_size(LogPage.ERROR, cdata) == 4 * 64
    assert logpage_size(LogPage.ERROR) == 64
    assert logpage_size(LogPage.SMART) == 512
    assert logpage_size(LogPage.FW_SLOT) == 512
    assert logpage_size(LogPage.CHANGED_NS) == 4096
    assert logpage_size(LogPage.CMD_EFFECTS) == 4096
    assert logpage_size(LogPage.DEVICE_SELF_TEST) == 564
    assert logpage_size(LogPage.ANA, cdata) == 16 + 4 * 32 + 4 * 10
    assert logpage_size(0xC0) == DEFAULT_SIZE == 4096


def test_registry_entries_have_printers_where_freebsd_does():
    for page in (1, 2, 3, 4, 5, 0x0C):
        assert PAGE_PRINTERS[page].text is not None and PAGE_PRINTERS[page].json is not None
    assert PAGE_PRINTERS[6].text is None
    assert PAGE_PRINTERS[1].name == "Drive Error Log"
    assert PAGE_PRINTERS[2].name == "Health/SMART Data"


def test_pages_without_printer_are_hex_dumped():
    data = bytes(range(32))
    assert render_logpage_text(0x06, data) == hexdump(data)
    assert render_logpage_text(0xC2, data) == hexdump(data)
    doc = logpage_to_json(0xC2, data)
    assert doc == {"lid": 0xC2, "name": None, "data": data.hex()}
    assert logpage_to_json(0x06, b"\x01\x02")["data"] == "0102"


def test_help_listing():
    text = render_logpage_help()
    lines = text.splitlines()
    assert lines[0] == ""
    assert lines[1] == "Page     Vendor     Page Name"
    assert lines[2] == "-------- ---------- ----------"
    assert lines[3] == "0x01     -          Drive Error Log"
    assert "0x0c     -          Asymmetric Namespace Access" in lines
    assert lines[-1] == "0x81     -          Sanitize Status"


def test_smart_page_struct_sanity():
    # The golden SMART page used above places the temperature at byte 1.
    assert struct.unpack_from("<H", encode_smart_log(smart()), 1)[0] == 310
