#!/bin/sh
# Set up everything nvmecontrol needs on a Debian 12 machine, idempotently:
#   scripts/setup.sh          the Python environment (.venv) for running the tool
#   scripts/setup.sh --test   plus the Debian packages the test suite's peers need
# Needs root (or sudo) only to install missing Debian packages.
set -eu
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

# nbdinfo/nbdcopy (libnbd-bin) read and write the NBD session of the demo.
packages="python3-venv libnbd-bin"
if [ "$want_test" = 1 ]; then
    # The interop tier's peers: the Linux kernel in qemu, nvme-cli, NBD
    # clients, fio, tshark; mandoc for the man pages; shells for completions.
    packages="$packages $(grep -v '^#' scripts/test-packages.txt | tr '\n' ' ')"
fi

missing=""
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
    echo "setup: installing Debian packages:$missing" >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >&2
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# An editable install.  pyproject.toml names the package directory
# (package-dir), so setuptools writes a .pth that puts this checkout on
# sys.path rather than an import hook every start of the interpreter would
# load (about 20 ms here, as much as the rest of a bare start; issue 13
# measures commands against a bare start).  The stamp holds the way of
# installing, so a .venv made another way is installed again once.
install_kind="editable-pth"
stamp=.venv/.nvmecontrol-installed
if [ "$(cat "$stamp" 2>/dev/null)" != "$install_kind" ] || [ pyproject.toml -nt "$stamp" ] \
        || [ setup.py -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip >&2
    .venv/bin/python -m pip install -q -e '.[test]' >&2
    echo "$install_kind" >"$stamp"
fi
