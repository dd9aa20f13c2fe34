"""Install the man pages and shell completions where man(1) and the shells look.

    python3 -m nvmecontrol.install_extras [--prefix DIR] [--dry-run]

pip puts the console scripts on PATH but never writes outside the Python
environment, so the wheel carries ``man/`` and ``completions/`` as package
data (``nvmecontrol/_extras``, filled by setup.py at build time) and this
command copies them, for ``nvmecontrol`` and ``nvmfd`` alike, to:

    PREFIX/share/man/man8/NAME.8
    PREFIX/share/bash-completion/completions/NAME   (bash-completion loads by command name)
    PREFIX/share/zsh/site-functions/_NAME
    PREFIX/share/fish/vendor_completions.d/NAME.fish

PREFIX is /usr/local by default, which man, bash-completion, Debian's zsh
and fish all search.  Standard library and the exit-status table only: it
must run before anything else is set up.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

# sysexits(3), from the table both commands use (it imports nothing).
from nvmecontrol.exitcodes import EX_CANTCREAT, EX_NOINPUT, EX_NOPERM

DEFAULT_PREFIX = "/usr/local"
COMMANDS = ("nvmecontrol", "nvmfd")


def source_root() -> Path:
    """Where ``man/`` and ``completions/`` are: the package data of an
    installed wheel, else the source checkout (an editable install)."""
    packaged = Path(__file__).resolve().parent / "_extras"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent


def plan(prefix: str | Path, root: Path | None = None) -> list[tuple[Path, Path]]:
    """(source, destination) of every file to install."""
    root = source_root() if root is None else root
    share = Path(prefix) / "share"
    pairs = []
    for name in COMMANDS:
        pairs += [
            (root / "man" / f"{name}.8", share / "man" / "man8" / f"{name}.8"),
            (root / "completions" / f"{name}.bash",
             share / "bash-completion" / "completions" / name),
            (root / "completions" / f"_{name}", share / "zsh" / "site-functions" / f"_{name}"),
            (root / "completions" / f"{name}.fish",
             share / "fish" / "vendor_completions.d" / f"{name}.fish"),
        ]
    return pairs


def install(pairs: list[tuple[Path, Path]], *, dry_run: bool = False, out=None) -> None:
    out = sys.stdout if out is None else out
    for src, dst in pairs:
        if not dry_run:
            dst.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            dst.chmod(0o644)
        out.write(f"{'would install' if dry_run else 'installed'} {src} -> {dst}\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python3 -m nvmecontrol.install_extras",
        description="Install the nvmecontrol and nvmfd man pages and bash, zsh and fish "
                    "completions under PREFIX/share.")
    p.add_argument("--prefix", default=DEFAULT_PREFIX,
                   help=f"installation prefix (default {DEFAULT_PREFIX}; ~/.local for one user)")
    p.add_argument("--dry-run", action="store_true", help="only show what would be installed")
    args = p.parse_args(argv)
    pairs = plan(Path(args.prefix).expanduser())
    missing = [str(src) for src, _ in pairs if not src.is_file()]
    if missing:
        print(f"install_extras: missing from this installation: {', '.join(missing)}",
              file=sys.stderr)
        return EX_NOINPUT
    try:
        install(pairs, dry_run=args.dry_run)
    except PermissionError as e:
        print(f"install_extras: {e.filename}: permission denied "
              "(run as root, or choose another --prefix)", file=sys.stderr)
        return EX_NOPERM
    except OSError as e:
        print(f"install_extras: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return EX_CANTCREAT
    return 0


if __name__ == "__main__":
    sys.exit(main())
