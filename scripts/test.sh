#!/bin/sh
# Run the whole test suite, interop tier included, after setting up what it needs.
# Extra arguments go to pytest (e.g. scripts/test.sh -k discover).
set -eu
cd "$(dirname "$0")/.."
scripts/setup.sh --test
exec .venv/bin/python -m pytest "$@"
