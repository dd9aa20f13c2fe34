"""Fixtures for the CLI tests.

``require_tool(name, package)``  the path of an external program (a shell,
mandoc, man); skips with the Debian package to install when it is missing,
except in CI (``CI=true``), where a missing tool is a failure.
"""

from __future__ import annotations

import os
import shutil

import pytest


def _require_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (Debian package {package}; see scripts/test-packages.txt)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def require_tool():
    return _require_tool


@pytest.fixture(autouse=True)
def _no_nvme_cli_files(monkeypatch, tmp_path_factory):
    """The host's /etc/nvme/discovery.conf and config.json stay out of the CLI tests
    (a test that wants one points these at its own file)."""
    from nvmecontrol.cli import discovery_conf, fabrics_config

    missing = tmp_path_factory.getbasetemp() / "no-such-nvme-cli-file"
    monkeypatch.setattr(discovery_conf, "DISCOVERY_CONF", missing)
    monkeypatch.setattr(fabrics_config, "CONFIG_JSON", missing)
