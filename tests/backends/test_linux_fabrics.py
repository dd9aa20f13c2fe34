"""The /dev/nvme-fabrics protocol: token list, options string, answer, errno mapping."""

from __future__ import annotations

import errno
import os
import socket
import threading

import pytest

from nvmecontrol.backends.linux_fabrics import (BASE_OPTIONS, AlreadyConnected, FabricsDevice,
                                                add_controller, build_options, parse_answer,
                                                supported_options)
from nvmecontrol.backends.model import ConnectParams
from nvmecontrol.errors import (ConnectError, DeviceError, HostRefused, Unsupported,
                                UsageError)
from nvmecontrol.nqn import DISCOVERY_NQN
from nvmecontrol.wire.fabrics import CNTLID_DYNAMIC, CNTLID_STATIC

SUBNQN = "nqn.2014-08.org.example:sub1"
HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:3d39c2a4-5e1f-4b8e-9a1c-0f6e2d7b8c90"
HOSTID = "3d39c2a4-5e1f-4b8e-9a1c-0f6e2d7b8c90"

# __nvmf_concat_opt_tokens of a 6.12 kernel built with TLS and DH-HMAC-CHAP
# (Debian's linux-image-6.12-amd64): the opt_tokens patterns in table order.
TOKENS_6_12 = (
    "instance=-1,cntlid=-1,transport=%s,traddr=%s,trsvcid=%s,nqn=%s,queue_size=%d,"
    "nr_io_queues=%d,reconnect_delay=%d,ctrl_loss_tmo=%d,keep_alive_tmo=%d,hostnqn=%s,"
    "host_traddr=%s,host_iface=%s,hostid=%s,duplicate_connect,disable_sqflow,hdr_digest,"
    "data_digest,nr_write_queues=%d,nr_poll_queues=%d,tos=%d,keyring=%d,tls_key=%d,"
    "fast_io_fail_tmo=%d,discovery,dhchap_secret=%s,dhchap_ctrl_secret=%s,tls\n")
# 6.1 without CONFIG_NVME_AUTH and TLS (Debian's linux-image-amd64 6.1).
TOKENS_6_1 = (
    "instance=-1,cntlid=-1,transport=%s,traddr=%s,trsvcid=%s,nqn=%s,queue_size=%d,"
    "nr_io_queues=%d,reconnect_delay=%d,ctrl_loss_tmo=%d,keep_alive_tmo=%d,hostnqn=%s,"
    "host_traddr=%s,host_iface=%s,hostid=%s,duplicate_connect,disable_sqflow,hdr_digest,"
    "data_digest,nr_write_queues=%d,nr_poll_queues=%d,tos=%d,fast_io_fail_tmo=%d,discovery\n")

ALL = frozenset(t.split("=")[0] for t in TOKENS_6_12.strip().split(",")) - {"instance", "cntlid"}


def params(**kw) -> ConnectParams:
    base = dict(traddr="10.0.2.2", trsvcid="4420", subnqn=SUBNQN, hostnqn=HOSTNQN, hostid=HOSTID)
    base.update(kw)
    return ConnectParams(**base)


class FakeDevice:
    """Stands in for FabricsDevice: canned token list, scripted create() outcomes."""

    path = "/dev/nvme-fabrics"

    def __init__(self, tokens: str | OSError = TOKENS_6_12, outcomes=("instance=0,cntlid=1\n",)):
        self.tokens = tokens
        self.outcomes = list(outcomes)
        self.written: list[str] = []

    def read_tokens(self) -> str:
        if isinstance(self.tokens, OSError):
            raise self.tokens
        return self.tokens

    def create(self, options: str) -> str:
        self.written.append(options)
        out = self.outcomes.pop(0)
        if isinstance(out, OSError):
            raise out
        return out


# -- the token list --

def test_supported_options_from_a_6_12_token_list():
    got = supported_options(FakeDevice(TOKENS_6_12))
    assert got == ALL
    assert "instance" not in got and "cntlid" not in got  # dummies, not options
    assert {"tls", "keyring", "dhchap_secret", "disable_sqflow"} <= got


def test_supported_options_from_a_6_1_token_list():
    got = supported_options(FakeDevice(TOKENS_6_1))
    assert "tls" not in got and "dhchap_secret" not in got
    assert {"hostid", "disable_sqflow", "hdr_digest", "ctrl_loss_tmo"} <= got


