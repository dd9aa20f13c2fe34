"""The import table of the design (shared/design/architecture.md), enforced.

Every module of the package is parsed (not imported) and checked:

* each import of another nvmecontrol module, or of typer/rich/tabulate, is
  one its layer may use (imports inside functions and dynamic imports with a
  literal name count as well);
* the protocol packages (``wire``, ``nbd``) are sans-IO: no I/O, process,
  thread or clock modules, no ``open()``, no device or sysfs paths, no
  dynamic imports (which would hide what they load from this test);
* only ``backends`` touches ``/dev``, ``/sys`` or ioctls (and ``hostid``,
  which reads DMI's product_uuid by design);
* every cli module imports only the public API (issue 14): ``nvmecontrol.api``
  and the tables both programs share, never the layers below.

Each rule is also run on a package planted in tmp_path with one violation
per module, to prove that it fails when it should.
"""

from __future__ import annotations

import ast
import pathlib
import re
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "nvmecontrol"

# layer -> layers it may import (besides itself)
ALLOWED = {
    "errors": set(),
    "exitcodes": set(),  # the sysexits table both programs share
    "options": set(),  # the option table: spellings, defaults, bounds, help
    "tuning": {"options"},  # the one record of an association's tuning
    "nqn": {"errors"},
    "hostid": {"errors", "nqn"},
    "recvbuf": set(),
    "wire": {"errors", "nqn", "recvbuf"},
    "nbd": {"errors", "recvbuf"},
    "transport": {"errors", "nqn", "wire"},
    "host": {"errors", "options", "nqn", "hostid", "wire", "transport"},
    "backends": {"errors", "options", "tuning", "nqn", "hostid", "wire", "transport", "host",
                 "nbd"},
    "target": {"errors", "exitcodes", "nqn", "hostid", "wire", "transport"},
    # The public API (docs/api.md): what the CLI does, for programs.
    "api": {"errors", "options", "tuning", "nqn", "hostid", "wire", "transport", "host",
            "backends", "nbd"},
    "cli": {"errors", "exitcodes", "options", "nqn", "hostid", "wire", "transport", "host",
            "backends", "nbd", "api", "__init__"},
    "__init__": set(),
    "__main__": {"cli"},
    "install_extras": {"exitcodes"},  # nothing else: runs before anything else is set up
}
UI_LIBS = {"typer", "rich", "tabulate"}

# Issue 14: the CLI is a shell over the public API.  What a cli module may
# import: the cli package itself, the API with its error families
# (re-exported by nvmecontrol.api), and the two standard library tables
# both programs share.
PUBLIC_API = {"api", "errors", "exitcodes", "options", "__init__"}

# What a sans-IO package may not import: sockets and polling, files and
# processes, threads and the clock, raw memory and ioctls, and the import
# machinery.  (recvbuf.py, outside wire, owns the receive buffer's mmap.)
SANS_IO_PACKAGES = ("wire", "nbd")
IO_MODULES = frozenset({
    "socket", "ssl", "select", "selectors", "asyncio", "socketserver", "http", "urllib",
    "os", "io", "pathlib", "shutil", "tempfile", "glob", "fileinput", "sys", "builtins",
    "subprocess", "multiprocessing", "signal", "pty", "fcntl", "termios", "mmap", "ctypes",
    "threading", "_thread", "queue", "concurrent", "time", "sched", "importlib", "pkgutil",
    "runpy",
})
# Calls that do I/O or import behind this test's back.
IO_CALLS = frozenset({"open", "__import__", "exec", "eval", "compile"})
# "/dev/nvme0", "/sys/class/nvme", and the relative "sys/class/..." a sysroot joins.
DEVICE_PATH = re.compile(r"^/?(dev|sys)(/|$)")
# Layers allowed to name device and sysfs paths and to call ioctl.
DEVICE_LAYERS = {"backends", "hostid"}


# -- what a module does, from its syntax tree -----------------------------------------------

def layer_of(root: pathlib.Path, path: pathlib.Path) -> str:
    rel = path.relative_to(root)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _called_name(call: ast.Call) -> str | None:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


def _literal_prefix(node: ast.AST) -> str | None:
    """A string literal, or the literal start of an f-string."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values \
            and isinstance(node.values[0], ast.Constant):
        return node.values[0].value
    return None


def imported_modules(root: pathlib.Path, path: pathlib.Path):
    """(line, module) for every import, literal dynamic imports included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    pkg = ".".join((root.name,) + path.relative_to(root).parent.parts)
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
            if mod == root.name:
                for alias in node.names:
                    if not alias.name.startswith("__"):  # package attributes
                        yield node.lineno, f"{root.name}.{alias.name}"
        elif isinstance(node, ast.Call) and _called_name(node) in ("import_module", "__import__") \
                and node.args:
            name = _literal_prefix(node.args[0])
            if name:
                yield node.lineno, name


