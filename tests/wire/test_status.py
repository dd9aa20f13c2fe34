"""nvmecontrol.wire.status: layout, spec values, names, JSON."""

import json

import pytest

from nvmecontrol.wire import status as st
from nvmecontrol.wire.status import (
    Status,
    decode_status,
    describe_status,
    encode_status,
    make_status,
    status_from_cqe_dw3,
    status_from_error_log_field,
    status_is_error,
    status_name,
    status_to_cqe_dw3,
    status_to_json,
)


def _raw(sc, sct, crd=0, more=0, dnr=0):
    # Built from the bit positions of the spec, independent of make_status.
    return sc | (sct << 8) | (crd << 11) | (more << 13) | (dnr << 14)


def test_decode_every_field():
    s = decode_status(_raw(0x84, 1, crd=2, more=1, dnr=1))
    assert s == Status(sc=0x84, sct=1, crd=2, more=True, dnr=True)
    assert s.sct is st.StatusCodeType.COMMAND_SPECIFIC


def test_decode_ignores_bits_above_14_and_keeps_unknown_sct():
    s = decode_status(0x8000 | _raw(0x01, 5))
    assert s == Status(0x01, 5, 0, False, False)
    assert type(s.sct) is int


@pytest.mark.parametrize(
    "args, kwargs, expected",
    [
        ((1, 0x84), {"dnr": True}, 0x4184),
        ((0, 0x02), {}, 0x0002),
        ((0, 0x06), {"more": True}, 0x2006),
        ((3, 0x03), {"crd": 1}, 0x0B03),
        ((7, 0xFF), {"dnr": True, "more": True, "crd": 3}, 0x7FFF),
    ],
)
def test_make_status(args, kwargs, expected):
    assert make_status(*args, **kwargs) == expected
    assert encode_status(decode_status(expected)) == expected


@pytest.mark.parametrize("args", [(8, 0), (0, 0x100), (-1, 0)])
def test_make_status_rejects_out_of_range(args):
    with pytest.raises(ValueError):
        make_status(*args)


def test_make_status_rejects_bad_crd():
    with pytest.raises(ValueError):
        make_status(0, 0, crd=4)


def test_cqe_dw3_position():
    # DW3: CID 15:0, phase 16, status 31:17.
    dw3 = 0xABCD | (1 << 16) | (0x4184 << 17)
    assert status_from_cqe_dw3(dw3) == 0x4184
    assert status_to_cqe_dw3(0x4184, 0xABCD, phase=1) == dw3
    assert status_to_cqe_dw3(0, 7) == 7


def test_error_log_status_field_has_phase_in_bit0():
    assert status_from_error_log_field((0x4002 << 1) | 1) == (0x4002, 1)
    assert status_from_error_log_field(0x0004) == (0x0002, 0)


def test_status_is_error_ignores_dnr_more_crd():
    assert not status_is_error(0)
    assert not status_is_error(_raw(0, 0, crd=3, more=1, dnr=1))
    assert status_is_error(_raw(0, 1))
    assert status_is_error(_raw(2, 0))


