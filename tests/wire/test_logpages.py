"""nvmecontrol.wire.logpages: golden bytes at the spec offsets, round trips,
short and hostile input."""

import random
import struct

import pytest

from nvmecontrol.errors import LocalProtocolError, PeerProtocolError
from nvmecontrol.wire import logpages as lp
from nvmecontrol.wire.logpages import (
    AnaGroupDescriptor,
    AnaLog,
    AnaState,
    ChangedNsList,
    CommandEffectsLog,
    ErrorLogEntry,
    FirmwareSlotLog,
    LogPage,
    SmartLog,
    ana_log_size,
    decode_ana_log,
    decode_changed_ns_list,
    decode_cmd_effects_log,
    decode_error_log,
    decode_fw_slot_log,
    decode_smart_log,
    encode_ana_log,
    encode_changed_ns_list,
    encode_cmd_effects_log,
    encode_error_log,
    encode_fw_slot_log,
    encode_smart_log,
    error_log_size,
)


def test_log_page_ids_and_sizes():
    assert (LogPage.ERROR, LogPage.SMART, LogPage.FW_SLOT, LogPage.CHANGED_NS,
            LogPage.CMD_EFFECTS, LogPage.ANA, LogPage.DISCOVERY) == (1, 2, 3, 4, 5, 0x0C, 0x70)
    assert LogPage.RESERVATION_NOTIFICATION == 0x80 and LogPage.SANITIZE_STATUS == 0x81
    assert lp.LOG_PAGE_SIZES[LogPage.SMART] == 512
    assert lp.LOG_PAGE_SIZES[LogPage.CMD_EFFECTS] == 4096
    assert error_log_size(63) == 4096


# --- 01h ------------------------------------------------------------------------------


def golden_error_entry(count=7) -> bytes:
    b = bytearray(64)
    struct.pack_into("<Q", b, 0, count)  # error count
    struct.pack_into("<HH", b, 8, 2, 0x1234)  # SQID, CID
    struct.pack_into("<H", b, 12, (0x4002 << 1) | 1)  # status field: DNR Invalid Field, phase 1
    struct.pack_into("<H", b, 14, 0x0128)  # parameter error location
    struct.pack_into("<Q", b, 16, 0xDEADBEEF)  # LBA
    struct.pack_into("<I", b, 24, 1)  # NSID
    b[28], b[29], b[30], b[31] = 0x55, 3, 0, 0x02  # VS, TRTYPE, CSI, opcode
    struct.pack_into("<Q", b, 32, 0xCAFE)  # command specific information
    struct.pack_into("<H", b, 40, 0x77)  # transport type specific
    b[63] = 1  # log page version
    return bytes(b)


def test_error_entry_golden():
    (e,) = decode_error_log(golden_error_entry())
    assert e == ErrorLogEntry(error_count=7, sqid=2, cid=0x1234, status=0x4002, phase=1,
                              pel=0x128, lba=0xDEADBEEF, nsid=1, vs=0x55, trtype=3, csi=0,
                              opc=2, cs=0xCAFE, ttsi=0x77, lpv=1)
    assert encode_error_log([e]) == golden_error_entry()


def test_error_log_many_entries_and_padding():
    page = golden_error_entry(9) + golden_error_entry(8) + bytes(64 * 2) + b"xyz"
    entries = decode_error_log(page)
    assert [e.error_count for e in entries] == [9, 8, 0, 0]  # trailing 3 bytes ignored
    assert encode_error_log(entries[:2], nentries=4) == page[:256]


def test_error_log_short_and_bad_encode():
    with pytest.raises(PeerProtocolError, match="Error Information"):
        decode_error_log(bytes(63))
    with pytest.raises(LocalProtocolError):
        encode_error_log([ErrorLogEntry(status=0x8000)])
    with pytest.raises(LocalProtocolError):
        encode_error_log([ErrorLogEntry()] * 2, nentries=1)
    with pytest.raises(LocalProtocolError):
        encode_error_log([ErrorLogEntry(sqid=0x10000)])


# --- 02h ------------------------------------------------------------------------------


def golden_smart() -> bytes:
    b = bytearray(512)
    b[0] = 0x05  # critical warning: spare + reliability
    struct.pack_into("<H", b, 1, 310)  # composite temperature, unaligned
    b[3], b[4], b[5], b[6] = 100, 10, 3, 0
    counters = [
        (1 << 64) + 5,  # data units read: needs the high 64 bits
        12345, 678, 910, 42, 17, 3000, 2, 0, (1 << 127) + 1,
    ]
    for i, v in enumerate(counters):
        struct.pack_into("<QQ", b, 32 + 16 * i, v & (2**64 - 1), v >> 64)
    struct.pack_into("<II", b, 192, 11, 12)  # warning / critical composite time
    struct.pack_into("<8H", b, 200, 300, 0, 305, 0, 0, 0, 0, 0)
    struct.pack_into("<IIII", b, 216, 1, 2, 3, 4)
    return bytes(b)