@pytest.mark.parametrize("err", [errno.EINVAL, errno.ENODEV])
def test_old_kernels_that_refuse_the_read_give_an_empty_set(err):
    assert supported_options(FakeDevice(OSError(err, os.strerror(err)))) == frozenset()


def test_read_tokens_reads_the_node(tmp_path):
    node = tmp_path / "nvme-fabrics"
    node.write_text(TOKENS_6_12)
    assert supported_options(FabricsDevice(str(node))) == ALL


def test_a_missing_node_means_no_fabrics_host(tmp_path):
    with pytest.raises(Unsupported, match=r"no NVMe over Fabrics host \(load nvme-tcp\)"):
        supported_options(FabricsDevice(str(tmp_path / "nvme-fabrics")))


def test_an_unreadable_node_needs_root(tmp_path):
    def opener(path, flags):
        raise PermissionError(errno.EACCES, "Permission denied", path)

    with pytest.raises(DeviceError, match="needs root"):
        FabricsDevice(str(tmp_path / "x"), opener=opener).create("transport=tcp")


# -- the options string --

def test_default_options_exactly():
    built = build_options(params(), supported=ALL)
    assert built.text == (f"transport=tcp,traddr=10.0.2.2,trsvcid=4420,nqn={SUBNQN},"
                          f"hostnqn={HOSTNQN},hostid={HOSTID},nr_io_queues=1,"
                          f"keep_alive_tmo=120,reconnect_delay=10,ctrl_loss_tmo=600,disable_sqflow")
    assert built.warnings == []


def test_every_option_exactly():
    p = params(num_io_queues=4, queue_size=64, kato_s=30, reconnect_delay_s=2,
               ctrl_loss_tmo_s=-1, hdgst=True, ddgst=True, sq_flow_control=True)
    text, warnings = build_options(p, supported=ALL)
    assert text == (f"transport=tcp,traddr=10.0.2.2,trsvcid=4420,nqn={SUBNQN},"
                    f"hostnqn={HOSTNQN},hostid={HOSTID},nr_io_queues=4,queue_size=64,"
                    f"keep_alive_tmo=30,reconnect_delay=2,ctrl_loss_tmo=-1,hdr_digest,data_digest")
    assert warnings == []


def test_ipv6_address_goes_in_bare():
    text, _ = build_options(params(traddr="fe80::1%eth0", trsvcid="8009"), supported=ALL)
    assert "traddr=fe80::1%eth0,trsvcid=8009," in text


def test_discovery_controller_without_queues_or_kato():
    p = params(subnqn=DISCOVERY_NQN, num_io_queues=0, kato_s=0)
    text, _ = build_options(p, supported=ALL)
    assert text == (f"transport=tcp,traddr=10.0.2.2,trsvcid=4420,nqn={DISCOVERY_NQN},"
                    f"hostnqn={HOSTNQN},hostid={HOSTID},reconnect_delay=10,ctrl_loss_tmo=600,"
                    f"disable_sqflow")


def test_nqn_comes_before_nr_io_queues():
    # The kernel drops nr_io_queues for discovery only once it has seen nqn=.
    text, _ = build_options(params(subnqn=DISCOVERY_NQN, num_io_queues=4), supported=ALL)
    assert text.index("nqn=") < text.index("nr_io_queues=")


def test_no_host_identity_leaves_the_kernel_default_host():
    text, _ = build_options(params(hostnqn="", hostid=""), supported=ALL)
    assert "hostnqn" not in text and "hostid" not in text


def test_options_the_kernel_does_not_list_are_left_out_with_a_warning():
    old = ALL - {"disable_sqflow", "hostid"}
    text, warnings = build_options(params(), supported=old)
    assert "disable_sqflow" not in text and "hostid" not in text
    assert warnings == ["the kernel does not know the option hostid; left out",
                        "the kernel does not know the option disable_sqflow; left out"]


def test_required_options_are_never_dropped():
    text, _ = build_options(params(), supported={"hostnqn"})
    assert text.startswith(f"transport=tcp,traddr=10.0.2.2,trsvcid=4420,nqn={SUBNQN},"
                           f"hostnqn={HOSTNQN}")