def layer_violations(root: pathlib.Path, path: pathlib.Path) -> list[str]:
    layer = layer_of(root, path)
    if layer not in ALLOWED:
        return [f"{path.name}: {layer} is not a layer of the design"]
    found = []
    for lineno, mod in imported_modules(root, path):
        top = mod.split(".")[0]
        if top in UI_LIBS and layer != "cli":
            found.append(f"{path.name}:{lineno} imports {top}; only cli may")
        if top != root.name or mod == root.name:
            continue
        target = mod.split(".")[1]
        if target != layer and target not in ALLOWED[layer]:
            found.append(f"{path.name}:{lineno}: {layer} may not import {mod}")
    return found


def api_violations(root: pathlib.Path, path: pathlib.Path) -> list[str]:
    """What a cli module on the public API may not import: the layers below it."""
    found = []
    for lineno, mod in imported_modules(root, path):
        parts = mod.split(".")
        if parts[0] == root.name and mod != root.name \
                and parts[1] not in PUBLIC_API | {"cli"}:
            found.append(f"{path.name}:{lineno} imports {mod}; only the public API")
    return found


def io_violations(root: pathlib.Path, path: pathlib.Path) -> list[str]:
    """What a sans-IO module may not do."""
    found = [f"{path.name}:{lineno} imports {mod}"
             for lineno, mod in imported_modules(root, path)
             if mod.split(".")[0] in IO_MODULES]
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in IO_CALLS:
            found.append(f"{path.name}:{node.lineno} calls {node.func.id}()")
    return list(dict.fromkeys(found + device_violations(path)))  # fcntl: one finding


def device_violations(path: pathlib.Path) -> list[str]:
    """Device or sysfs paths named, ioctls called."""
    found = []
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        # Constants only: an f-string's literal parts are constants of their own.
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and DEVICE_PATH.match(node.value):
            found.append(f"{path.name}:{node.lineno} names {node.value!r}")
        elif isinstance(node, ast.Call) and _called_name(node) == "ioctl":
            found.append(f"{path.name}:{node.lineno} calls ioctl()")
    for lineno, mod in imported_modules(path.parent, path):
        if mod.split(".")[0] == "fcntl":
            found.append(f"{path.name}:{lineno} imports fcntl")
    return found


def modules(root: pathlib.Path, layers=None) -> list[pathlib.Path]:
    return sorted(p for p in root.rglob("*.py")
                  if layers is None or layer_of(root, p) in layers)


# -- the package --------------------------------------------------------------------------------

MODULES = modules(ROOT)


def test_package_has_modules():
    assert len(MODULES) > 20
    assert len(modules(ROOT, SANS_IO_PACKAGES)) > 10


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layers(path):
    assert layer_violations(ROOT, path) == []


