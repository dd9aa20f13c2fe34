"""Every example of docs/api.md runs, against nvmfd."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .backends.sessionkit import cli_ok, connect, session_guard

assert session_guard  # autouse: no session process outlives its example

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
HOSTID = "6d2b8f10-3c4e-4a5f-9b6c-7d8e9f0a1b2c"


def test_the_doc_has_examples():
    assert len(EXAMPLES) >= 6
    assert any("SESSION" in e for e in EXAMPLES)


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_example_runs(index, nvmfd_server, capsys):
    address = f"127.0.0.1:{nvmfd_server.port}"
    env = {"DISCOVERY": address, "ADDRESS": address, "SUBNQN": nvmfd_server.subnqn,
           "WHO": {"hostnqn": f"nqn.2014-08.org.nvmexpress:uuid:{HOSTID}", "hostid": HOSTID}}
    example = EXAMPLES[index]
    # Examples of api.open() work on a session the command line made.
    session = connect(nvmfd_server)["name"] if "SESSION" in example else None
    try:
        exec(compile(example, f"docs/api.md example {index + 1}", "exec"),
             {**env, "SESSION": session})
    finally:
        if session is not None:
            cli_ok("disconnect", session)
