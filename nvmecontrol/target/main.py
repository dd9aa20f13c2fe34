"""nvmfd: the userspace NVMe/TCP target (FreeBSD nvmfd(8) style), and its
control subcommands (FreeBSD ctladm nvlist / nvterminate style).

    nvmfd [-FGgdr] [-a address]... [-p port] [-n subnqn] [--allow-host hostnqn]...
          [--block-size 512|4096] [-S socket] [--port-file file] [--pid-file file]
          [--log-file file] device ...
    nvmfd [-FGgdr] -c config.json [-S socket] [--port-file file]
    nvmfd list [-S socket] [--json]
    nvmfd terminate [-S socket] (-c id | --host hostnqn | -a)
    nvmfd ns-add [-S socket] [--nsid nsid] [--subsystem subnqn] [-r] [--ana-grpid grpid] device
    nvmfd ns-remove [-S socket] [--subsystem subnqn] nsid
    nvmfd host-add [-S socket] [--subsystem subnqn] [--dhchap-key key ...] hostnqn
    nvmfd host-remove [-S socket] [--subsystem subnqn] hostnqn
    nvmfd save [-S socket] [file | -]
    nvmfd ana-state [-S socket] portid grpid state
    nvmfd reauth [-S socket] hostnqn

Signals: SIGHUP reloads the -c file (reload.py); SIGTERM and SIGINT end
every association, remove the pid file and the control socket, and exit.

A device is a file, a block device, or ``mem:SIZE`` / ``ramdisk:SIZE`` (RAM).

Differences from FreeBSD nvmfd, on purpose: ``-F`` means foreground (FreeBSD
spells it ``-d``, also accepted) and logs every association; hosts may
always disable SQ flow control (FreeBSD's ``-F`` permission is the
default); digests are allowed by default, and ``-g``/``-G`` restrict them
to header/data digests only; one port serves both the discovery
controller and the I/O controllers (FreeBSD uses separate ``-P``/``-p``).

Exit status (sysexits): 0 success, 64 usage, 66 no such association or
namespace, 69 the daemon is not running, 71 a socket or file could not be
opened, 70 internal error, 78 a configuration nvmfd cannot honour (TLS,
treq required, RDMA/FC ports, -K, -t other than tcp).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from nvmecontrol.errors import ConnectError, NotFound, NvmeControlError, UsageError
from nvmecontrol.target.defaults import BLOCK_SIZES, DEFAULT_BLOCK_SIZE, default_socket_path
from nvmecontrol.target.defaults import ConfigRefused
from nvmecontrol.transport.address import IO_PORT

# The server stack (configuration, DH-HMAC-CHAP, the target), the log
# (daemon_log), json and uuid are imported when a daemon starts or a
# subcommand runs: --help and usage errors stay quick.

# The statuses nvmecontrol uses too; EX_CONFIG: a configuration nvmfd cannot honour
# (TLS, RDMA, -K...).  man/nvmfd.8 lists exactly the ones used here.
from nvmecontrol.exitcodes import (EX_CONFIG, EX_INTERRUPTED, EX_NOINPUT, EX_OK, EX_OSERR,
                                   EX_SOFTWARE, EX_UNAVAILABLE, EX_USAGE)
# Host ACL changes and saving the running configuration (reload.py).
ACL_SUBCOMMANDS = ("host-add", "host-remove", "save")
SUBCOMMANDS = ("list", "terminate", "ns-add", "ns-remove", "ana-state", "reauth")
SUBCOMMANDS += ACL_SUBCOMMANDS


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse exits 2; sysexits says 64
        self.print_usage(sys.stderr)
        print(f"{self.prog}: {message}", file=sys.stderr)
        sys.exit(EX_USAGE)


def _daemon_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="nvmfd", description="Userspace NVMe over Fabrics (NVMe/TCP) target.",
                epilog="Subcommands of a running daemon: nvmfd list | terminate | ns-add | "
                       "ns-remove | ana-state | reauth | host-add | host-remove | save "
                       "(see nvmfd SUBCOMMAND -h).")
    p.add_argument("-a", "--address", action="append", metavar="ADDR",
                   help="listen address (repeatable; default 0.0.0.0; :: for IPv6)")
    p.add_argument("-p", "--port", type=int, default=None, metavar="PORT",
                   help=f"TCP port for discovery and I/O (default {IO_PORT}; 0 picks one)")
    p.add_argument("-n", "--subnqn", metavar="NQN",
                   help="subsystem NQN (default: derived from the host UUID)")
    p.add_argument("-c", "--config", metavar="FILE",
                   help="nvmetcli saved-config JSON (Linux kernel target format)")
    p.add_argument("-r", "--read-only", action="store_true", help="export namespaces read-only")
    p.add_argument("-F", "--foreground", action="store_true",
                   help="stay in the foreground and log every association")
    p.add_argument("-d", dest="foreground", action="store_true",
                   help="same as -F (FreeBSD nvmfd spelling)")
    p.add_argument("-g", "--hdr-digests", action="store_true",
                   help="permit header digests (with -G: both; neither: both permitted)")
    p.add_argument("-G", "--data-digests", action="store_true",
                   help="permit data digests (with -g: both; neither: both permitted)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NQN",
                   help="admit only this host NQN (repeatable; default: any host)")
    p.add_argument("--block-size", type=int, default=DEFAULT_BLOCK_SIZE, choices=BLOCK_SIZES,
                   help="logical block size of the namespaces (default 512)")
    p.add_argument("-S", "--socket", metavar="PATH",
                   help=f"control socket (default {default_socket_path()})")
    p.add_argument("--port-file", metavar="FILE",
                   help="write the bound port(s), one per line, once listening")
    p.add_argument("--pid-file", metavar="FILE", help="write the daemon's process ID here")
    p.add_argument("--log-file", metavar="FILE", help="log here (default: stderr with -F, "
                   "else syslog)")
    p.add_argument("-P", "--discovery-port", type=int, default=None, metavar="PORT",
                   help="serve discovery only on this port, I/O on -p (FreeBSD nvmfd; "
                        "default: one port serves both)")
    p.add_argument("-t", "--transport", default="tcp", metavar="TRANSPORT",
                   help="transport (tcp, the only one)")
    p.add_argument("-K", "--kernel", action="store_true",
                   help="kernel I/O through FreeBSD nvmft(4): refused, nvmfd serves I/O "
                        "in user space")
    _add_dhchap_options(p, "the --allow-host hosts")
    p.add_argument("devices", nargs="*", metavar="device",
                   help="file, block device, mem:SIZE or ramdisk:SIZE")
    return p


def _add_dhchap_options(p: argparse.ArgumentParser, whom: str) -> None:
    p.add_argument("--dhchap-key", metavar="KEY",
                   help=f"DH-HMAC-CHAP secret (DHHC-1:...) {whom} must authenticate with")
    p.add_argument("--dhchap-ctrl-key", metavar="KEY",
                   help="the controller's secret, for bidirectional authentication")
    p.add_argument("--dhchap-hash", metavar="HASH",
                   help="hmac(sha256) (default), hmac(sha384) or hmac(sha512)")
    p.add_argument("--dhchap-dhgroup", metavar="GROUP",
                   help="null (default), ffdhe2048, ffdhe3072, ffdhe4096, ffdhe6144, ffdhe8192")


def _dhchap_values(args) -> dict:
    """The DH-HMAC-CHAP options given, under the configfs names."""
    return {name: getattr(args, name) for name in
            ("dhchap_key", "dhchap_ctrl_key", "dhchap_hash", "dhchap_dhgroup")
            if getattr(args, name) is not None}


def _sub_parser(cmd: str) -> argparse.ArgumentParser:
    p = _Parser(prog=f"nvmfd {cmd}")
    p.add_argument("-S", "--socket", metavar="PATH",
                   help=f"control socket (default {default_socket_path()})")
    if cmd == "list":
        p.description = "List associations (like ctladm nvlist)."
        p.add_argument("--json", action="store_true", help="JSON output")
    elif cmd == "terminate":
        p.description = "Terminate associations (like ctladm nvterminate)."
        g = p.add_mutually_exclusive_group(required=True)
        g.add_argument("-c", "--id", type=int, metavar="ID", help="association ID (nvmfd list)")
        g.add_argument("--host", metavar="NQN", help="every association of this host NQN")
        g.add_argument("-a", "--all", action="store_true", help="every association")
    elif cmd == "ns-add":
        p.description = "Add a namespace to the running daemon (hosts get an AEN)."
        p.add_argument("device", help="file, block device, mem:SIZE or ramdisk:SIZE")
        p.add_argument("--nsid", type=int, help="namespace ID (default: the lowest free)")
        p.add_argument("--subsystem", metavar="NQN", help="subsystem (needed when several)")
        p.add_argument("-r", "--read-only", action="store_true")
        p.add_argument("--block-size", type=int, default=DEFAULT_BLOCK_SIZE, choices=BLOCK_SIZES)
        p.add_argument("--ana-grpid", type=int, default=1, metavar="GRPID",
                       help="ANA group of the namespace, one some port lists (default 1)")
    elif cmd == "ns-remove":
        p.description = "Remove a namespace from the running daemon (hosts get an AEN)."
        p.add_argument("nsid", type=int)
        p.add_argument("--subsystem", metavar="NQN", help="subsystem (needed when several)")
    elif cmd == "ana-state":
        p.description = ("Set the state of an ANA group on a port; controllers of hosts "
                         "connected through that port get an ANA change notice.")
        p.add_argument("port", type=int, metavar="PORTID",
                       help="port ID (the configuration's portid; -a addresses count from 1)")
        p.add_argument("group", type=int, metavar="GRPID", help="ANA group ID (1..128)")
        p.add_argument("state", metavar="STATE", help="optimized, non-optimized, inaccessible, "
                       "persistent-loss or change")
    elif cmd == "reauth":
        p.description = ("Ask every live queue of a host to authenticate again with its "
                         "current DH-HMAC-CHAP keys (after the key was changed on the host "
                         "too): its commands are answered Authentication Required, with a "
                         "retry delay, until it has.")
        p.add_argument("hostnqn", metavar="HOSTNQN")
    if cmd == "host-add":
        p.description = "Allow a host on a subsystem of the running daemon."
        p.add_argument("hostnqn", metavar="HOSTNQN")
        p.add_argument("--subsystem", metavar="NQN", help="subsystem (needed when several)")
        _add_dhchap_options(p, "the host")
    elif cmd == "host-remove":
        p.description = ("Take a host off a subsystem's allowed hosts; its associations "
                         "with that subsystem end.")
        p.add_argument("hostnqn", metavar="HOSTNQN")
        p.add_argument("--subsystem", metavar="NQN", help="subsystem (needed when several)")
    elif cmd == "save":
        p.description = ("Write the running configuration as nvmetcli JSON (nvmfd -c "
                         "reads it back).")
        p.add_argument("file", nargs="?", metavar="FILE",
                       help="where (default: the daemon's -c file; - for standard output)")
    return p


def build_parser(cmd: str | None = None) -> argparse.ArgumentParser:
    """The daemon's parser, or that of control subcommand ``cmd`` (one of SUBCOMMANDS).

    Public so the man page and the shell completions can be checked against it.
    """
    return _sub_parser(cmd) if cmd else _daemon_parser()


def _split(argv: list[str]) -> tuple[str | None, list[str]]:
    """(subcommand, its arguments); leading -S options may precede the subcommand."""
    lead = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-S", "--socket") and i + 1 < len(argv):
            lead += argv[i:i + 2]
            i += 2
        elif a.startswith("--socket=") or (a.startswith("-S") and len(a) > 2):
            lead.append(a)
            i += 1
        else:
            break
    if i < len(argv) and argv[i] in SUBCOMMANDS:
        return argv[i], lead + argv[i + 1:]
    return None, argv


# --- the daemon ------------------------------------------------------------------

def _default_subnqn() -> str:
    from nvmecontrol.hostid import resolve_host_identity
    from nvmecontrol.nqn import nqn_from_uuid

    return nqn_from_uuid(resolve_host_identity().hostid)


def build_config(args) -> "TargetConfig":
    from nvmecontrol.target.config import (NamespaceConfig, PortConfig, SubsystemConfig,
                                           TargetConfig, check_hostnqn, check_subnqn,
                                           load_nvmetcli_file, mem_size)

    from nvmecontrol.target.config import host_auth_from

    if args.transport.lower() != "tcp":
        raise ConfigRefused(f'-t: transport "{args.transport}" is not supported (nvmfd serves '
                            "TCP only)")
    if args.kernel:
        # FreeBSD's -K hands I/O queues to nvmft(4) and takes no devices.
        if args.devices:
            raise UsageError("-K takes no devices (the kernel serves the namespaces)")
        raise ConfigRefused("-K: kernel I/O hands queues to FreeBSD's nvmft(4); this nvmfd "
                            "serves I/O in user space only (drop -K and name the devices)")
    dhchap = _dhchap_values(args)
    if args.config:
        if args.devices or args.address or args.port is not None or args.subnqn is not None \
                or args.allow_host or args.discovery_port is not None or dhchap:
            raise UsageError("with -c the ports, subsystems, namespaces and keys come from "
                             "the configuration; drop the devices and -a/-p/-P/-n/"
                             "--allow-host/--dhchap-*")
        return load_nvmetcli_file(args.config)
    if dhchap and not args.allow_host:
        raise UsageError("--dhchap-* set the keys of the --allow-host hosts; name them")
    auth = host_auth_from(dhchap, "--dhchap-key") if dhchap else None
    if args.discovery_port is not None and not 0 <= args.discovery_port <= 65535:
        raise UsageError(f"-P: port {args.discovery_port} out of range")
    nqn = args.subnqn if args.subnqn is not None else _default_subnqn()
    check_subnqn(nqn, "-n")
    for h in args.allow_host:
        check_hostnqn(h, "--allow-host")
    port = IO_PORT if args.port is None else args.port
    if not 0 <= port <= 65535:
        raise UsageError(f"port {port} out of range")
    namespaces = []
    for i, dev in enumerate(args.devices, 1):
        if mem_size(dev) is None:
            dev = os.path.abspath(dev)
        namespaces.append(NamespaceConfig(nsid=i, path=dev, block_size=args.block_size))
    sub = SubsystemConfig(nqn=nqn, namespaces=namespaces, allow_any_host=not args.allow_host,
                          allowed_hosts=list(args.allow_host))
    ports = []
    for i, addr in enumerate(args.address or ["0.0.0.0"], 1):
        addr = addr.strip("[]")
        ports.append(PortConfig(portid=i, traddr=addr, trsvcid=str(port),
                                adrfam="ipv6" if ":" in addr else "ipv4", subsystems=[nqn]))
    host_auth = {h: auth for h in args.allow_host} if auth is not None else {}
    return TargetConfig(hosts=list(args.allow_host), ports=ports, subsystems=[sub],
                        host_auth=host_auth)


def _write_lines(path: str, values: list[int]) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write("".join(f"{v}\n" for v in values))
    os.replace(tmp, path)  # readers never see a partial file


def _daemonize() -> int:
    """Fork into the background; returns the write end of the readiness pipe."""
    r, w = os.pipe()
    if os.fork() > 0:
        os.close(w)
        with os.fdopen(r, "rb") as f:
            status = f.read()
        if status == b"ok":
            os._exit(EX_OK)
        sys.stderr.write(status.decode(errors="replace") or "nvmfd: daemon failed to start\n")
        os._exit(EX_SOFTWARE)
    os.close(r)
    os.setsid()
    if os.fork() > 0:
        os._exit(EX_OK)
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)
    return w


def run_daemon(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    # The daemon changes to / after forking: keep every path meaning what it meant here.
    for name in ("socket", "port_file", "pid_file", "log_file", "config"):
        if getattr(args, name):
            setattr(args, name, os.path.abspath(getattr(args, name)))
    from nvmecontrol.target import daemon_log

    with daemon_log.kept() as log:
        daemon_log.setup(args)
        return _serve(args, log)


def _serve(args, log) -> int:
    from nvmecontrol.target.lobby import raise_fd_limit
    from nvmecontrol.target.server import Server

    # Every connection holds a descriptor, idle ones included (the lobby keeps
    # a reserve for real hosts): use all the descriptors we are allowed.
    raise_fd_limit()
    if args.hdr_digests or args.data_digests:
        allow_h, allow_d = args.hdr_digests, args.data_digests
    else:
        allow_h = allow_d = True
    config = build_config(args)
    # Before anything can send it: SIGHUP's default action would end the daemon.
    reload_wanted = threading.Event()
    wake = threading.Event()

    def on_hangup(signum, frame):
        reload_wanted.set()
        wake.set()
    signal.signal(signal.SIGHUP, on_hangup)
    server = Server(config, allow_hdgst=allow_h, allow_ddgst=allow_d, read_only=args.read_only,
                    log_associations=args.foreground,
                    control_path=args.socket or default_socket_path(),
                    discovery_trsvcid=None if args.discovery_port is None
                    else str(args.discovery_port),
                    config_path=args.config)
    server.bind()
    if args.port_file:
        _write_lines(args.port_file, server.bound_ports())
    ready_fd = None if args.foreground else _daemonize()
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()
        wake.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.serve()
    for port in server.ports:
        subs = ", ".join(port.subsystems) or "no subsystems"
        log.info("listening on %s (port %d): %s", port.address, port.portid, subs)
    for sub in server.subsystems.values():
        for ns in sub.namespaces.values():
            log.info("%s namespace %d: %s, %d blocks of %d bytes%s", sub.nqn, ns.nsid, ns.path,
                     ns.nblocks, ns.block_size, " (read-only)" if ns.read_only else "")
    if args.pid_file:
        _write_lines(args.pid_file, [os.getpid()])
    if ready_fd is not None:
        os.write(ready_fd, b"ok")
        os.close(ready_fd)
    try:
        while not stop.is_set():
            wake.wait(1.0)
            wake.clear()
            if reload_wanted.is_set() and not stop.is_set():
                reload_wanted.clear()
                reload_config(server, args.config, log)
    finally:
        server.stop()
        if args.pid_file:
            try:
                os.unlink(args.pid_file)
            except OSError:
                pass
    return EX_OK


def reload_config(server, path: str | None, log) -> bool:
    """SIGHUP: serve what ``path`` says now.  Never raises: a configuration
    that cannot be read, parsed, validated or served is logged in one line
    and the running one is kept."""
    if not path:
        log.warning("SIGHUP: nvmfd was started without a configuration file (-c): "
                    "nothing to reload")
        return False
    from nvmecontrol.target.config import load_nvmetcli_file
    log.warning("SIGHUP: reloading %s", path)
    try:
        server.reload(load_nvmetcli_file(path))
    except NvmeControlError as e:
        log.error("SIGHUP: configuration not applied, the running one is kept: %s", e)
        return False
    except OSError as e:
        log.error("SIGHUP: configuration not applied, the running one is kept: %s",
                  e.strerror or e)
        return False
    except Exception as e:  # a bug of ours: the daemon keeps serving what it served
        log.exception("SIGHUP: configuration not applied, the running one is kept: "
                      "internal error: %s", e)
        return False
    return True


# --- control subcommands -------------------------------------------------------------

def render_list(assocs: list[dict]) -> str:
    lines = [f"{'ID':>4} {'Transport':<16} {'HostNQN':<36} {'SubNQN':<36} Peer"]
    for a in assocs:
        lines.append(f"{a['id']:>4} {a['transport']:<16} {a['hostnqn']:<36} {a['subnqn']:<36} "
                     f"{a['peer']}")
    return "\n".join(lines)


def run_subcommand(cmd: str, argv: list[str]) -> int:
    import json

    from nvmecontrol.target.config import mem_size
    from nvmecontrol.target.control import ControlClient

    args = build_parser(cmd).parse_args(argv)
    with ControlClient(args.socket) as client:
        if cmd == "list":
            assocs = client.request("list")["associations"]
            if args.json:
                print(json.dumps({"associations": assocs}, indent=2, sort_keys=True))
            else:
                print(render_list(assocs))
        elif cmd == "terminate":
            if args.all:
                client.request("terminate", all=True)
            elif args.id is not None:
                client.request("terminate", id=args.id)
            else:
                client.request("terminate", host=args.host)
            print("NVMeoF connections terminated")
        elif cmd == "ns-add":
            device = args.device if mem_size(args.device) is not None \
                else os.path.abspath(args.device)
            r = client.request("ns-add", device=device, nsid=args.nsid, subsystem=args.subsystem,
                               read_only=args.read_only, block_size=args.block_size,
                               ana_grpid=args.ana_grpid)
            print(f"namespace {r['nsid']} added to {r['subsystem']}")
        elif cmd == "ns-remove":
            r = client.request("ns-remove", nsid=args.nsid, subsystem=args.subsystem)
            print(f"namespace {r['nsid']} removed from {r['subsystem']}")
        elif cmd == "ana-state":
            r = client.request("ana-state", port=args.port, group=args.group, state=args.state)
            print(f"port {r['port']}: ANA group {r['group']} {r['state']} "
                  f"(change count {r['chgcnt']})")
        elif cmd == "reauth":
            r = client.request("reauth", host=args.hostnqn)
            print(f"host {r['host']}: {r['queues']} queues asked to authenticate again")
        if cmd == "host-add":
            r = client.request("host-add", host=args.hostnqn, subsystem=args.subsystem,
                               **_dhchap_values(args))
            note = " (it allows any host)" if r["allow_any_host"] else ""
            print(f"host {args.hostnqn} allowed on {r['subsystem']}{note}")
        elif cmd == "host-remove":
            r = client.request("host-remove", host=args.hostnqn, subsystem=args.subsystem)
            note = "; it still allows any host" if r["allow_any_host"] else ""
            print(f"host {args.hostnqn} removed from {r['subsystem']}, "
                  f"{r['terminated']} associations terminated{note}")
        elif cmd == "save":
            r = client.request("config")
            save_config(r["config"], args.file or r.get("path"))
    return EX_OK


def save_config(config: dict, path: str | None) -> None:
    """Write ``config`` (nvmetcli JSON) to ``path``, ``-`` for standard output.

    Mode 0600 (it may hold DH-HMAC-CHAP secrets), written whole then renamed
    so that a daemon reloading it never reads half a file.
    """
    import json

    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    if path is None:
        raise UsageError("the daemon has no configuration file (-c): name the file to "
                         "write, or - for standard output")
    if path == "-":
        sys.stdout.write(text)
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    print(f"configuration saved to {path}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cmd, rest = _split(argv)
    try:
        return run_subcommand(cmd, rest) if cmd else run_daemon(rest)
    except ConfigRefused as e:
        print(f"nvmfd: {e}", file=sys.stderr)
        return EX_CONFIG
    except UsageError as e:
        print(f"nvmfd: {e}", file=sys.stderr)
        return EX_USAGE
    except NotFound as e:
        print(f"nvmfd: {e}", file=sys.stderr)
        return EX_NOINPUT
    except ConnectError as e:
        print(f"nvmfd: {e}", file=sys.stderr)
        return EX_UNAVAILABLE
    except OSError as e:
        print(f"nvmfd: {e.strerror or e}", file=sys.stderr)
        return EX_OSERR
    except NvmeControlError as e:
        print(f"nvmfd: {e}", file=sys.stderr)
        return EX_SOFTWARE
    except KeyboardInterrupt:
        return EX_INTERRUPTED
    except SystemExit as e:  # argparse (usage errors, -h)
        return e.code if isinstance(e.code, int) else EX_USAGE


if __name__ == "__main__":
    sys.exit(main())
