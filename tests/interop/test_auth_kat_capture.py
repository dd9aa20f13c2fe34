"""Capture DH-HMAC-CHAP exchanges with the Linux kernel as known-answer fixtures (opt-in).

    NVMECONTROL_CAPTURE_DHCHAP_KAT=1 python -m pytest tests/interop/test_auth_kat_capture.py

rewrites ``tests/wire/fixtures/dhchap_kernel.json``, which the hermetic
``tests/wire/test_auth_kat.py`` replays.  Two directions, so both of the
kernel's computations are pinned:

* kernel as controller: our host against the guest's nvmet (admin queue
  only).  The kernel produced C1, S1, its DH value and, both ways, R2; it
  accepted our R1.
* kernel as host: ``nvme connect`` in the guest against nvmfd.  The kernel
  produced its DH value, R1 and, both ways, C2 and S2; it accepted our R2.

Our side's DH private value is chosen here and recorded, so the shared
secret can be recomputed from the fixture alone.  Only the first
transaction (queue 0) of each connection is kept.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import uuid
from pathlib import Path

import pytest

from nvmecontrol.host.association import AssociationParams, connect_association
from nvmecontrol.hostid import HostIdentity
from nvmecontrol.transport.address import Address
from nvmecontrol.wire import auth as A
from nvmecontrol.wire import auth_crypto as C
from nvmecontrol.wire.auth_crypto import DHGROUP_NAMES, HASH_NAMES, DhGroup, HashId
from nvmecontrol.wire.dhchap_key import format_secret, generate_secret, parse_secret

from .nvmet import Host, Namespace, NvmetConfig, Port, Subsystem

FIXTURE = Path(__file__).resolve().parents[1] / "wire" / "fixtures" / "dhchap_kernel.json"
ENABLE = "NVMECONTROL_CAPTURE_DHCHAP_KAT"

pytestmark = pytest.mark.skipif(os.environ.get(ENABLE) != "1",
                                reason=f"captures fixtures only with {ENABLE}=1")

NQN = "nqn.2014-08.org.nvmexpress.test:kat"
HOSTID = "0c9e7a52-41d3-4b6f-9a28-5e7f0d1c2b3a"
OUR_HOST = f"nqn.2014-08.org.nvmexpress:uuid:{HOSTID}"
GUEST_HOST = "nqn.2014-08.org.nvmexpress:uuid:5d3c2b1a-0f9e-4d8c-b7a6-958473625140"

# (hash, group, bidirectional, key transform): every hash, null and ffdhe2048,
# one way and both ways, and an untransformed key.
KERNEL_CONTROLLER = [(HashId.SHA256, DhGroup.NULL, False, 1), (HashId.SHA256, DhGroup.FFDHE2048, True, 1),
                     (HashId.SHA384, DhGroup.NULL, True, 2), (HashId.SHA384, DhGroup.FFDHE2048, False, 2),
                     (HashId.SHA512, DhGroup.NULL, False, 3), (HashId.SHA512, DhGroup.FFDHE2048, True, 3),
                     (HashId.SHA256, DhGroup.NULL, True, 0)]
KERNEL_HOST = [(HashId.SHA256, DhGroup.NULL, True, 1), (HashId.SHA256, DhGroup.FFDHE2048, False, 1),
               (HashId.SHA384, DhGroup.FFDHE2048, True, 2), (HashId.SHA512, DhGroup.NULL, False, 3),
               (HashId.SHA512, DhGroup.FFDHE2048, True, 0)]


def _private(group: int) -> int | None:
    if group == DhGroup.NULL:
        return None
    bits = C._EXPONENT_BITS[DhGroup(group)]
    return secrets.randbits(bits) | (1 << (bits - 1))


def _case(kernel_role, hash_id, group, bidi, hostnqn, host_key, ctrl_key, private, messages):
    """The fixture record of one transaction, from its messages in order."""
    ch = next(A.decode_message(m) for side, m in messages if side == "controller")
    reply = next(A.decode_message(m) for side, m in messages
                 if side == "host" and type(A.decode_message(m)) is A.Reply)
    s1 = next(A.decode_message(m) for side, m in messages
              if side == "controller" and type(A.decode_message(m)) is A.Success1)
    return {
        "kernel": kernel_role, "hash_id": int(hash_id), "dhgroup": int(group),
        "bidirectional": bidi, "hostnqn": hostnqn, "subnqn": NQN,
        "host_key": host_key, "ctrl_key": ctrl_key if bidi else None,
        "t_id": ch.t_id, "s1": ch.seqnum, "c1": ch.cval.hex(), "ctrl_dhv": ch.dhv.hex(),
        "host_dhv": reply.dhv.hex(), "private": f"{private:x}" if private is not None else None,
        "r1": reply.rval.hex(), "s2": reply.seqnum, "c2": reply.cval.hex() if bidi else "",
        "r2": s1.rval.hex() if s1.rval is not None else None,
        "messages": [[side, m.hex()] for side, m in messages],
    }


def test_capture(linux_guest, kernel_target, nvmfd_factory, monkeypatch):
    if linux_guest.kernel.config("NVME_TARGET_AUTH") not in ("y", "m") \
            or linux_guest.kernel.config("NVME_HOST_AUTH") != "y":
        pytest.skip("guest kernel lacks NVME_TARGET_AUTH or NVME_HOST_AUTH")
    cases = [_kernel_controller(kernel_target, monkeypatch, *c) for c in KERNEL_CONTROLLER]
    kernel_target.clear()
    cases += [_kernel_host(linux_guest, nvmfd_factory, monkeypatch, *c) for c in KERNEL_HOST]
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps({
        "about": "DH-HMAC-CHAP transactions with Linux " + linux_guest.kernel.release
                 + " (tests/interop/test_auth_kat_capture.py); replayed by tests/wire/"
                   "test_auth_kat.py",
        "cases": cases}, indent=1) + "\n")


def _kernel_controller(kernel_target, monkeypatch, hash_id, group, bidi, transform):
    """Our host against nvmet: record what went both ways on the admin queue."""
    host_key = format_secret(generate_secret(transform=transform))
    ctrl_key = format_secret(generate_secret(transform=transform))
    host, port = kernel_target.apply(NvmetConfig(
        subsystems=[Subsystem(NQN, [Namespace(1, size_mib=8)], allow_any_host=False,
                              allowed_hosts=[OUR_HOST])],
        hosts=[Host(OUR_HOST, dhchap_key=host_key, dhchap_ctrl_key=ctrl_key,
                    dhchap_hash=HASH_NAMES[hash_id], dhchap_dhgroup=DHGROUP_NAMES[group])],
        ports=[Port(1, 4420, subsystems=[NQN])]))
    private = _private(group)
    messages: list = []

    class Recording(A.HostAuth):
        def __init__(self, **kw):
            super().__init__(**kw, dh_private=private)

        def next_action(self, now):
            action = super().next_action(now)
            if type(action) is A.Send and self.qid == 0:
                messages.append(("host", action.data))
            return action

        def received(self, data, now):
            if self.qid == 0:
                msg = A.encode_message(A.decode_message(data))  # without the AL padding
                messages.append(("controller", msg))
            super().received(data, now)

    monkeypatch.setattr(A, "HostAuth", Recording)  # host.association reads it at each use
    try:
        params = AssociationParams(timeout_s=30, dhchap_secret=parse_secret(host_key),
                                   dhchap_ctrl_secret=parse_secret(ctrl_key) if bidi else None)
        who = HostIdentity(OUR_HOST, uuid.UUID(HOSTID), "test", "test")
        connect_association(Address(host, port, f"{host}:{port}"), NQN, who, params).shutdown()
    finally:
        monkeypatch.undo()
    return _case("controller", hash_id, group, bidi, OUR_HOST, host_key, ctrl_key, private,
                 messages)


def _kernel_host(guest, nvmfd_factory, monkeypatch, hash_id, group, bidi, transform):
    """``nvme connect`` in the guest against nvmfd: record queue 0's transaction."""
    from nvmecontrol.target.config import HostAuthConfig

    from tests.conftest import simple_config

    from .test_kernel_host_nvmfd import HOST_FROM_GUEST, _nvme

    host_key = format_secret(generate_secret(transform=transform))
    ctrl_key = format_secret(generate_secret(transform=transform))
    private = _private(group)
    messages: list = []

    class Recording(A.ControllerAuth):
        def __init__(self, **kw):
            super().__init__(**kw, dh_private=private)
            self.recording = kw["qid"] == 0 and not messages

        def on_send(self, data, now):
            if self.recording:
                messages.append(("host", A.encode_message(A.decode_message(data))))
            super().on_send(data, now)

        def on_receive(self, al, now):
            out = super().on_receive(al, now)
            if self.recording:
                messages.append(("controller", out))
            return out

    cfg = simple_config(namespaces=["mem:8M"], addresses=("127.0.0.1",), allow_hosts=[GUEST_HOST],
                        subnqn=NQN)
    cfg.host_auth[GUEST_HOST] = HostAuthConfig(host_key, ctrl_key, HASH_NAMES[hash_id],
                                               DHGROUP_NAMES[group])
    srv = nvmfd_factory(cfg)
    monkeypatch.setattr(A, "ControllerAuth", Recording)
    auth = f"--dhchap-secret={shlex.quote(host_key)}"
    if bidi:
        auth += f" --dhchap-ctrl-secret={shlex.quote(ctrl_key)}"
    try:
        res = _nvme(guest, f"connect -t tcp -a {HOST_FROM_GUEST} -s {srv.port} -n {NQN} "
                           f"-q {GUEST_HOST} {auth}")
        assert res.ok, res.stderr
        _nvme(guest, f"disconnect -n {NQN}")
    finally:
        monkeypatch.undo()
    return _case("host", hash_id, group, bidi, GUEST_HOST, host_key, ctrl_key, private, messages)
