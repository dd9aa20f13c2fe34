"""nvmecontrol's benchmark suite: ``bench/run`` or ``python -m bench`` (see bench/README.md)."""