def test_empty_supported_set_assumes_the_base_set():
    text, warnings = build_options(params(hdgst=True), supported=frozenset())
    assert warnings == []
    assert "hdr_digest" in text and "disable_sqflow" in text
    assert "tls" not in BASE_OPTIONS


@pytest.mark.parametrize("cntlid", [CNTLID_STATIC, 1])
def test_a_static_cntlid_is_not_passed_on(cntlid):
    text, warnings = build_options(params(cntlid=cntlid), supported=ALL)
    assert "cntlid" not in text
    assert len(warnings) == 1 and "dynamic controller" in warnings[0]
    assert build_options(params(cntlid=CNTLID_DYNAMIC), supported=ALL).warnings == []


@pytest.mark.parametrize("size", [8, 15, 1025])
def test_queue_size_outside_the_kernels_range(size):
    with pytest.raises(UsageError, match="16 to 1024"):
        build_options(params(queue_size=size), supported=ALL)


# -- adding a controller --

def test_add_controller_writes_once_and_reads_the_answer():
    """A socket pair plays the kernel: one write() in, one line back."""
    ours, kernels = socket.socketpair()
    got = []

    def kernel():
        got.append(kernels.recv(4096).decode())
        kernels.sendall(b"instance=7,cntlid=3\n")

    t = threading.Thread(target=kernel)
    t.start()
    dev = FabricsDevice("/dev/nvme-fabrics", opener=lambda path, flags: os.dup(ours.fileno()))
    options = f"transport=tcp,traddr=10.0.2.2,trsvcid=4420,nqn={SUBNQN}"
    assert add_controller(options, dev) == (7, 3)
    t.join(5)
    ours.close()
    kernels.close()
    assert got == [options]


def test_add_controller_retries_eagain():
    dev = FakeDevice(outcomes=[OSError(errno.EAGAIN, "again"), "instance=2,cntlid=5\n"])
    assert add_controller("transport=tcp", dev) == (2, 5)
    assert len(dev.written) == 2


OPTS = f"transport=tcp,traddr=10.0.2.2,trsvcid=4420,nqn={SUBNQN},hostnqn={HOSTNQN}"


@pytest.mark.parametrize("err, family, text", [
    (errno.ECONNREFUSED, ConnectError, "Connection refused"),
    (errno.EHOSTUNREACH, ConnectError, "No route to host"),
    (errno.ENETUNREACH, ConnectError, "Network is unreachable"),
    (errno.ETIMEDOUT, ConnectError, "timed out"),
    (errno.EALREADY, AlreadyConnected, "already connected"),
    (errno.EINVAL, UsageError, "rejected the options"),
    (errno.EKEYREJECTED, HostRefused, "rejected this host's authentication"),
    (errno.ENOKEY, Unsupported, "TLS key is missing"),
    (errno.EOPNOTSUPP, Unsupported, "does not support"),
    (errno.EACCES, DeviceError, "needs root"),
    (errno.EPERM, DeviceError, "needs root"),
    (errno.EIO, DeviceError, "kernel log has the NVMe status"),
    (errno.ENOMEM, DeviceError, "Cannot allocate memory"),
])
def test_errno_mapping(err, family, text):
    dev = FakeDevice(outcomes=[OSError(err, os.strerror(err))])
    with pytest.raises(family, match=text) as info:
        add_controller(OPTS, dev)
    message = str(info.value)
    assert "\n" not in message
    if family is not DeviceError or err == errno.EIO:
        assert message.startswith(f"10.0.2.2:4420 {SUBNQN}: ")


def test_einval_names_the_options():
    dev = FakeDevice(outcomes=[OSError(errno.EINVAL, "Invalid argument")])
    with pytest.raises(UsageError) as info:
        add_controller(OPTS, dev)
    assert OPTS in str(info.value)


def test_already_connected_is_a_usage_error():
    assert issubclass(AlreadyConnected, UsageError)


@pytest.mark.parametrize("answer", ["", "instance=-1,cntlid=-1\n", "garbage\n"])
def test_unexpected_answers(answer):
    with pytest.raises(DeviceError, match="unexpected answer"):
        add_controller("transport=tcp", FakeDevice(outcomes=[answer]))


def test_parse_answer():
    assert parse_answer("instance=12,cntlid=65\n") == (12, 65)
