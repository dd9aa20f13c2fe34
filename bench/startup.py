"""Start-up of every command, as a ratio to a bare interpreter start.

Scripts call ``nvmecontrol devlist`` in loops and the shell completions call
it on TAB, so a command must start in at most 4x ``python -c pass`` with
the same interpreter.  Each round times the bare start and every command
back to back (the best of a few runs of each, so one scheduling hiccup of a
shared machine does not count); a measure is the median of its per-round
ratios.  The commands run as users run them: the console scripts beside the
interpreter, bytecode written and reused, a private cache (help texts
warmed once) and runtime directory.

    python -m bench.startup [--rounds N]    # the table alone, about 20 s
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.measures import Measure
from nvmecontrol.cli.commands import SUBCOMMANDS

TARGET_RATIO = 4.0
# A valid DH-HMAC-CHAP secret (gen-dhchap-key -s 000102...1f) for check-dhchap-key.
_KEY = "DHHC-1:00:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:"
RUNS_PER_ROUND = 5  # best of: the fastest run is the one the machine did not disturb
WHY = "scripts and shell completions run commands in loops"


def _key(name: str) -> str:
    return "startup_" + name.replace("-", "_").replace(" ", "_")


# (key suffix, program, arguments)
COMMANDS: list[tuple[str, str, list[str]]] = (
    [("help", "nvmecontrol", ["--help"]), ("devlist", "nvmecontrol", ["devlist"])]
    + [(f"{s.name} help", "nvmecontrol", [s.name, "--help"]) for s in SUBCOMMANDS]
    + [("nvmfd help", "nvmfd", ["--help"])]
    # Commands that run (not only their help): they load the command-line
    # library and their own machinery; each ends at once (a missing device,
    # a refused connection), so only the start-up is timed.
    + [("hostnqn run", "nvmecontrol", ["hostnqn"]),
       ("gen-dhchap-key run", "nvmecontrol", ["gen-dhchap-key"]),
       ("check-dhchap-key run", "nvmecontrol", ["check-dhchap-key", "-k", _KEY]),
       ("identify run", "nvmecontrol", ["identify", "nvme9"]),
       ("logpage run", "nvmecontrol", ["logpage", "-p", "2", "nvme9"]),
       ("discover run", "nvmecontrol", ["discover", "127.0.0.1:1"])]
)
# What each may exit with: 69 devlist found no controller, 66 no such
# device, 68 nothing listens at the address.
_EXPECTED = (0, 66, 68, 69)

MEASURES = [Measure(_key(name), f"{prog} {' '.join(args)} start-up / python -c pass", WHY,
                    f"startup:{_key(name)}", metric="ratio", op="<=", target=TARGET_RATIO)
            for name, prog, args in COMMANDS]

_MODULES = {"nvmecontrol": "nvmecontrol", "nvmfd": "nvmecontrol.target.main"}


def _argv(program: str) -> list[str]:
    """The console script beside the interpreter, else ``python -m``."""
    script = Path(sys.executable).with_name(program)
    return [str(script)] if script.exists() else [sys.executable, "-m", _MODULES[program]]


def _best_of(argv: list[str], env: dict, runs: int = RUNS_PER_ROUND) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        elapsed = time.perf_counter() - t0
        if p.returncode not in _EXPECTED:
            raise RuntimeError(f"{' '.join(argv)} exited {p.returncode}: "
                               f"{p.stderr.decode(errors='replace').strip()[-300:]}")
        best = min(best, elapsed)
    return best


def measure(rounds: int, runs_per_round: int = RUNS_PER_ROUND) -> dict[str, dict]:
    """``{"startup:<key>": {"value": median ratio, ...}}`` for Suite.extra."""
    with tempfile.TemporaryDirectory(prefix="nvb-startup-") as tmp:
        env = {**os.environ, "XDG_CACHE_HOME": f"{tmp}/cache",
               "NVMECONTROL_RUNTIME_DIR": f"{tmp}/run", "COLUMNS": "80"}
        # Users' interpreters keep the bytecode they compile; without it every
        # module edited since its .pyc was written compiles again at each start.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        base_argv = [sys.executable, "-c", "pass"]
        runs = [(_key(name), _argv(prog) + args) for name, prog, args in COMMANDS]
        texts = {_key(name): " ".join([prog, *args]) for name, prog, args in COMMANDS}
        for _key_, argv in runs:  # warm the help cache and the page cache
            _best_of(argv, env, 1)
        ratios: dict[str, list[float]] = {k: [] for k, _ in runs}
        seconds: dict[str, list[float]] = {k: [] for k, _ in runs}
        bases = []
        for r in range(rounds):
            base = _best_of(base_argv, env, runs_per_round)
            bases.append(base)
            for key, argv in (runs if r % 2 == 0 else runs[::-1]):
                t = _best_of(argv, env, runs_per_round)
                seconds[key].append(t)
                ratios[key].append(t / base)
    return {f"startup:{key}": {"value": statistics.median(ratios[key]),
                               "command": texts[key],
                               "ratios": ratios[key], "ms": [s * 1000 for s in seconds[key]],
                               "python_c_pass_ms": [b * 1000 for b in bases]}
            for key, _argv_ in runs}


def table(extra: dict[str, dict]) -> str:
    lines = [f"{'measure':<32} {'ratio':>6} {'ms':>6}  target <= {TARGET_RATIO:g}"]
    for m in MEASURES:
        x = extra[m.num]
        ok = "yes" if m.met(x["value"]) else "NO"
        lines.append(f"{m.key:<32} {x['value']:6.2f} {statistics.median(x['ms']):6.0f}  {ok}")
    base = statistics.median(next(iter(extra.values()))["python_c_pass_ms"])
    lines.append(f"python -c pass: {base:.0f} ms")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m bench.startup",
                                 description="command start-up as a ratio to python -c pass")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    print(table(measure(args.rounds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
