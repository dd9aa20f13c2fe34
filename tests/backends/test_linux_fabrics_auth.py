"""DH-HMAC-CHAP secrets on the way to /dev/nvme-fabrics, and kept out of what is printed."""

from __future__ import annotations

import errno

import pytest

from nvmecontrol.backends.linux_fabrics import add_error, build_options, redact_secrets
from nvmecontrol.backends.model import REDACTED, ConnectParams, ControllerInfo
from nvmecontrol.errors import UsageError, Unsupported
from nvmecontrol.wire.auth_crypto import DhchapKey

from tests.backends.test_linux_fabrics import ALL, BASE_OPTIONS, params

HOST_KEY = "DHHC-1:00:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:"
CTRL_KEY = "DHHC-1:01:bOHk6jHoMxpP5YJr/eF6XNOGuPAzh0iRniebpsVb9ydqVuR5:"


def test_secrets_go_to_the_kernel():
    built = build_options(params(dhchap_secret=HOST_KEY, dhchap_ctrl_secret=CTRL_KEY),
                          supported=ALL)
    parts = built.text.split(",")
    assert f"dhchap_secret={HOST_KEY}" in parts and f"dhchap_ctrl_secret={CTRL_KEY}" in parts
    assert built.warnings == []


def test_no_secret_no_option():
    assert "dhchap" not in build_options(params(), supported=ALL).text


def test_a_kernel_without_the_options_is_an_error_not_a_silent_downgrade():
    with pytest.raises(Unsupported, match="dhchap_secret"):
        build_options(params(dhchap_secret=HOST_KEY), supported=BASE_OPTIONS)


def test_error_messages_hide_the_secrets():
    options = build_options(params(dhchap_secret=HOST_KEY, dhchap_ctrl_secret=CTRL_KEY),
                            supported=ALL).text
    assert HOST_KEY not in redact_secrets(options) and "dhchap_secret=<secret>" in redact_secrets(options)
    err = add_error(options, OSError(errno.EINVAL, "Invalid argument"))
    assert isinstance(err, UsageError)
    assert HOST_KEY not in str(err) and CTRL_KEY not in str(err)
    assert "rejected this host" in str(add_error(options, OSError(errno.EKEYREJECTED, "")))


def test_params_carry_parsed_secrets_to_the_association():
    p = params(dhchap_secret=HOST_KEY, dhchap_ctrl_secret=CTRL_KEY)
    a = p.association_params()
    assert a.dhchap_secret == DhchapKey(bytes(range(32)), 0)
    assert a.dhchap_ctrl_secret.transform == 1
    # The handoff to a session (to_json/from_json) keeps them.
    assert ConnectParams.from_json(p.to_json()).association_params().dhchap_secret == a.dhchap_secret


def test_printed_controllers_show_only_that_a_secret_is_set():
    p = params(dhchap_secret=HOST_KEY, dhchap_ctrl_secret=CTRL_KEY)
    shown = ControllerInfo(name="nvmeu0", backend="nbd", params=p).to_json()
    assert shown["params"]["dhchap_secret"] == shown["params"]["dhchap_ctrl_secret"] == REDACTED
    assert p.dhchap_secret == HOST_KEY  # the live params keep it
    # Read back (a state file), a redacted secret is no secret at all.
    back = ConnectParams.from_json(shown["params"]).association_params()
    assert back.dhchap_secret is None
    plain = ControllerInfo(name="nvme0", backend="kernel", params=params()).to_json()
    assert plain["params"]["dhchap_secret"] is None
