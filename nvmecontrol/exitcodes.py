"""The exit statuses of both programs, ``nvmecontrol`` and ``nvmfd``: one table.

The values and names are sysexits(3)'s (FreeBSD's ``<sysexits.h>``), plus
the shells' 128 + SIGINT for an interrupt.  Which error leads to which
status is each program's business (``cli/exitcodes.py`` for nvmecontrol,
``target/main.py`` for nvmfd); the numbers come from here only.  Each man
page's EXIT STATUS section lists exactly the statuses its program uses, by
these names (tests/test_exitcodes.py).

Standard library only, and nothing at all imported: the console entry point
and nvmfd's usage errors read it before anything else is loaded.
"""

EX_OK = 0
EX_USAGE = 64         # bad arguments or option values
EX_DATAERR = 65       # the input data was wrong
EX_NOINPUT = 66       # no such device, session, association, namespace or file
EX_NOHOST = 68        # the address cannot be reached
EX_UNAVAILABLE = 69   # a service or feature is missing (nvmfd: the daemon is not running)
EX_SOFTWARE = 70      # an internal error
EX_OSERR = 71         # a local device, socket, ioctl or file failed
EX_CANTCREAT = 73     # an output file cannot be created
EX_IOERR = 74         # an NVMe command failed, the connection dropped
EX_TEMPFAIL = 75      # the peer stopped answering in time
EX_PROTOCOL = 76      # the peer broke the protocol
EX_NOPERM = 77        # not allowed (by the controller, or locally)
EX_CONFIG = 78        # a configuration that cannot be honoured
EX_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as shells report it

# status -> its sysexits name (the man pages write ".It 64 Pq Dv EX_USAGE").
NAMES: dict[int, str] = {value: name for name, value in globals().items()
                         if name.startswith("EX_")}
