"""What several CLI test files share: running the CLI in process, a one-namespace nvmfd."""

from __future__ import annotations

from nvmecontrol.cli.app import main
from nvmecontrol.target.config import NamespaceConfig, PortConfig, SubsystemConfig, TargetConfig


def cli(capsys, *argv):
    """(exit status, stdout, stderr) of ``nvmecontrol ARGV`` run in this process."""
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def one_namespace_target(nvmfd_factory, subnqn: str) -> str:
    """``127.0.0.1:PORT`` of an nvmfd serving ``subnqn`` (one 4 MiB RAM namespace, any host)."""
    cfg = TargetConfig(subsystems=[SubsystemConfig(nqn=subnqn, allow_any_host=True,
                                                   namespaces=[NamespaceConfig(1, "mem:4M")])],
                       ports=[PortConfig(1, "127.0.0.1", "0", subsystems=[subnqn])])
    return f"127.0.0.1:{nvmfd_factory(config=cfg).port}"
