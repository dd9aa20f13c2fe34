"""Every example of docs/api.md runs, against nvmfd."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
HOSTID = "6d2b8f10-3c4e-4a5f-9b6c-7d8e9f0a1b2c"


def test_the_doc_has_examples():
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_example_runs(index, nvmfd_server, capsys):
    address = f"127.0.0.1:{nvmfd_server.port}"
    env = {"DISCOVERY": address, "ADDRESS": address, "SUBNQN": nvmfd_server.subnqn,
           "WHO": {"hostnqn": f"nqn.2014-08.org.nvmexpress:uuid:{HOSTID}", "hostid": HOSTID}}
    exec(compile(EXAMPLES[index], f"docs/api.md example {index + 1}", "exec"), env)
