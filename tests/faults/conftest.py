"""Fixtures of the fault scenarios: a fault proxy in front of a target, the
long-mode switch, and the one place figures are printed.

``NVMECONTROL_RELIABILITY_LONG=1`` (scripts/reliability.sh --long) makes
every scenario run its long mode; the default is the short mode of the
normal suite.
"""

from __future__ import annotations

import os

import pytest

from .proxy import FaultProxy

LONG = os.environ.get("NVMECONTROL_RELIABILITY_LONG") == "1"


def scale(short: int, long: int) -> int:
    """How many of something a scenario does in this run's mode."""
    return long if LONG else short


def figures(scenario: str, **values) -> None:
    """One line a scenario prints (pytest -s, or the reliability script shows it)."""
    parts = ", ".join(f"{k}={v}" for k, v in values.items())
    print(f"\n[reliability] {scenario} ({'long' if LONG else 'short'}): {parts}", flush=True)


@pytest.fixture
def proxy_factory():
    """``proxy_factory(port, faults=(), seed=0)``: a started FaultProxy in front
    of 127.0.0.1:``port``; stopped at the end of the test."""
    started: list[FaultProxy] = []

    def start(port: int, faults=(), *, seed: int = 0, host: str = "127.0.0.1") -> FaultProxy:
        p = FaultProxy((host, port), faults, seed=seed).start()
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()
