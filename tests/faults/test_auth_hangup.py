"""A controller that hangs up after our DH-HMAC-CHAP response instead of answering it.

The Linux target sometimes tears the controller down after a response that
failed verification before its Failure1 is read (seen in the interop tier:
"connection closed by peer", exit 74). The host must report what that
means, a rejected host key (HostKeyRejected, exit 77), in one line.
"""

from __future__ import annotations

import pytest

from nvmecontrol.target.config import HostAuthConfig
from nvmecontrol.transport.address import Address
from nvmecontrol.wire import auth as A
from nvmecontrol.wire.dhchap_key import format_secret, generate_secret, parse_secret

from tests.conftest import simple_config

from ..target.helpers import connect, make_host
from .proxy import H2C, Fault

HOST = make_host()
KEY = format_secret(generate_secret(transform=1))


class Via:
    """The target as the host sees it: through the proxy."""

    def __init__(self, port: int, subnqn: str):
        self.host, self.port, self.subnqn = "127.0.0.1", port, subnqn
        self.address = Address(self.host, port, f"{self.host}:{port}")


@pytest.mark.parametrize("nth, expect", [
    # Connect, Negotiate (Send), Challenge (Receive), Reply (Send), then the
    # Receive of Success1: the reset there is the hang-up after our response.
    (5, A.HostKeyRejected),
    # Before our response went out, a lost connection is only that.
    (3, None),
])
def test_hangup_after_our_response_is_a_rejected_key(nvmfd_factory, proxy_factory, nth, expect):
    cfg = simple_config(allow_hosts=[HOST.hostnqn])
    cfg.host_auth[HOST.hostnqn] = HostAuthConfig(KEY, None, "hmac(sha256)", "null")
    target = nvmfd_factory(cfg)
    proxy = proxy_factory(target.port, [Fault("reset", direction=H2C, pdu="CapsuleCmd",
                                              nth=nth, queue="admin", limit=1)])
    with pytest.raises(Exception) as e:
        connect(Via(proxy.port, target.subnqn), host=HOST, dhchap_secret=parse_secret(KEY))
    if expect is not None:
        assert type(e.value) is expect, repr(e.value)
        assert "most likely rejected" in str(e.value) and "\n" not in str(e.value)
    else:
        assert not isinstance(e.value, A.HostKeyRejected), repr(e.value)
