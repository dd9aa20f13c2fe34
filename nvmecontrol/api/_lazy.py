"""Modules whose public names load on first use (PEP 562).

The API's modules name many things from many modules below them; loading
them all when a command imports one would cost its start-up (issue 13).
"""

from __future__ import annotations

import importlib
import sys


def lazy_names(module: str, where: dict, submodules: frozenset = frozenset()):
    """``__getattr__`` and ``__dir__`` for ``module``, whose names are those of
    ``where`` (name -> the module defining it) and its ``submodules``."""
    def __getattr__(name: str):
        if name in submodules:
            return importlib.import_module(f"{module}.{name}")
        source = where.get(name)
        if source is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source), name)
        setattr(sys.modules[module], name, value)  # once: later lookups are plain reads
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[module])) | set(where) | submodules)

    return __getattr__, __dir__
