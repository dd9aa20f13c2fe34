"""Bad input gets one line on stderr and a distinct sysexits status, no traceback."""

import os
import socket
import subprocess
import sys
import threading

import pytest

from nvmecontrol.cli.app import main
from nvmecontrol.cli import exitcodes as X


def run_cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def one_line(err: str) -> str:
    lines = [l for l in err.splitlines() if "does not match the UUID" not in l]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def listener():
    """A loopback listener whose behaviour each test chooses."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    conns = []

    def serve(action):
        def loop():
            try:
                c, _ = srv.accept()
            except OSError:
                return
            conns.append(c)
            action(c)
        t = threading.Thread(target=loop, daemon=True)
        t.start()
        return srv.getsockname()[1]

    yield serve
    srv.close()
    for c in conns:
        c.close()


def test_invalid_address_is_usage(capsys):
    rc, out, err = run_cli(capsys, "discover", "10.0.0.1:notaport")
    assert rc == X.EX_USAGE
    assert "port" in one_line(err) and out == ""


def test_invalid_hostnqn_is_usage(capsys):
    rc, out, err = run_cli(capsys, "discover", "-q", "nqn.2014-13.org.example:x", "127.0.0.1:1")
    assert rc == X.EX_USAGE
    assert "month 13" in one_line(err)


def test_unknown_option_is_usage(capsys):
    rc, _out, err = run_cli(capsys, "discover", "--no-such-option", "127.0.0.1")
    assert rc == X.EX_USAGE
    assert "no-such-option" in err


def test_refused_connection_is_nohost(capsys):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    rc, _out, err = run_cli(capsys, "discover", f"127.0.0.1:{port}")
    assert rc == X.EX_NOHOST
    assert "refused" in one_line(err).lower()


def test_silent_peer_is_tempfail(capsys, listener):
    port = listener(lambda c: None)  # accepts, never answers
    rc, _out, err = run_cli(capsys, "discover", "--timeout", "0.5", f"127.0.0.1:{port}")
    assert rc == X.EX_TEMPFAIL
    assert "no answer" in one_line(err)


def test_garbage_from_peer_is_protocol_error(capsys, listener):
    got = []

    def garbage(c):
        c.recv(128)
        c.sendall(b"\xff" * 128)
        try:
            got.append(c.recv(256))
        except OSError:
            pass

    port = listener(garbage)
    rc, _out, err = run_cli(capsys, "discover", "--timeout", "2", f"127.0.0.1:{port}")
    assert rc == X.EX_PROTOCOL
    assert "unknown PDU type 0xff" in one_line(err)


def test_peer_closing_is_ioerr(capsys, listener):
    port = listener(lambda c: (c.recv(128), c.close()))
    rc, _out, err = run_cli(capsys, "discover", "--timeout", "2", f"127.0.0.1:{port}")
    assert rc == X.EX_IOERR
    assert "closed" in one_line(err)


def test_missing_page_is_usage(capsys):
    rc, _out, err = run_cli(capsys, "logpage", "nvme0")
    assert rc == X.EX_USAGE
    assert "-p" in one_line(err)


def test_unknown_device_is_noinput(capsys):
    rc, _out, err = run_cli(capsys, "identify", "nvme987")
    assert rc == X.EX_NOINPUT
    assert "nvme987" in one_line(err)


def test_entry_point_subprocess_exit_status():
    p = subprocess.run([sys.executable, "-m", "nvmecontrol", "discover", "[::1"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == X.EX_USAGE
    assert p.stdout == ""
    assert "Traceback" not in p.stderr and "invalid address" in p.stderr


def test_exit_codes_are_distinct_per_cause():
    causes = [code for _fam, code, _why in X.EXIT_CODES
              if _fam.__name__ not in ("ConnectionLost",)]
    assert len(set(causes)) == len(causes)


@pytest.mark.parametrize("argv, named", [
    (["identify", "127.0.0.1:1", ""], "is empty"),
    (["logpage", "-p", "2", "127.0.0.1:1", ""], "is empty"),
    (["identify", "127.0.0.1:1", "nqn.2014-08.org.example:a\nb"], "control character"),
    (["connect", "-q", "nqn.2014-08.org.example:a\nb", "127.0.0.1:1",
      "nqn.2014-08.org.example:x"], "control character"),
    (["identify", "--timeout", "inf", "127.0.0.1:1", "nqn.2014-08.org.example:x"], "--timeout"),
    (["identify", "--timeout", "1e309", "127.0.0.1:1", "nqn.2014-08.org.example:x"], "--timeout"),
    (["identify", "--timeout", "nan", "127.0.0.1:1", "nqn.2014-08.org.example:x"], "--timeout"),
    (["identify", "-n", "4294967296", "127.0.0.1:1", "nqn.2014-08.org.example:x"], "--nsid"),
    (["logpage", "-p", "2", "-n", "4294967296", "127.0.0.1:1", "nqn.2014-08.org.example:x"],
     "--nsid"),
    (["connect", "-k", "5000000", "127.0.0.1:1", "nqn.2014-08.org.example:x"], "--keep-alive-tmo"),
    (["connect", "-l", "99999999999", "127.0.0.1:1", "nqn.2014-08.org.example:x"],
     "--ctrl-loss-tmo"),
    (["connect", "-r", "99999999999", "127.0.0.1:1", "nqn.2014-08.org.example:x"],
     "--reconnect-delay"),
])
def test_out_of_range_and_malformed_input_is_a_usage_error(capsys, argv, named):
    """Each of these ended in an internal error (exit 70) or was silently accepted."""
    rc, out, err = run_cli(capsys, *argv)
    assert rc == X.EX_USAGE and out == ""
    assert named in one_line(err)


def test_non_utf8_nqn_on_the_real_command_line_is_a_usage_error():
    p = subprocess.run([sys.executable, "-m", "nvmecontrol", "discover", "-q",
                        b"nqn.2014-08.org.example:\xff", "127.0.0.1:1"],
                       capture_output=True, timeout=60)
    err = p.stderr.decode(errors="replace")
    assert p.returncode == X.EX_USAGE, err
    assert "is not UTF-8 (byte 0xff" in err and "Traceback" not in err


def interrupted_before_our_code(err: str) -> bool:
    """SIGINT landed in the interpreter's start-up (site, or the console script's first
    import), before any frame of the nvmecontrol package ran."""
    if "Fatal Python error: init_import_site" in err:
        return True
    return err.rstrip().endswith("KeyboardInterrupt") and "/nvmecontrol/" not in err


def test_ctrl_c_while_the_command_loads_is_one_line_not_a_traceback():
    """SIGINT at several points of start-up: before main's handler exists the
    entry point ends quietly with 130; afterwards main reports it."""
    import signal
    import time
    from pathlib import Path

    script = Path(sys.executable).parent / "nvmecontrol"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "nvmecontrol"]
    seen = set()
    for delay in (0.05, 0.08, 0.12, 0.2, 0.3):
        p = subprocess.Popen(cmd + ["devlist"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
        if interrupted_before_our_code(err):
            continue  # the interpreter's own start-up: no code of ours could answer
        assert "Traceback" not in err, err
        # 130 interrupted (69/0: devlist finished first; -2: before Python's handler).
        assert p.returncode in (X.EX_INTERRUPTED, X.EX_UNAVAILABLE, 0, -signal.SIGINT), err
        if p.returncode == X.EX_INTERRUPTED:
            assert err.strip().endswith("interrupted"), err
        seen.add(p.returncode)
    # Whether any of these delays lands inside our code depends on the
    # machine's speed (devlist may be done in 50 ms): the next test
    # interrupts a command that is certainly running.
    assert seen <= {X.EX_INTERRUPTED, X.EX_UNAVAILABLE, 0, -signal.SIGINT}, seen


def test_ctrl_c_while_a_command_waits_is_one_line_130(tmp_path):
    """SIGINT while devlist is blocked reading a session's state (a FIFO that
    nobody writes): main's handler answers with one line and 130."""
    import signal
    import time

    session = tmp_path / "nvmeu0"
    session.mkdir()
    fifo = session / "session.json"
    os.mkfifo(fifo)
    env = dict(os.environ, NVMECONTROL_RUNTIME_DIR=str(tmp_path))
    p = subprocess.Popen([sys.executable, "-m", "nvmecontrol", "devlist"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    writer = None
    try:
        # A writer can open the FIFO (without blocking) only once devlist has
        # it open for reading: from then on devlist waits in read().
        deadline = time.monotonic() + 60
        while writer is None:
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                assert p.poll() is None, p.communicate()
                assert time.monotonic() < deadline, "devlist never opened the session state"
                time.sleep(0.01)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if writer is not None:
            os.close(writer)
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == X.EX_INTERRUPTED, err
    assert "Traceback" not in err and err.strip().endswith("interrupted"), err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("argv, missing", [
    (["identify"], "DEVICE|ADDRESS"),
    (["discover"], "address"),
    (["connect"], "address"),
    (["connect", "127.0.0.1:4420"], "SUBNQN"),
    (["connect-all"], "address"),
    (["disconnect"], "DEVICE|NAMESPACE|SUBNQN"),
    (["reconnect"], "DEVICE"),
])
def test_a_missing_argument_is_one_line_with_the_synopsis(capsys, argv, missing):
    rc, out, err = run_cli(capsys, *argv)
    assert rc == X.EX_USAGE and out == ""
    line = one_line(err)
    assert f"Missing argument '{missing}'" in line
    assert f"usage: nvmecontrol {argv[0]} [OPTIONS]" in line


@pytest.mark.parametrize("argv", [[], ["resv"], ["check-dhchap-key"]])
def test_no_arguments_at_all_is_the_help_on_stderr_as_usage(capsys, argv):
    """As FreeBSD's usage(): the help text itself, not behind an "nvmecontrol: " prefix."""
    rc, out, err = run_cli(capsys, *argv)
    assert (rc, out) == (X.EX_USAGE, "")
    assert err.startswith(f"Usage: {' '.join(['nvmecontrol', *argv])} [OPTIONS]")
    assert "nvmecontrol: " not in err and err.endswith("\n") and not err.endswith("\n\n")
