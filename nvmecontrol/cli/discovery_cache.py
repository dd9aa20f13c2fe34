"""The subsystem NQNs last discovered at each address, for shell completions.

``connect ADDRESS <TAB>`` must offer NQNs without running Python, so every
successful ``discover`` leaves them where a shell can read them:
``${XDG_CACHE_HOME:-$HOME/.cache}/nvmecontrol/discovery/<address>``, one
NQN per line, with ``: / [ ]`` in the address replaced by ``_`` (the
completion scripts mangle the same way).  A cache is a convenience: when it
cannot be written, nothing is reported and the command still succeeds.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

_MANGLE = str.maketrans({":": "_", "/": "_", "[": "_", "]": "_"})


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME") or str(Path.home()), ".cache")
    return Path(base) / "nvmecontrol" / "discovery"


def path_for(address_text: str, environ: Mapping[str, str] | None = None) -> Path:
    return cache_dir(environ) / address_text.translate(_MANGLE)


def save(address_text: str, nqns: Iterable[str], environ: Mapping[str, str] | None = None) -> None:
    """Replace the cached NQNs of ``address_text`` (in order, without duplicates)."""
    name = address_text.translate(_MANGLE)
    if name in ("", ".", ".."):  # would name the directory itself, not a file in it
        return
    unique = list(dict.fromkeys(n for n in nqns if n))
    try:
        directory = cache_dir(environ)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write("".join(f"{n}\n" for n in unique))
            os.replace(tmp, directory / name)  # a TAB never reads half a file
        except BaseException:
            os.unlink(tmp)
            raise
    except (OSError, RuntimeError):  # RuntimeError: no home directory to be found
        pass
