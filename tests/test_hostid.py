"""Host NQN / host ID resolution against a fake sysroot (nvmecontrol.hostid)."""

import os
import stat
import struct
import uuid

import pytest

from nvmecontrol import hostid
from nvmecontrol.errors import DeviceError, UsageError
from nvmecontrol.nqn import UUID_NQN_PREFIX, is_valid_nqn, uuid_from_nqn

A = uuid.UUID("6a1c2e4f-0b3d-4c5e-8f70-112233445566")
B = uuid.UUID("0f0e0d0c-0b0a-4908-8706-050403020100")
C = uuid.UUID("a0b1c2d3-e4f5-4a6b-9c8d-7e6f5a4b3c2d")
NQN_A = UUID_NQN_PREFIX + str(A)
NQN_B = UUID_NQN_PREFIX + str(B)
PLAIN_NQN = "nqn.2014-08.com.example:host-7"

# Golden vector computed by systemd 252 on a scratch VM:
#   systemd-id128 machine-id --app-specific=c7f4618112be49328c83106f9dddd86b -u
# with this /etc/machine-id.  Ties our derivation to sd_id128_get_machine_app_specific.
MACHINE_ID = "3d1219c7c4c5404aaa1f6d2a48adfda4"
MACHINE_ID_HOSTID = uuid.UUID("d425fb17-c499-48fb-a273-5c5b0eb739c4")


class SysRoot:
    """A fake filesystem root for the files hostid reads."""

    def __init__(self, path):
        self.path = path

    def put(self, logical, text):
        p = self.path / logical.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        return p

    def hostnqn(self, text):
        return self.put("/etc/nvme/hostnqn", text + "\n")

    def hostid(self, text):
        return self.put("/etc/nvme/hostid", text + "\n")

    def dmi(self, text):
        return self.put("/sys/class/dmi/id/product_uuid", text + "\n")

    def machine_id(self, text):
        return self.put("/etc/machine-id", text + "\n")

    def resolve(self, hostnqn=None, hid=None, **kw):
        kw.setdefault("environ", {})
        kw.setdefault("platform", "linux")
        kw.setdefault("sysctl", _no_sysctl)
        return hostid.resolve_host_identity(hostnqn, hid, root=self.path, **kw)


def _no_sysctl(name):
    raise AssertionError(f"sysctl {name} must not be called here")


@pytest.fixture
def root(tmp_path):
    return SysRoot(tmp_path)


# --- each source on its own --------------------------------------------------


def test_command_line_values(root):
    ident = root.resolve(PLAIN_NQN, str(B))
    assert (ident.hostnqn, ident.hostid) == (PLAIN_NQN, B)
    assert ident.hostnqn_source == ident.hostid_source == "command line"
    assert ident.warnings == []


def test_command_line_hostid_as_uuid_object(root):
    assert root.resolve(PLAIN_NQN, B).hostid == B


def test_environment(root):
    env = {"NVMECONTROL_HOSTNQN": PLAIN_NQN, "NVMECONTROL_HOSTID": str(B)}
    ident = root.resolve(environ=env)
    assert (ident.hostnqn, ident.hostid) == (PLAIN_NQN, B)
    assert ident.hostnqn_source == "$NVMECONTROL_HOSTNQN"
    assert ident.hostid_source == "$NVMECONTROL_HOSTID"


def test_os_environ_is_the_default(root, monkeypatch):
    monkeypatch.setenv("NVMECONTROL_HOSTNQN", PLAIN_NQN)
    monkeypatch.setenv("NVMECONTROL_HOSTID", str(C))
    ident = hostid.resolve_host_identity(root=root.path, platform="linux", sysctl=_no_sysctl)
    assert (ident.hostnqn, ident.hostid) == (PLAIN_NQN, C)


def test_files(root):
    root.hostnqn(PLAIN_NQN)
    root.hostid(str(B))
    ident = root.resolve()
    assert (ident.hostnqn, ident.hostid) == (PLAIN_NQN, B)
    assert ident.hostnqn_source == "/etc/nvme/hostnqn"
    assert ident.hostid_source == "/etc/nvme/hostid"


def test_files_tolerate_whitespace_and_extra_lines(root):
    root.put("/etc/nvme/hostnqn", f"  {PLAIN_NQN}  \nsecond line\n")
    root.put("/etc/nvme/hostid", f"\n{str(B).upper()}\r\n")
    ident = root.resolve()
    assert (ident.hostnqn, ident.hostid) == (PLAIN_NQN, B)