def test_smart_golden():
    h = decode_smart_log(golden_smart())
    assert (h.critical_warning, h.temperature, h.avail_spare, h.spare_thresh, h.percent_used) == (
        5, 310, 100, 10, 3)
    assert h.data_units_read == (1 << 64) + 5
    assert h.data_units_written == 12345
    assert (h.host_read_commands, h.host_write_commands, h.controller_busy_time) == (678, 910, 42)
    assert (h.power_cycles, h.power_on_hours, h.unsafe_shutdowns, h.media_errors) == (17, 3000, 2, 0)
    assert h.num_err_log_entries == (1 << 127) + 1
    assert (h.warning_temp_time, h.critical_comp_time) == (11, 12)
    assert h.temp_sensor == (300, 0, 305, 0, 0, 0, 0, 0)
    assert (h.thm_temp1_trans_count, h.thm_temp2_trans_count,
            h.thm_temp1_total_time, h.thm_temp2_total_time) == (1, 2, 3, 4)
    assert encode_smart_log(h) == golden_smart()


def test_smart_encode_rejects():
    with pytest.raises(LocalProtocolError):
        encode_smart_log(SmartLog(media_errors=1 << 128))
    with pytest.raises(LocalProtocolError):
        encode_smart_log(SmartLog(temp_sensor=(1, 2)))
    with pytest.raises(LocalProtocolError):
        encode_smart_log(SmartLog(temperature=70000))
    with pytest.raises(PeerProtocolError, match="SMART"):
        decode_smart_log(bytes(511))


# --- 03h ------------------------------------------------------------------------------


def golden_fw() -> bytes:
    b = bytearray(512)
    b[0] = 0x12  # AFI: active slot 2, next reset slot 1
    b[8:16] = b"1.0     "
    b[16:24] = b"2.1.7   "
    return bytes(b)


def test_fw_slot_golden():
    fw = decode_fw_slot_log(golden_fw())
    assert fw.afi == 0x12 and fw.active_slot == 2 and fw.next_slot == 1
    assert fw.frs == ("1.0", "2.1.7", "", "", "", "", "")
    assert encode_fw_slot_log(fw) == golden_fw()


def test_fw_slot_encode_rejects():
    with pytest.raises(LocalProtocolError):
        encode_fw_slot_log(FirmwareSlotLog(frs=("123456789",) + ("",) * 6))
    with pytest.raises(LocalProtocolError):
        encode_fw_slot_log(FirmwareSlotLog(frs=("1",)))
    with pytest.raises(PeerProtocolError):
        decode_fw_slot_log(bytes(100))


# --- 04h ------------------------------------------------------------------------------


def test_changed_ns_list_golden():
    b = bytearray(4096)
    struct.pack_into("<4I", b, 0, 1, 4, 0, 8)  # 8 after the zero is ignored
    assert decode_changed_ns_list(bytes(b)) == ChangedNsList([1, 4], False)
    assert encode_changed_ns_list([1, 4]) == bytes(b[:8]) + bytes(4088)


def test_changed_ns_list_overflow_rule():
    b = bytearray(4096)
    struct.pack_into("<I", b, 0, 0xFFFFFFFF)
    assert decode_changed_ns_list(bytes(b)) == ChangedNsList([], True)
    assert encode_changed_ns_list(list(range(1, 1026))) == bytes(b)  # 1025 NSIDs
    assert encode_changed_ns_list(ChangedNsList(overflow=True)) == bytes(b)
    full = encode_changed_ns_list(list(range(1, 1025)))  # exactly 1024 still fit
    assert decode_changed_ns_list(full).nsids == list(range(1, 1025))


def test_changed_ns_list_rejects():
    with pytest.raises(LocalProtocolError):
        encode_changed_ns_list([0])
    with pytest.raises(PeerProtocolError):
        decode_changed_ns_list(bytes(4092))


# --- 05h ------------------------------------------------------------------------------