def test_spec_values_of_named_constants():
    # Generic (SCT 0).
    assert st.SC_SUCCESS == 0x00
    assert st.SC_INVALID_OPCODE == 0x01
    assert st.SC_INVALID_FIELD == 0x02
    assert st.SC_CMD_ID_CONFLICT == 0x03
    assert st.SC_DATA_XFER_ERROR == 0x04
    assert st.SC_INTERNAL == 0x06
    assert st.SC_INVALID_NS == 0x0B
    assert st.SC_CMD_SEQ_ERROR == 0x0C
    assert (st.SC_SGL_INVALID_LAST, st.SC_SGL_INVALID_COUNT, st.SC_SGL_INVALID_DATA,
            st.SC_SGL_INVALID_METADATA, st.SC_SGL_INVALID_TYPE) == (0x0D, 0x0E, 0x0F, 0x10, 0x11)
    assert st.SC_SGL_INVALID_OFFSET == 0x16
    assert st.SC_KEEP_ALIVE_EXPIRED == 0x19
    assert st.SC_KEEP_ALIVE_INVALID == 0x1A
    assert st.SC_LBA_RANGE == 0x80
    assert st.SC_NS_NOT_READY == 0x82
    # Command specific (SCT 1).
    assert st.SC_INVALID_QID == 0x01
    assert st.SC_INVALID_QUEUE_SIZE == 0x02
    assert st.SC_INVALID_LOG_PAGE == 0x09
    assert st.SC_INVALID_FORMAT == 0x0A
    assert st.SC_FEATURE_NOT_CHANGEABLE == 0x0E
    assert (st.SC_CONNECT_INCOMPATIBLE_FORMAT, st.SC_CONNECT_CTRL_BUSY,
            st.SC_CONNECT_INVALID_PARAM, st.SC_CONNECT_RESTART_DISC,
            st.SC_CONNECT_INVALID_HOST, st.SC_INVALID_QUEUE_TYPE) == (0x80, 0x81, 0x82, 0x83, 0x84, 0x85)
    assert st.SC_DISCOVER_RESTART == 0x90
    assert st.SC_AUTH_REQUIRED == 0x91
    assert (st.SCT_GENERIC, st.SCT_COMMAND_SPECIFIC, st.SCT_MEDIA, st.SCT_PATH, st.SCT_VENDOR) == (0, 1, 2, 3, 7)


@pytest.mark.parametrize(
    "sct, sc, name",
    [
        (0, 0x00, "Successful Completion"),
        (0, 0x01, "Invalid Command Opcode"),
        (0, 0x02, "Invalid Field in Command"),
        (0, 0x0C, "Command Sequence Error"),
        (0, 0x19, "Keep Alive Timer Expired"),
        (0, 0x22, "Transient Transport Error"),
        (0, 0x80, "LBA Out of Range"),
        (0, 0x82, "Namespace Not Ready"),
        (1, 0x01, "Invalid Queue Identifier"),
        (1, 0x09, "Invalid Log Page"),
        (1, 0x0A, "Invalid Format"),
        (1, 0x0E, "Feature Not Changeable"),
        (1, 0x80, "Incompatible Format"),
        (1, 0x81, "Controller Busy"),
        (1, 0x82, "Connect Invalid Parameters"),
        (1, 0x83, "Connect Restart Discovery"),
        (1, 0x84, "Connect Invalid Host"),
        (1, 0x85, "Invalid Queue Type"),
        (1, 0x90, "Discover Restart"),
        (1, 0x91, "Authentication Required"),
        (2, 0x81, "Unrecovered Read Error"),
        (2, 0x86, "Access Denied"),
        (3, 0x02, "Asymmetric Access Inaccessible"),
        (3, 0x70, "Host Pathing Error"),
        (7, 0x12, "Vendor Specific"),
        (0, 0xC5, "Vendor Specific"),
        (0, 0x7F, "Unknown"),
        (5, 0x00, "Reserved Status Code Type"),
    ],
)
def test_status_name(sct, sc, name):
    assert status_name(sct, sc) == name


def test_command_specific_80h_depends_on_context():
    assert status_name(1, 0x82, context="nvm") == "Attempted Write to Read Only Range"
    assert status_name(1, 0x80, context="nvm") == "Conflicting Attributes"
    assert status_name(1, 0x82, context="fabrics") == "Connect Invalid Parameters"
    # Below 80h the context does not matter.
    assert status_name(1, 0x09, context="nvm") == "Invalid Log Page"


def test_describe_status():
    assert describe_status(make_status(1, 0x84, dnr=True)) == (
        "Connect Invalid Host (sct 0x1, sc 0x84, dnr)"
    )
    assert describe_status(make_status(0, 0x06)) == "Internal Error (sct 0x0, sc 0x06)"
    assert describe_status(make_status(0, 0x22, more=True, crd=2)) == (
        "Transient Transport Error (sct 0x0, sc 0x22, crd 2, more)"
    )
    assert describe_status(make_status(1, 0x82), context="nvm").startswith("Attempted Write")


def test_status_to_json_parses_back():
    d = json.loads(json.dumps(status_to_json(make_status(1, 0x91, dnr=True))))
    assert d == {"sct": 1, "sc": 0x91, "dnr": True, "more": False, "crd": 0,
                 "name": "Authentication Required"}
