#!/bin/sh
# The reliability scenarios of issue 15 (tests/faults, docs/reliability.md),
# each printing its figures as a "[reliability] ..." line.
#   scripts/reliability.sh            short mode (what the normal suite runs)
#   scripts/reliability.sh --long     long mode: 1 000 resets, 100 SIGKILLs, 5 000 hostile
#                                     cases each way plus 10^6 sans-IO fuzz inputs, ...
#   scripts/reliability.sh --interop  also the proxy against the kernel target (qemu guest)
# Other arguments go to pytest (e.g. -k resets).  NVMECONTROL_FUZZ_SEED changes the
# fuzzers' seed.
set -eu
cd "$(dirname "$0")/.."
marker="not interop"
for arg in "$@"; do
    shift
    case "$arg" in
    --long) export NVMECONTROL_RELIABILITY_LONG=1 ;;
    --interop) marker="" ;;
    *) set -- "$@" "$arg" ;;
    esac
done
if [ -n "$marker" ]; then
    exec .venv/bin/python -m pytest -p no:cacheprovider -s -q -m "$marker" tests/faults "$@"
fi
exec .venv/bin/python -m pytest -p no:cacheprovider -s -q tests/faults "$@"