def test_cmd_effects_golden():
    b = bytearray(4096)
    struct.pack_into("<I", b, 4 * 0x06, lp.CE_CSUPP)  # Identify
    struct.pack_into("<I", b, 4 * 0x80, lp.CE_CSUPP | lp.CE_LBCC | lp.CE_NCC | lp.CE_NIC
                     | (1 << lp.CE_CSE_SHIFT))  # Format NVM
    struct.pack_into("<I", b, 1024 + 4 * 0x01, lp.CE_CSUPP | lp.CE_LBCC)  # Write
    struct.pack_into("<I", b, 1024 + 4 * 0xFF, lp.CE_CSUPP | lp.CE_UUID)
    ce = decode_cmd_effects_log(bytes(b))
    assert ce.acs[0x06] == 1 and ce.acs[0x80] == 0x1000F and ce.acs[0x02] == 0
    assert ce.iocs[0x01] == 3 and ce.iocs[0xFF] == (1 | 1 << 19)
    assert encode_cmd_effects_log(ce) == bytes(b)
    assert (lp.CE_LBCC, lp.CE_NCC, lp.CE_NIC, lp.CE_CCC, lp.CE_UUID) == (2, 4, 8, 16, 1 << 19)


def test_cmd_effects_rejects():
    with pytest.raises(LocalProtocolError):
        encode_cmd_effects_log(CommandEffectsLog(acs=(0,) * 255))
    with pytest.raises(PeerProtocolError):
        decode_cmd_effects_log(bytes(2047))


# --- 0Ch ------------------------------------------------------------------------------


def golden_ana() -> bytes:
    b = bytearray()
    b += struct.pack("<QH6x", 5, 3)  # CHGCNT, NGRPS
    b += struct.pack("<IIQB15x", 1, 2, 3, 0x01) + struct.pack("<II", 1, 2)
    b += struct.pack("<IIQB15x", 2, 0, 4, 0x03)  # no NSIDs (RGO style)
    b += struct.pack("<IIQB15x", 7, 1, 9, 0x0F) + struct.pack("<I", 10)
    return bytes(b)


def test_ana_golden():
    log = decode_ana_log(golden_ana() + b"\x00" * 50)  # slack after the last group ignored
    assert log.chgcnt == 5
    assert log.groups == [
        AnaGroupDescriptor(1, 3, AnaState.OPTIMIZED, [1, 2]),
        AnaGroupDescriptor(2, 4, AnaState.INACCESSIBLE, []),
        AnaGroupDescriptor(7, 9, AnaState.CHANGE, [10]),
    ]
    assert encode_ana_log(log) == golden_ana()
    assert ana_log_size(3, 3) == len(golden_ana())


def test_ana_unknown_state_kept_and_reserved_bits_masked():
    b = bytearray(golden_ana())
    b[16 + 16] = 0xF6  # upper nibble reserved, state 6 unknown
    g = decode_ana_log(bytes(b)).groups[0]
    assert g.state == 6 and type(g.state) is int


def test_ana_hostile_counts():
    hdr = struct.pack("<QH6x", 0, 100)
    with pytest.raises(PeerProtocolError, match="NGRPS 100"):
        decode_ana_log(hdr + bytes(32))
    liar = struct.pack("<QH6x", 0, 1) + struct.pack("<IIQB15x", 1, 0xFFFFFFFF, 0, 1) + bytes(8)
    with pytest.raises(PeerProtocolError, match="4294967295 NSIDs"):
        decode_ana_log(liar)
    with pytest.raises(PeerProtocolError, match="ANA log header"):
        decode_ana_log(bytes(15))


def test_ana_encode_rejects():
    with pytest.raises(LocalProtocolError):
        encode_ana_log(AnaLog(groups=[AnaGroupDescriptor(grpid=1, state=0x100)]))
    with pytest.raises(LocalProtocolError):
        encode_ana_log(AnaLog(groups=[AnaGroupDescriptor(grpid=1, nsids=[-1])]))


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_decoders_accept_any_bytes_like(kind):
    assert decode_smart_log(kind(golden_smart())).temperature == 310
    assert decode_ana_log(kind(golden_ana())).groups[0].nsids == [1, 2]
    assert decode_error_log(kind(golden_error_entry()))[0].cid == 0x1234
    assert decode_fw_slot_log(kind(golden_fw())).frs[1] == "2.1.7"


# --- hostile input ------------------------------------------------------------------


@pytest.mark.parametrize(
    "decoder",
    [decode_error_log, decode_smart_log, decode_fw_slot_log, decode_changed_ns_list,
     decode_cmd_effects_log, decode_ana_log],
)
def test_fuzz_only_protocol_errors(decoder):
    rng = random.Random(0x1065)
    for _ in range(300):
        n = rng.choice([0, 15, 16, 64, 511, 512, 4096, rng.randrange(6000)])
        data = rng.randbytes(n)
        if decoder is decode_ana_log and n >= 10 and rng.random() < 0.5:
            data = data[:8] + struct.pack("<H", rng.randrange(4)) + data[10:]  # plausible NGRPS
        try:
            decoder(data)
        except PeerProtocolError:
            pass
