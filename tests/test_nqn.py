"""NQN validation, the UUID form and the discovery NQN (nvmecontrol.nqn)."""

import uuid

import pytest

from nvmecontrol import nqn
from nvmecontrol.errors import UsageError

SAMPLE_UUID = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"  # nvme-gen-hostnqn(1) example

VALID_STRICT = [
    "nqn.2014-08.org.nvmexpress.discovery",
    "nqn.2014-08.org.nvmexpress:uuid:" + SAMPLE_UUID,
    "nqn.2014-08.org.nvmexpress:uuid:" + SAMPLE_UUID.upper(),
    "nqn.2019-10.us.luto:sd_id128_app:0123456789abcdef",
    "nqn.2016-06.io.spdk:cnode1",
    "nqn.2014-08.com.example:nvme:nvm-subsystem-sn-d78432",
    "nqn.2014-08.org.nvmexpress:NVMf:uuid:" + SAMPLE_UUID,  # nvmetcli style
    "nqn.1970-01.a",
    "nqn.2999-12.x-y.z9",
    "nqn.2020-02.com.example:ünïcode user string",
    # Hyphenless UUID written by nvme-cli 1.x (SD_ID128_FORMAT_STR); tolerated.
    "nqn.2014-08.org.nvmexpress:uuid:" + SAMPLE_UUID.replace("-", ""),
]


@pytest.mark.parametrize("s", VALID_STRICT)
def test_valid_strict(s):
    nqn.validate_nqn(s)
    assert nqn.is_valid_nqn(s)
    assert nqn.is_valid_nqn(s, strict=False)


# (input, the exact violation expected in the message)
INVALID_STRICT = [
    ("nqn.2014-13.org.x", "month 13 is not 01-12"),
    ("nqn.2014-00.org.x", "month 00 is not 01-12"),
    ("nqn.1969-12.org.x", "year 1969 is not 1970-2999"),
    ("nqn.3000-01.org.x", "year 3000 is not 1970-2999"),
    ("nqn.14-08.org.x", 'expected a date "yyyy-mm." after "nqn."'),
    ("nqn.2014-8.org.x", 'expected a date "yyyy-mm." after "nqn."'),
    ("nqn.2014-08org.x", 'expected a date "yyyy-mm." after "nqn."'),
    ("nqn.2014-08.", "has no reverse domain name after the date"),
    ("nqn.2014-08.:foo", "has no reverse domain name after the date"),
    ("nqn.2014-08.org..x", 'domain "org..x" has an empty label'),
    ("nqn.2014-08.org.x.", 'domain "org.x." has an empty label'),
    ("nqn.2014-08.org.under_score", 'domain label "under_score" contains \'_\''),
    ("nqn.2014-08.org.-x", 'domain label "-x" starts or ends with "-"'),
    ("nqn.2014-08.org.x-", 'domain label "x-" starts or ends with "-"'),
    ("nqn.2014-08.org." + "a" * 64, "is longer than 63 characters"),
    ("nqn.2014-08.org.x:", 'has nothing after ":"'),
    ("NQN.2014-08.org.x", 'does not start with "nqn."'),
    ("nvme-test-target", 'does not start with "nqn."'),
    ("nqn.2014-08.org.nvmexpress:uuid:not-a-uuid", 'after ":uuid:" is not a UUID'),
    ("nqn.2014-08.org.nvmexpress:uuid:" + SAMPLE_UUID[:-1], 'after ":uuid:" is not a UUID'),
    ("nqn.2014-08.org.nvmexpress:uuid:" + SAMPLE_UUID + "0", 'after ":uuid:" is not a UUID'),
    ("nqn.2014-08.org.nvmexpress:uuid:" + SAMPLE_UUID.replace("-", "_"), "is not a UUID"),
    ("nqn.2014-08.org.nvmexpress:uuid:{" + SAMPLE_UUID + "}", "is not a UUID"),
]


