#!/bin/sh
# The main job against the embedded default target: start nvmfd on a file,
# discover it, identify it, read its SMART log, connect to it through a
# userspace NBD session, write and read the namespace with real NBD clients
# (nbdcopy, nbdinfo), list it, and disconnect.
set -eu
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

workdir=$(mktemp -d /tmp/nvmecontrol-demo.XXXXXX)
# Sessions of this demo live (and die) with it.
export NVMECONTROL_RUNTIME_DIR="$workdir/run"
cleanup() {
    nvmecontrol disconnect-all >/dev/null 2>&1 || true
    kill "$nvmfd_pid" 2>/dev/null || true; wait "$nvmfd_pid" 2>/dev/null || true
    rm -rf "$workdir"
}
trap cleanup EXIT INT TERM
nqn=nqn.2014-08.org.example:demo
truncate -s 64M "$workdir/disk.img"
nvmfd -F -a 127.0.0.1 -p 0 --port-file "$workdir/port" -S "$workdir/nvmfd.sock" \
    -n "$nqn" "$workdir/disk.img" >"$workdir/nvmfd.log" 2>&1 &
nvmfd_pid=$!
i=0
while [ ! -s "$workdir/port" ]; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 "$nvmfd_pid" 2>/dev/null; then
        cat "$workdir/nvmfd.log" >&2; echo "demo: nvmfd did not start" >&2; exit 1
    fi
    sleep 0.1
done
port=$(head -n 1 "$workdir/port")

run() { echo "\$ $*"; "$@"; echo; }
run nvmecontrol discover "127.0.0.1:$port"
run nvmecontrol identify "127.0.0.1:$port" "$nqn"
run nvmecontrol identify -n 1 "127.0.0.1:$port" "$nqn"
run nvmecontrol logpage -p 2 "127.0.0.1:$port" "$nqn"
run nvmecontrol connect --backend nbd --no-attach "127.0.0.1:$port" "$nqn"
run nvmecontrol devlist
uri="nbd+unix:///ns1?socket=$NVMECONTROL_RUNTIME_DIR/nvmeu0/nbd.sock"
run nbdinfo "$uri"
head -c 4M /dev/urandom >"$workdir/data"
run nbdcopy "$workdir/data" "$uri"
run nbdcopy "$uri" "$workdir/back"
head -c 4M "$workdir/back" | cmp - "$workdir/data" && echo "4 MiB written and read back through the NBD session: identical"
echo
run nvmecontrol identify nvmeu0ns1
run nvmecontrol disconnect nvmeu0
cmp -n 4194304 "$workdir/disk.img" "$workdir/data" && echo "...and they are in nvmfd's file, byte for byte"
echo
run nvmecontrol discover -o json "127.0.0.1:$port"
echo "nvmfd log:"; cat "$workdir/nvmfd.log"
