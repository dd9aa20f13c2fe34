"""The import table of the design (shared/design/architecture.md), enforced.

Every module of the package is parsed (not imported) and each import of
another nvmecontrol module, or of typer/rich/tabulate, is checked against
what its layer may use.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "nvmecontrol"

# layer -> layers it may import (besides itself)
ALLOWED = {
    "errors": set(),
    "nqn": {"errors"},
    "hostid": {"errors", "nqn"},
    "recvbuf": set(),
    "wire": {"errors", "nqn", "recvbuf"},
    "nbd": {"errors", "recvbuf"},
    "transport": {"errors", "nqn", "wire"},
    "host": {"errors", "nqn", "hostid", "wire", "transport"},
    "backends": {"errors", "nqn", "hostid", "wire", "transport", "host", "nbd"},
    "target": {"errors", "nqn", "hostid", "wire", "transport"},
    # The public API (docs/api.md): what the CLI does, for programs.
    "api": {"errors", "nqn", "hostid", "wire", "transport", "host", "backends"},
    "cli": {"errors", "nqn", "hostid", "wire", "transport", "host", "backends", "nbd", "api",
            "__init__"},
    "__init__": set(),
    "__main__": {"cli"},
    "install_extras": set(),  # stdlib only: runs before anything else is set up
}
UI_LIBS = {"typer", "rich", "tabulate"}


def layer_of(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported_modules(path: pathlib.Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    pkg = ".".join(("nvmecontrol",) + path.relative_to(ROOT).parent.parts)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            yield node.lineno, mod
            if mod == "nvmecontrol":
                for alias in node.names:
                    if not alias.name.startswith("__"):  # package attributes
                        yield node.lineno, f"nvmecontrol.{alias.name}"


MODULES = sorted(p for p in ROOT.rglob("*.py"))


def test_package_has_modules():
    assert len(MODULES) > 20


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layers(path):
    layer = layer_of(path)
    assert layer in ALLOWED, f"{layer} is not a layer of the design"
    for lineno, mod in imported_modules(path):
        top = mod.split(".")[0]
        if top in UI_LIBS:
            assert layer == "cli", f"{path.name}:{lineno} imports {top}; only cli may"
        if top != "nvmecontrol" or mod == "nvmecontrol":
            continue
        target = mod.split(".")[1]
        if target == layer:
            continue
        assert target in ALLOWED[layer], f"{path.name}:{lineno}: {layer} may not import {mod}"


@pytest.mark.parametrize("package", ["wire", "nbd"])
def test_protocol_packages_do_no_io(package):
    forbidden = {"socket", "select", "selectors", "threading", "time", "os", "asyncio"}
    for path in (ROOT / package).rglob("*.py"):
        for lineno, mod in imported_modules(path):
            assert mod.split(".")[0] not in forbidden, f"{package}/{path.name}:{lineno} imports {mod}"


def test_only_backends_touch_dev_and_sys():
    # hostid reads DMI's product_uuid by design (host identity resolution).
    for path in MODULES:
        if layer_of(path) in ("backends", "hostid"):
            continue
        text = path.read_text()
        for needle in ('"/dev/', '"/sys/', "ioctl("):
            assert needle not in text, f"{path.relative_to(ROOT)} touches {needle}"