@pytest.mark.parametrize("path", modules(ROOT, SANS_IO_PACKAGES),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_protocol_packages_do_no_io(path):
    assert io_violations(ROOT, path) == []


def test_only_backends_touch_dev_and_sys():
    found = [v for p in MODULES if layer_of(ROOT, p) not in DEVICE_LAYERS
             for v in device_violations(p)]
    assert found == []


@pytest.mark.parametrize("path", modules(ROOT, {"cli"}),
                         ids=lambda p: str(p.relative_to(ROOT / "cli")))
def test_cli_modules_use_only_the_public_api(path):
    assert api_violations(ROOT, path) == []


def test_backends_do_name_devices():
    # The rule looks at the right things: the backends are full of them.
    assert any(device_violations(p) for p in modules(ROOT, {"backends"}))


# -- the rules, proven on planted violations ------------------------------------------------------

PLANTED_IO = {
    "imports_socket.py": ("import socket\n", "imports socket"),
    "imports_subprocess.py": ("from subprocess import run\n", "imports subprocess"),
    "imports_fcntl.py": ("import fcntl\n", "imports fcntl"),
    "imports_os_path.py": ("import os.path\n", "imports os.path"),
    "imports_select.py": ("import select\n", "imports select"),
    "imports_mmap.py": ("import mmap\n", "imports mmap"),
    "imports_threading.py": ("import threading\n", "imports threading"),
    "imports_time.py": ("def now():\n    import time\n    return time.time()\n", "imports time"),
    "calls_open.py": ("def load(p):\n    return open(p).read()\n", "calls open()"),
    "names_dev.py": ("NODE = '/dev/nvme0'\n", "names '/dev/nvme0'"),
    "names_sys.py": ("def attr(n):\n    return f'/sys/class/nvme/{n}'\n",
                     "names '/sys/class/nvme/'"),
    "names_sysroot.py": ("CLASS = 'sys/class/nvme'\n", "names 'sys/class/nvme'"),
    "imports_importlib.py": ("import importlib\n", "imports importlib"),
    "dunder_import.py": ("def load(n):\n    return __import__(n)\n", "calls __import__()"),
    "calls_ioctl.py": ("def f(x, fd):\n    return x.ioctl(fd, 1)\n", "calls ioctl()"),
}
CLEAN_WIRE = textwrap.dedent('''\
    """A PDU: see /dev and /sys mentioned in prose, which is fine."""
    import struct
    from enum import IntEnum

    from nvmecontrol.errors import PeerProtocolError

    HEADER = struct.Struct("<BBBBI")
    NOTE = "the device /dev/nvme0 in a sentence"
''')


@pytest.fixture
def planted(tmp_path) -> pathlib.Path:
    """A package named nvmecontrol under tmp_path, with violations in wire/ and cli/."""
    root = tmp_path / "nvmecontrol"
    (root / "wire").mkdir(parents=True)
    (root / "cli").mkdir()
    (root / "host").mkdir()
    for name, (src, _) in PLANTED_IO.items():
        (root / "wire" / name).write_text(src)
    (root / "wire" / "clean.py").write_text(CLEAN_WIRE)
    (root / "wire" / "imports_host.py").write_text("from nvmecontrol.host import queue\n")
    (root / "wire" / "imports_host_late.py").write_text(
        "def f():\n    from ..host import queue\n    return queue\n")
    (root / "wire" / "imports_host_dynamically.py").write_text(
        "import importlib\nq = importlib.import_module('nvmecontrol.host.queue')\n")
    (root / "host" / "imports_rich.py").write_text("import rich\n")
    (root / "host" / "imports_cli.py").write_text("from nvmecontrol import cli\n")
    (root / "cli" / "names_dev.py").write_text("DEFAULT = '/dev/nvme0'\n")
    (root / "cli" / "calls_ioctl.py").write_text("import fcntl\nfcntl.ioctl(0, 1)\n")
    (root / "cli" / "fine.py").write_text("import rich\nfrom nvmecontrol.host import queue\n")
    return root


@pytest.mark.parametrize("name", sorted(PLANTED_IO))
def test_each_io_rule_fails_on_its_violation(planted, name):
    found = io_violations(planted, planted / "wire" / name)
    assert len(found) == 1 and found[0].endswith(PLANTED_IO[name][1]), found


def test_a_clean_protocol_module_passes(planted):
    assert io_violations(planted, planted / "wire" / "clean.py") == []
    assert layer_violations(planted, planted / "wire" / "clean.py") == []


@pytest.mark.parametrize("name, expected", [
    ("wire/imports_host.py", "wire may not import nvmecontrol.host"),
    ("wire/imports_host_late.py", "wire may not import nvmecontrol.host"),
    ("wire/imports_host_dynamically.py", "wire may not import nvmecontrol.host.queue"),
    ("host/imports_rich.py", "imports rich; only cli may"),
    ("host/imports_cli.py", "host may not import nvmecontrol.cli"),
])
def test_layer_rule_fails_on_planted_imports(planted, name, expected):
    found = layer_violations(planted, planted / name)
    assert len(found) == 1 and found[0].endswith(expected), found


def test_api_rule_fails_on_a_cli_module_below_the_api(planted):
    (planted / "cli" / "on_api.py").write_text(
        "from nvmecontrol import api\nfrom nvmecontrol.errors import UsageError\n"
        "from nvmecontrol.cli import output\nfrom . import table\n")
    (planted / "cli" / "late_wire.py").write_text(
        "from nvmecontrol import api\ndef f():\n    from ..wire import identify\n"
        "    return identify\n")
    assert api_violations(planted, planted / "cli" / "on_api.py") == []
    assert api_violations(planted, planted / "cli" / "late_wire.py") == \
        ["late_wire.py:3 imports nvmecontrol.wire; only the public API"]
    assert api_violations(planted, planted / "cli" / "fine.py") == \
        ["fine.py:2 imports nvmecontrol.host; only the public API"]


def test_layer_rule_passes_what_cli_may_do(planted):
    assert layer_violations(planted, planted / "cli" / "fine.py") == []


def test_device_rule_fails_outside_backends(planted):
    assert device_violations(planted / "cli" / "names_dev.py") == \
        ["names_dev.py:1 names '/dev/nvme0'"]
    assert device_violations(planted / "cli" / "calls_ioctl.py") == \
        ["calls_ioctl.py:2 calls ioctl()", "calls_ioctl.py:1 imports fcntl"]
    assert device_violations(planted / "cli" / "fine.py") == []