def test_dmi_product_uuid(root):
    root.dmi(str(C).upper())
    ident = root.resolve()
    assert ident.hostid == C
    assert ident.hostid_source == "DMI product_uuid"
    assert ident.hostnqn == UUID_NQN_PREFIX + str(C)
    assert "DMI product_uuid" in ident.hostnqn_source


def test_machine_id_golden_vector(root):
    root.machine_id(MACHINE_ID)
    ident = root.resolve()
    assert ident.hostid == MACHINE_ID_HOSTID
    assert ident.hostid_source == "/etc/machine-id"
    assert uuid_from_nqn(ident.hostnqn) == MACHINE_ID_HOSTID


def test_machine_id_is_not_sent_raw():
    derived = hostid.machine_id_uuid(MACHINE_ID)
    assert derived.hex != MACHINE_ID
    assert derived.version == 4
    assert derived.variant == uuid.RFC_4122
    assert hostid.machine_id_uuid(MACHINE_ID.upper()) == derived


@pytest.mark.parametrize("bad", ["", "xyz", MACHINE_ID[:-1], MACHINE_ID + "0", "g" * 32])
def test_machine_id_uuid_rejects_malformed(bad):
    with pytest.raises(ValueError):
        hostid.machine_id_uuid(bad)


def test_freebsd_hostuuid(root):
    calls = []

    def sysctl(name):
        calls.append(name)
        return str(C)

    ident = root.resolve(platform="freebsd14", sysctl=sysctl)
    assert calls == ["kern.hostuuid"]
    assert ident.hostid == C
    assert ident.hostid_source == "kern.hostuuid"
    # Same NQN as FreeBSD's nvmf_nqn_from_hostuuid: the prefix plus the UUID text.
    assert ident.hostnqn == UUID_NQN_PREFIX + str(C)


def test_freebsd_hostuuid_beats_dmi_and_machine_id(root):
    root.dmi(str(A))
    root.machine_id(MACHINE_ID)
    ident = root.resolve(platform="freebsd15", sysctl=lambda name: str(C))
    assert ident.hostid == C


def test_freebsd_falls_back_when_sysctl_fails(root):
    root.machine_id(MACHINE_ID)
    ident = root.resolve(platform="freebsd14", sysctl=lambda name: None)
    assert ident.hostid == MACHINE_ID_HOSTID


def test_sysctl_not_consulted_on_linux(root):
    root.machine_id(MACHINE_ID)
    # _no_sysctl raises if called.
    assert root.resolve(platform="linux").hostid == MACHINE_ID_HOSTID