@pytest.mark.parametrize(("s", "violation"), INVALID_STRICT)
def test_invalid_strict_names_the_violation(s, violation):
    with pytest.raises(UsageError) as info:
        nqn.validate_nqn(s)
    message = str(info.value)
    assert message.startswith("invalid NQN ")
    assert violation in message
    assert not nqn.is_valid_nqn(s)


@pytest.mark.parametrize(("s", "_violation"), INVALID_STRICT)
def test_lenient_accepts_what_strict_refuses_for_format(s, _violation):
    # Lenient mode only checks emptiness, NUL and length.
    assert nqn.is_valid_nqn(s, strict=False)
    nqn.validate_nqn(s, strict=False)


def test_message_format_of_the_spec_example():
    with pytest.raises(UsageError) as info:
        nqn.validate_nqn("nqn.2014-13.org.x")
    assert str(info.value) == 'invalid NQN "nqn.2014-13.org.x": month 13 is not 01-12'


def test_what_names_the_role():
    with pytest.raises(UsageError, match=r'^invalid subsystem NQN "x": '):
        nqn.validate_nqn("x", what="subsystem NQN")


@pytest.mark.parametrize("strict", [True, False])
def test_empty_is_invalid_in_both_modes(strict):
    with pytest.raises(UsageError, match="is empty"):
        nqn.validate_nqn("", strict=strict)


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("char", ["\n", "\t", "\x1b", "\x7f", "\x85"])
def test_control_characters_are_invalid_in_both_modes(strict, char):
    s = f"nqn.2014-08.org.x:a{char}b"
    with pytest.raises(UsageError, match=f"control character \\({ord(char):#04x}\\) at offset 19"):
        nqn.validate_nqn(s, strict=strict)


@pytest.mark.parametrize("strict", [True, False])
def test_bytes_that_are_not_utf8_are_invalid(strict):
    # What Python makes of a non-UTF-8 command line argument (surrogateescape).
    s = b"nqn.2014-08.org.x:\xff".decode("utf-8", "surrogateescape")
    with pytest.raises(UsageError) as info:
        nqn.validate_nqn(s, strict=strict)
    assert "is not UTF-8 (byte 0xff at offset 18)" in str(info.value)
    assert '"nqn.2014-08.org.x:\\xff"' in str(info.value)


@pytest.mark.parametrize("strict", [True, False])
def test_nul_is_invalid_in_both_modes(strict):
    s = "nqn.2014-08.org.x:a\0b"
    with pytest.raises(UsageError) as info:
        nqn.validate_nqn(s, strict=strict)
    assert f"NUL character at offset {s.index(chr(0))}" in str(info.value)
    # The NUL is shown escaped, not embedded in the message.
    assert "\0" not in str(info.value)
    assert "\\x00" in str(info.value)


