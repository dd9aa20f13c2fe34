"""A reconnect rebuilt from the session's state keeps its DH-HMAC-CHAP secrets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from nvmecontrol.backends.model import REDACTED, ConnectParams
from nvmecontrol.backends.userspace.session import Session, SessionPaths

SECRET = "DHHC-1:00:ZjRjYjQ4ZjQ2ZjNhYjQ2MzU4NjhmZjkzYjdlYmNmNGSmm1Bz:"
CTRL = "DHHC-1:01:kkDLeSNaW0ZqWqRf4rKcwMvItdfAVcCXQlaWn4E+q8wfHQ0U:"


def session(params: ConnectParams) -> Session:
    return Session("nvmeu0", SessionPaths(Path("/nonexistent"), "nvmeu0"), params, None, None)


def test_redacted_secrets_are_the_sessions_own():
    own = ConnectParams("127.0.0.1", "4420", "nqn.s", "nqn.h", "0" * 8 + "-0000-0000-0000-" + "0" * 12,
                        dhchap_secret=SECRET, dhchap_ctrl_secret=CTRL)
    asked = replace(own, traddr="127.0.0.2", dhchap_secret=REDACTED, dhchap_ctrl_secret=REDACTED)
    got = session(own)._with_secrets(asked)
    assert (got.traddr, got.dhchap_secret, got.dhchap_ctrl_secret) == ("127.0.0.2", SECRET, CTRL)


def test_new_secrets_and_no_request_are_taken_as_they_are():
    own = ConnectParams("127.0.0.1", "4420", "nqn.s", "nqn.h", "0" * 8 + "-0000-0000-0000-" + "0" * 12,
                        dhchap_secret=SECRET)
    s = session(own)
    other = replace(own, dhchap_secret=CTRL)
    assert s._with_secrets(other) is other
    assert s._with_secrets(None) is own
