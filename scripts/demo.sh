#!/bin/sh
# The main job against the embedded default target: start nvmfd on a RAM
# namespace, then discover it, identify it and read its SMART log.
set -eu
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

workdir=$(mktemp -d)
trap 'kill "$nvmfd_pid" 2>/dev/null || true; wait "$nvmfd_pid" 2>/dev/null || true; rm -rf "$workdir"' EXIT INT TERM
nqn=nqn.2014-08.org.example:demo
nvmfd -F -a 127.0.0.1 -p 0 --port-file "$workdir/port" -S "$workdir/nvmfd.sock" \
    -n "$nqn" mem:64M >"$workdir/nvmfd.log" 2>&1 &
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
run nvmecontrol discover -o json "127.0.0.1:$port"
echo "nvmfd log:"; cat "$workdir/nvmfd.log"
