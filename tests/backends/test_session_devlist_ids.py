"""devlist -v on a session: each namespace's identifiers and ANA state, read at session start."""

from __future__ import annotations

import json

from nvmecontrol.target.config import NamespaceConfig, PortConfig, SubsystemConfig, TargetConfig

from .sessionkit import HOST, HOSTID, SUBNQN, cli_ok, session_guard

assert session_guard  # autouse, imported for this module

NGUID = "00112233-4455-6677-8899-aabbccddeeff"
UUID = "0f1e2d3c-4b5a-4697-8877-665544332211"


def test_session_namespaces_carry_identifiers_and_ana_state(nvmfd_factory, session_guard):
    cfg = TargetConfig(
        subsystems=[SubsystemConfig(nqn=SUBNQN, allow_any_host=True, namespaces=[
            NamespaceConfig(1, "mem:1M", uuid=UUID, nguid=NGUID)])],
        ports=[PortConfig(1, "127.0.0.1", "0", subsystems=[SUBNQN])])
    target = nvmfd_factory(config=cfg)
    cli_ok("connect", "--backend", "nbd", "--no-attach", "-q", HOST, "-I", HOSTID,
           f"127.0.0.1:{target.port}", SUBNQN)
    (path,) = json.loads(cli_ok("devlist", "-v", "-o", "json"))["subsystems"][0]["paths"]
    (ns,) = path["namespaces"]
    assert (ns["nguid"], ns["uuid"]) == (NGUID.replace("-", ""), UUID)
    assert (ns["anagrpid"], ns["ana_state"]) == (1, "optimized")
    assert len(ns["eui64"]) == 16
    text = cli_ok("devlist", "-v")
    assert f"nguid={NGUID.replace('-', '')}" in text and "ana=optimized (group 1)" in text
    cli_ok("disconnect", "nvmeu0")