@pytest.mark.parametrize("strict", [True, False])
def test_length_limit_counts_utf8_bytes(strict):
    base = "nqn.2014-08.org.x:"
    fits = base + "a" * (nqn.NQN_MAX_BYTES - len(base))
    assert len(fits.encode()) == 223
    nqn.validate_nqn(fits, strict=strict)

    too_long = fits + "a"
    with pytest.raises(UsageError, match="is 224 bytes long in UTF-8, the limit is 223"):
        nqn.validate_nqn(too_long, strict=strict)

    # 2-byte characters: fewer than 223 characters, more than 223 bytes.
    multibyte = base + "é" * ((nqn.NQN_MAX_BYTES - len(base)) // 2 + 1)
    assert len(multibyte) < 223 < len(multibyte.encode())
    with pytest.raises(UsageError, match="bytes long in UTF-8"):
        nqn.validate_nqn(multibyte, strict=strict)


def test_long_nqn_is_shortened_in_the_message():
    s = "nqn.2014-08.org.x:" + "b" * 300
    with pytest.raises(UsageError) as info:
        nqn.validate_nqn(s)
    assert s not in str(info.value)
    assert "..." in str(info.value)


def test_limit_constant_matches_spec():
    assert nqn.NQN_MAX_BYTES == 223


def test_first_violation_is_reported():
    # Bad month and bad label: the date comes first in the name.
    with pytest.raises(UsageError) as info:
        nqn.validate_nqn("nqn.2014-13.bad_label")
    assert "month 13" in str(info.value)
    assert "bad_label" not in str(info.value).split(":", 1)[1]


@pytest.mark.parametrize(
    ("s", "expected"),
    [
        ("nqn.2014-08.org.nvmexpress.discovery", True),
        ("nqn.2016-06.io.spdk:cnode1", True),
        ("nqn.", True),
        ("nvme0", False),
        ("nda0", False),
        ("nvme0ns1", False),
        ("nvme-test-target", False),
        ("NQN.2014-08.org.x", False),
        ("", False),
    ],
)
def test_looks_like_nqn(s, expected):
    assert nqn.looks_like_nqn(s) is expected


def test_is_discovery_nqn_is_exact():
    assert nqn.is_discovery_nqn(nqn.DISCOVERY_NQN)
    assert nqn.DISCOVERY_NQN == "nqn.2014-08.org.nvmexpress.discovery"
    assert not nqn.is_discovery_nqn(nqn.DISCOVERY_NQN.upper())
    assert not nqn.is_discovery_nqn(nqn.DISCOVERY_NQN + " ")
    assert not nqn.is_discovery_nqn(nqn.DISCOVERY_NQN + ":x")
    assert not nqn.is_discovery_nqn("nqn.2014-08.org.nvmexpress:uuid:" + SAMPLE_UUID)


def test_nqn_from_uuid_builds_the_spec_form():
    u = uuid.UUID(SAMPLE_UUID)
    s = nqn.nqn_from_uuid(u)
    assert s == "nqn.2014-08.org.nvmexpress:uuid:" + SAMPLE_UUID
    nqn.validate_nqn(s)
    # Text input is accepted and normalised to lowercase.
    assert nqn.nqn_from_uuid(SAMPLE_UUID.upper()) == s


def test_nqn_from_uuid_rejects_bad_text():
    with pytest.raises(UsageError, match="is not a UUID"):
        nqn.nqn_from_uuid("1234")


def test_uuid_round_trip_random():
    for _ in range(50):
        u = uuid.uuid4()
        assert nqn.uuid_from_nqn(nqn.nqn_from_uuid(u)) == u


@pytest.mark.parametrize(
    "s",
    [
        "nqn.2014-08.org.nvmexpress.discovery",
        "nqn.2016-06.io.spdk:cnode1",
        "nqn.2014-08.org.nvmexpress:NVMf:uuid:" + SAMPLE_UUID,
        "nqn.2014-08.org.nvmexpress:uuid:garbage",
        "nqn.2015-01.org.nvmexpress:uuid:" + SAMPLE_UUID,
        "nvme-test-target",
    ],
)
def test_uuid_from_nqn_none_for_other_forms(s):
    assert nqn.uuid_from_nqn(s) is None


def test_uuid_from_hyphenless_legacy_nqn():
    s = "nqn.2014-08.org.nvmexpress:uuid:" + SAMPLE_UUID.replace("-", "")
    assert nqn.uuid_from_nqn(s) == uuid.UUID(SAMPLE_UUID)


def test_parse_uuid_is_strict():
    assert nqn.parse_uuid(SAMPLE_UUID) == uuid.UUID(SAMPLE_UUID)
    for bad in ("{" + SAMPLE_UUID + "}", "urn:uuid:" + SAMPLE_UUID, SAMPLE_UUID.replace("-", ""),
                SAMPLE_UUID + " ", ""):
        with pytest.raises(ValueError):
            nqn.parse_uuid(bad)
