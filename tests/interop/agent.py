"""The command agent inside the guest and its wire framing.

The guest has no ssh or serial multiplexing, so PID 1 runs busybox
``nc -ll -p AGENT_PORT -e /agent.sh``: one TCP connection carries one
command.  Both ends of the framing live here so they cannot drift apart.

Request (host -> guest), a single line::

    NVMECONTROL-AGENT 1 <mode> <timeout_s> <base64 script>\\n

A single base64 line is used, rather than a length prefix and raw bytes,
because the shell's ``read`` takes a whole line in one go while ``head -c``
on a socket would depend on busybox handling short reads.  ``mode`` is
``chroot`` (run in the host root shared over 9p, so the host's python3,
nvme-cli and fio run on the guest kernel) or ``busybox`` (the initramfs).

Response (guest -> host), then the guest closes the connection::

    NVMECONTROL-AGENT 1 rc=<status>\\n
    %%OUT\\n <base64 of stdout, wrapped> \\n
    %%ERR\\n <base64 of stderr, wrapped> \\n
    %%END\\n

The markers start with ``%``, which is outside the base64 alphabet, so they
cannot collide with payload lines.  A missing ``%%END`` means the agent
died mid-command (the guest crashed or the connection was cut).
"""

from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass
from typing import Mapping

AGENT_PORT = 7000  # guest side; forwarded to a free host port
MAGIC = "NVMECONTROL-AGENT"
VERSION = "1"
# Where the host root is mounted in the guest (the chroot target).
GUEST_HOSTROOT = "/hostroot"
# Inside the chroot /tmp is the guest's own tmpfs; the host's /tmp (where
# pytest's tmp_path lives) stays visible, read-only, here.
HOST_TMP_IN_GUEST = "/run/host-tmp"
# Exit status of a command killed by `timeout -s KILL` (128 + SIGKILL).
KILLED_RC = 137
# Refuse absurd replies instead of buffering without bound.
MAX_RESPONSE_BYTES = 256 * 1024 * 1024

# PATH and friends for commands: the agent's own environment is whatever
# init had, which is wrong inside the host root.
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "TERM": "dumb",
    "LANG": "C.UTF-8",
    # The host root is read-only in the guest; don't even try.
    "PYTHONDONTWRITEBYTECODE": "1",
}

AGENT_SCRIPT = f"""#!/bin/busybox sh
# One command per connection; framing documented in tests/interop/agent.py.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
IFS=' ' read -r magic version mode tmo payload || exit 0
if [ "$magic" != {MAGIC} ] || [ "$version" != {VERSION} ]; then
    echo "{MAGIC} {VERSION} rc=254"; echo %%OUT; echo %%ERR
    echo "bad request header" | base64; echo %%END; exit 0
fi
case "$mode" in
    chroot) root={GUEST_HOSTROOT} ;;
    *) root= ;;
esac
rel=/tmp/.agent/$$
dir=$root$rel
rm -rf "$dir"; mkdir -p "$dir"
echo "$payload" | base64 -d > "$dir/script"
cd /
if [ -n "$root" ]; then
    timeout -s KILL "$tmo" chroot "$root" /bin/sh "$rel/script" \\
        </dev/null >"$dir/out" 2>"$dir/err"
else
    timeout -s KILL "$tmo" sh "$dir/script" </dev/null >"$dir/out" 2>"$dir/err"
fi
rc=$?
echo "{MAGIC} {VERSION} rc=$rc"
echo %%OUT; base64 "$dir/out"
echo %%ERR; base64 "$dir/err"
echo %%END
rm -rf "$dir"
"""


class AgentError(RuntimeError):
    """The agent's reply was missing or malformed (guest died, connection cut)."""


@dataclass(frozen=True)
class Result:
    """Outcome of one command run in the guest."""

    rc: int
    stdout: str
    stderr: str
    elapsed_s: float = 0.0
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def check(self) -> "Result":
        """Return self, or raise with the command's output if it failed."""
        if self.rc != 0:
            raise AssertionError(
                f"guest command failed rc={self.rc}"
                f"{' (timed out)' if self.timed_out else ''}\n"
                f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
            )
        return self


def build_script(cmd: str, *, env: Mapping[str, str] | None = None, cwd: str | None = None) -> str:
    """Wrap *cmd* with a clean environment and working directory."""
    lines = [f"export {k}={shlex.quote(v)}" for k, v in {**BASE_ENV, **(env or {})}.items()]
    if cwd is not None:
        lines.append(f"cd {shlex.quote(cwd)} || exit 253")
    lines.append(cmd)
    return "\n".join(lines) + "\n"


def encode_request(script: str, *, chroot: bool, timeout_s: int) -> bytes:
    payload = base64.b64encode(script.encode()).decode()
    mode = "chroot" if chroot else "busybox"
    return f"{MAGIC} {VERSION} {mode} {max(1, int(timeout_s))} {payload}\n".encode()


def decode_response(data: bytes) -> tuple[int, bytes, bytes]:
    """Parse a complete reply into (rc, stdout, stderr)."""
    lines = data.decode("ascii", errors="replace").splitlines()
    if not lines:
        raise AgentError("agent closed the connection without replying")
    head = lines[0].split()
    if len(head) != 3 or head[0] != MAGIC or head[1] != VERSION or not head[2].startswith("rc="):
        raise AgentError(f"bad agent reply header {lines[0]!r}")
    rc = int(head[2][3:])
    try:
        i_out, i_err, i_end = lines.index("%%OUT"), lines.index("%%ERR"), lines.index("%%END")
    except ValueError:
        raise AgentError(f"truncated agent reply (rc={rc}); guest may have died") from None
    if not i_out < i_err < i_end:
        raise AgentError("agent reply sections out of order")
    out = base64.b64decode("".join(lines[i_out + 1 : i_err]))
    err = base64.b64decode("".join(lines[i_err + 1 : i_end]))
    return rc, out, err