def test_default_sysctl_runs_the_sysctl_command(root, tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "sysctl"
    script.write_text(f'#!/bin/sh\n[ "$1 $2" = "-n kern.hostuuid" ] && echo {C} && exit 0\nexit 1\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    ident = hostid.resolve_host_identity(root=root.path, environ={}, platform="freebsd14")
    assert ident.hostid == C


def test_default_sysctl_missing_command_falls_through(root, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    root.machine_id(MACHINE_ID)
    ident = hostid.resolve_host_identity(root=root.path, environ={}, platform="freebsd14")
    assert ident.hostid == MACHINE_ID_HOSTID


# --- precedence --------------------------------------------------------------


def test_command_line_beats_environment_beats_files(root):
    root.hostnqn("nqn.2014-08.com.example:from-file")
    root.hostid(str(C))
    env = {"NVMECONTROL_HOSTNQN": "nqn.2014-08.com.example:from-env",
           "NVMECONTROL_HOSTID": str(B)}

    ident = root.resolve(environ=env)
    assert ident.hostnqn.endswith("from-env")
    assert ident.hostid == B

    ident = root.resolve("nqn.2014-08.com.example:from-cli", str(A), environ=env)
    assert ident.hostnqn.endswith("from-cli")
    assert ident.hostid == A


def test_files_beat_dmi_and_machine_id(root):
    root.hostnqn(PLAIN_NQN)
    root.hostid(str(B))
    root.dmi(str(C))
    root.machine_id(MACHINE_ID)
    ident = root.resolve()
    assert ident.hostid == B


def test_dmi_beats_machine_id(root):
    root.dmi(str(C))
    root.machine_id(MACHINE_ID)
    assert root.resolve().hostid == C


def test_empty_environment_variable_counts_as_unset(root):
    root.hostnqn(PLAIN_NQN)
    root.hostid(str(B))
    ident = root.resolve(environ={"NVMECONTROL_HOSTNQN": "", "NVMECONTROL_HOSTID": ""})
    assert ident.hostnqn_source == "/etc/nvme/hostnqn"
    assert ident.hostid_source == "/etc/nvme/hostid"


def test_empty_file_is_skipped_with_warning(root):
    root.put("/etc/nvme/hostnqn", "\n")
    root.dmi(str(C))
    ident = root.resolve()
    assert ident.hostid == C
    assert any("/etc/nvme/hostnqn is empty" in w for w in ident.warnings)


def test_lower_sources_are_not_read_once_one_answers(root):
    root.hostnqn("garbage")
    root.hostid("garbage")
    ident = root.resolve(PLAIN_NQN, str(B))
    assert (ident.hostnqn, ident.hostid) == (PLAIN_NQN, B)


# --- bogus DMI values ----------------------------------------------------------


@pytest.mark.parametrize(
    "bogus",
    [
        "00000000-0000-0000-0000-000000000000",
        "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
        "ffffffff-ffff-ffff-ffff-ffffffffffff",
        "03000200-0400-0500-0006-000700080009",
    ],
)
def test_bogus_dmi_uuid_is_skipped(root, bogus):
    root.dmi(bogus)
    root.machine_id(MACHINE_ID)
    ident = root.resolve()
    assert ident.hostid == MACHINE_ID_HOSTID
    assert any("DMI product_uuid" in w and "placeholder" in w for w in ident.warnings)


def test_bogus_freebsd_hostuuid_is_skipped(root):
    root.machine_id(MACHINE_ID)
    ident = root.resolve(platform="freebsd14",
                         sysctl=lambda name: "00000000-0000-0000-0000-000000000000")
    assert ident.hostid == MACHINE_ID_HOSTID
    assert any("kern.hostuuid" in w for w in ident.warnings)


@pytest.mark.parametrize("junk", ["Not Settable", "1234", str(C) + "x"])
def test_unparsable_dmi_is_skipped(root, junk):
    root.dmi(junk)
    root.machine_id(MACHINE_ID)
    ident = root.resolve()
    assert ident.hostid == MACHINE_ID_HOSTID
    assert any("DMI product_uuid" in w for w in ident.warnings)


def test_unreadable_dmi_falls_through(root, monkeypatch):
    # product_uuid is mode 0400 on Linux; simulate a non-root reader even when
    # the test runs as root.
    dmi_path = root.dmi(str(C))
    root.machine_id(MACHINE_ID)
    real_open = open

    def guarded_open(path, *args, **kw):
        if os.fspath(path) == os.fspath(dmi_path):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path, *args, **kw)

    monkeypatch.setattr(hostid, "open", guarded_open, raising=False)
    ident = root.resolve()
    assert ident.hostid == MACHINE_ID_HOSTID
    assert any("cannot read /sys/class/dmi/id/product_uuid" in w for w in ident.warnings)


def test_unreadable_hostnqn_file_is_an_error(root, monkeypatch):
    nqn_path = root.hostnqn(PLAIN_NQN)
    real_open = open

    def guarded_open(path, *args, **kw):
        if os.fspath(path) == os.fspath(nqn_path):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path, *args, **kw)

    monkeypatch.setattr(hostid, "open", guarded_open, raising=False)
    # Silently skipping it would change the host identity.
    with pytest.raises(DeviceError, match="cannot read /etc/nvme/hostnqn"):
        root.resolve()


def test_malformed_machine_id_and_nothing_else_is_an_error(root):
    root.machine_id("not-a-machine-id")
    with pytest.raises(UsageError, match="cannot determine a host ID"):
        root.resolve()


def test_nothing_at_all_is_an_error(root):
    with pytest.raises(UsageError) as info:
        root.resolve()
    message = str(info.value)
    for checked in ("/etc/nvme/hostid", "/sys/class/dmi/id/product_uuid", "/etc/machine-id"):
        assert checked in message
    assert "kern.hostuuid" not in message


# --- consistency between host NQN and host ID -----------------------------------


def test_hostid_taken_from_uuid_nqn_file(root):
    root.hostnqn(NQN_A)
    root.dmi(str(C))
    ident = root.resolve()
    assert ident.hostid == A
    assert "/etc/nvme/hostnqn" in ident.hostid_source
    assert ident.warnings == []


def test_non_uuid_nqn_file_without_hostid_file_uses_dmi(root):
    root.hostnqn(PLAIN_NQN)
    root.dmi(str(C))
    ident = root.resolve()
    assert (ident.hostnqn, ident.hostid) == (PLAIN_NQN, C)


def test_non_uuid_nqn_file_without_hostid_file_uses_machine_id(root):
    root.hostnqn(PLAIN_NQN)
    root.machine_id(MACHINE_ID)
    assert root.resolve().hostid == MACHINE_ID_HOSTID


def test_command_line_uuid_nqn_overrides_hostid_file(root):
    # The hostid file belongs to the file's NQN; pairing it with another NQN
    # would make the Linux kernel refuse the connection.
    root.hostnqn(NQN_B)
    root.hostid(str(B))
    ident = root.resolve(NQN_A)
    assert ident.hostid == A
    assert ident.hostid_source == "UUID in host NQN (command line)"
    assert ident.warnings == []


def test_environment_uuid_nqn_overrides_hostid_file(root):
    root.hostid(str(B))
    ident = root.resolve(environ={"NVMECONTROL_HOSTNQN": NQN_A})
    assert ident.hostid == A


def test_command_line_plain_nqn_keeps_hostid_file(root):
    root.hostid(str(B))
    ident = root.resolve(PLAIN_NQN)
    assert ident.hostid == B
    assert ident.hostid_source == "/etc/nvme/hostid"


def test_mismatch_in_files_is_recorded_apart_with_cause_and_fix(root):
    root.hostnqn(NQN_A)
    root.hostid(str(B))
    ident = root.resolve()
    assert (ident.hostnqn, ident.hostid) == (NQN_A, B)
    assert ident.warnings == []  # read-only commands print these: they stay quiet
    assert str(A) in ident.mismatch and str(B) in ident.mismatch
    assert "written independently" in ident.mismatch
    assert f"fix: echo {A} > /etc/nvme/hostid" in ident.mismatch
    assert "\n" not in ident.mismatch


def test_mismatch_on_command_line_names_the_options(root):
    ident = root.resolve(NQN_A, str(B))
    assert ident.hostid == B
    assert "--hostid and --hostnqn" in ident.mismatch
    assert f"fix: --hostid {A}" in ident.mismatch


def test_explicit_hostid_beats_environment_uuid_nqn_with_mismatch(root):
    ident = root.resolve(hid=str(B), environ={"NVMECONTROL_HOSTNQN": NQN_A})
    assert (ident.hostnqn, ident.hostid) == (NQN_A, B)
    assert ident.mismatch is not None and str(A) in ident.mismatch


def test_matching_pair_gives_no_warning(root):
    root.hostnqn(NQN_A)
    root.hostid(str(A))
    ident = root.resolve()
    assert (ident.warnings, ident.mismatch) == ([], None)


def test_hostnqn_derived_from_hostid_file(root):
    root.hostid(str(B))
    ident = root.resolve()
    assert ident.hostnqn == NQN_B
    assert "/etc/nvme/hostid" in ident.hostnqn_source


def test_hyphenless_legacy_nqn_is_accepted_with_warning(root):
    root.hostnqn(UUID_NQN_PREFIX + A.hex)
    ident = root.resolve()
    assert ident.hostid == A
    assert any("without hyphens" in w for w in ident.warnings)


# --- validation naming the source ------------------------------------------------


def test_invalid_hostnqn_file(root):
    root.hostnqn("nqn.2014-13.org.x")
    with pytest.raises(UsageError) as info:
        root.resolve()
    assert str(info.value).startswith("invalid host NQN in /etc/nvme/hostnqn: ")
    assert "month 13 is not 01-12" in str(info.value)


def test_invalid_hostnqn_environment(root):
    with pytest.raises(UsageError, match=r"^invalid host NQN in \$NVMECONTROL_HOSTNQN: "):
        root.resolve(environ={"NVMECONTROL_HOSTNQN": "nvme-test-target"})


def test_invalid_hostnqn_command_line(root):
    with pytest.raises(UsageError, match="^invalid host NQN on the command line: "):
        root.resolve("nqn.2014-08.org.nvmexpress:uuid:1234")


@pytest.mark.parametrize("bad", ["1234", "{" + str(A) + "}", A.hex])
def test_invalid_hostid_file(root, bad):
    root.hostid(bad)
    with pytest.raises(UsageError, match="^invalid host ID in /etc/nvme/hostid: "):
        root.resolve(PLAIN_NQN)


def test_invalid_hostid_command_line(root):
    with pytest.raises(UsageError, match="^invalid host ID on the command line: "):
        root.resolve(PLAIN_NQN, "zzz")


# --- generate, wire bytes, writing ------------------------------------------------


def test_generate_hostnqn():
    seen = set()
    for _ in range(20):
        s = hostid.generate_hostnqn()
        assert is_valid_nqn(s)
        u = uuid_from_nqn(s)
        assert u is not None and u.version == 4
        seen.add(s)
    assert len(seen) == 20


def test_hostid_bytes_rfc_is_big_endian_text_order():
    text = "00112233-4455-6677-8899-aabbccddeeff"
    assert hostid.hostid_bytes(uuid.UUID(text)) == bytes.fromhex(text.replace("-", ""))
    assert hostid.hostid_bytes(uuid.UUID(text), "rfc") == bytes(range(0x00, 0x100, 0x11))


def test_hostid_bytes_le_is_uuid_enc_le():
    text = "00112233-4455-6677-8899-aabbccddeeff"
    time_low, time_mid, time_hi, rest = text.split("-", 3)
    # uuid_enc_le: time_low, time_mid, time_hi_and_version little-endian, the rest as is.
    expected = struct.pack("<IHH", int(time_low, 16), int(time_mid, 16), int(time_hi, 16))
    expected += bytes.fromhex(rest.replace("-", ""))
    assert hostid.hostid_bytes(uuid.UUID(text), "le") == expected


def test_hostid_bytes_rejects_unknown_order():
    with pytest.raises(ValueError):
        hostid.hostid_bytes(A, "middle")


def test_write_host_files_round_trip(root):
    nqn_path, id_path = hostid.write_host_files(NQN_A, A, root=root.path)
    assert nqn_path.read_text() == NQN_A + "\n"
    assert id_path.read_text() == str(A) + "\n"
    assert stat.S_IMODE(nqn_path.stat().st_mode) == 0o644
    assert stat.S_IMODE(id_path.stat().st_mode) == 0o644
    assert sorted(p.name for p in nqn_path.parent.iterdir()) == ["hostid", "hostnqn"]
    ident = root.resolve()
    assert (ident.hostnqn, ident.hostid) == (NQN_A, A)
    assert ident.hostnqn_source == "/etc/nvme/hostnqn"
    assert ident.hostid_source == "/etc/nvme/hostid"


def test_write_host_files_refuses_to_overwrite(root):
    root.hostnqn(NQN_B)
    with pytest.raises(UsageError, match="/etc/nvme/hostnqn already exists"):
        hostid.write_host_files(NQN_A, str(A), root=root.path)
    assert (root.path / "etc/nvme/hostnqn").read_text() == NQN_B + "\n"
    assert not (root.path / "etc/nvme/hostid").exists()

    hostid.write_host_files(NQN_A, str(A), root=root.path, overwrite=True)
    assert root.resolve().hostnqn == NQN_A


def test_write_host_files_validates(root):
    with pytest.raises(UsageError, match="invalid host NQN"):
        hostid.write_host_files("nqn.2014-13.org.x", A, root=root.path)
    with pytest.raises(UsageError, match="does not match"):
        hostid.write_host_files(NQN_A, B, root=root.path)
    with pytest.raises(UsageError, match="invalid host ID"):
        hostid.write_host_files(NQN_A, "nope", root=root.path)
    assert not (root.path / "etc").exists()


def test_write_host_files_plain_nqn_any_hostid(root):
    hostid.write_host_files(PLAIN_NQN, C, root=root.path)
    ident = root.resolve()
    assert (ident.hostnqn, ident.hostid) == (PLAIN_NQN, C)


def test_unused_hostid_file_is_not_validated(root):
    # The command-line NQN's UUID wins over the file, so the file's content
    # does not matter.
    root.hostid("garbage")
    assert root.resolve(NQN_A).hostid == A


def test_non_utf8_hostnqn_file_is_an_error(root):
    p = root.hostnqn(PLAIN_NQN)
    p.write_bytes(b"nqn.2014-08.com.example:\xff\n")
    with pytest.raises(DeviceError, match="cannot read /etc/nvme/hostnqn: not UTF-8 text"):
        root.resolve()


def test_hostnqn_path_is_a_directory_is_an_error(root):
    (root.path / "etc/nvme/hostnqn").mkdir(parents=True)
    with pytest.raises(DeviceError, match="cannot read /etc/nvme/hostnqn"):
        root.resolve()


def test_non_utf8_dmi_is_skipped(root):
    root.dmi("x").write_bytes(b"\xff\xfe\n")
    root.machine_id(MACHINE_ID)
    ident = root.resolve()
    assert ident.hostid == MACHINE_ID_HOSTID
    assert any("product_uuid" in w and "not UTF-8" in w for w in ident.warnings)


def test_nothing_at_all_on_freebsd_names_the_sysctl(root):
    with pytest.raises(UsageError, match="kern.hostuuid"):
        root.resolve(platform="freebsd14", sysctl=lambda name: None)
