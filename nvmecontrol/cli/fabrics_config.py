"""nvme-cli's ``/etc/nvme/config.json``: hosts, their subsystems and the ports to reach them.

The layout is libnvme's (nvme-cli 2.x ``--config``/``--dump-config``): a
list of hosts (a ``{"hosts": [...]}`` object is read too)::

    [{"hostnqn": "nqn...", "hostid": "uuid", "dhchap_key": "DHHC-1:...",
      "subsystems": [{"nqn": "nqn...",
                      "ports": [{"transport": "tcp", "traddr": "10.0.0.5",
                                 "trsvcid": "4420", "nr_io_queues": 2,
                                 "queue_size": 128, "keep_alive_tmo": 30,
                                 "reconnect_delay": 10, "ctrl_loss_tmo": 600,
                                 "hdr_digest": true, "data_digest": false,
                                 "disable_sqflow": true,
                                 "dhchap_key": "...", "dhchap_ctrl_key": "..."}]}]}]

Keys nvmecontrol has no use for (host_iface, tos, tls, ...) are ignored.
``connect`` takes a matching port's settings for the options not given on
the command line (command line > config > defaults, as nvme-cli merges);
``identify``, ``logpage`` and ``discover`` do the same for the options they
have (host NQN and ID, digests, DH-HMAC-CHAP secrets) from the default file
(``port_for_target``, ``merged``); ``connect-all`` with no address connects
every port, and takes each discovered subsystem's secrets from its port
(``secrets_for_entry``); ``--dump-config`` prints the connections made in
this layout.
"""

from __future__ import annotations

from nvmecontrol.errors import UsageError

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from pathlib import Path

# json and pathlib are imported when a file is read: identify and logpage of a
# device, and commands on a host without config.json, need neither (start-up
# time, issue 13).
CONFIG_JSON = "/etc/nvme/config.json"
NO_CONFIG = "none"  # --config none: read no file, as nvme-cli's -J none

# config.json port key -> the connect option (command parameter) it sets.
PORT_OPTIONS = {
    "nr_io_queues": "nr_io_queues", "queue_size": "queue_size",
    "keep_alive_tmo": "keep_alive_tmo", "reconnect_delay": "reconnect_delay",
    "ctrl_loss_tmo": "ctrl_loss_tmo", "hdr_digest": "hdr_digests",
    "data_digest": "data_digests", "dhchap_key": "dhchap_secret",
    "dhchap_ctrl_key": "dhchap_ctrl_secret",
}
_INT_OPTIONS = {"nr_io_queues", "queue_size", "keep_alive_tmo", "reconnect_delay",
                "ctrl_loss_tmo"}
_BOOL_OPTIONS = {"hdr_digest", "data_digest", "disable_sqflow"}
# nvme-cli's "disable_sqflow" says the opposite of -F/--flow-control, and the
# command line decides it when either -F or --disable-sqflow was given.
SQFLOW_KEY = "disable_sqflow"
_SQFLOW_GIVEN_BY = ("flow_control", "disable_sqflow")


class Port:
    """One port of one subsystem of one host, with the options it sets."""

    # Plain slots, not a dataclass: discover reads this module, and
    # ``import dataclasses`` costs about a bare interpreter start.
    __slots__ = ("subnqn", "traddr", "trsvcid", "hostnqn", "hostid", "options")

    def __init__(self, subnqn: str, traddr: str, trsvcid: str, hostnqn: str | None = None,
                 hostid: str | None = None, options: dict | None = None):
        self.subnqn = subnqn
        self.traddr = traddr
        self.trsvcid = trsvcid
        self.hostnqn = hostnqn
        self.hostid = hostid
        self.options = {} if options is None else options  # connect parameter name -> value

    def _values(self) -> tuple:
        return tuple(getattr(self, n) for n in self.__slots__)

    def __repr__(self) -> str:
        return "Port(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    __hash__ = None  # mutable

    @property
    def address(self) -> str:
        host = f"[{self.traddr}]" if ":" in self.traddr else self.traddr
        return f"{host}:{self.trsvcid}"


def config_path(option: str | None) -> Path | None:
    """The file ``--config`` names (None: the default), or None for ``--config none``."""
    from pathlib import Path

    if option == NO_CONFIG:
        return None
    return Path(CONFIG_JSON if option is None else option)


def load(option: str | None) -> list[Port]:
    """The ports of the file ``--config`` names; [] when the default file does not exist."""
    if option is None:
        # Usually absent: found out without json and pathlib (start-up of
        # discover, identify and logpage of an address).
        import os

        try:
            os.stat(CONFIG_JSON)
        except FileNotFoundError:
            return []
        except OSError:
            pass  # reported below, as reading it is
    import json

    path = config_path(option)
    if path is None:
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if option is None:
            return []
        raise UsageError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    except ValueError as e:
        raise UsageError(f"{path}: not JSON: {e}") from None
    return parse(data, str(path))


def parse(data, source: str) -> list[Port]:
    hosts = data.get("hosts") if isinstance(data, dict) else data
    if not isinstance(hosts, list):
        raise UsageError(f"{source}: expected a list of hosts")
    ports = []
    for h, host in enumerate(hosts):
        where = f"{source}: hosts[{h}]"
        _expect(host, dict, where)
        host_secret = host.get("dhchap_key")
        for s, sub in enumerate(_expect(host.get("subsystems", []), list, f"{where}.subsystems")):
            swhere = f"{where}.subsystems[{s}]"
            _expect(sub, dict, swhere)
            nqn = _expect(sub.get("nqn"), str, f"{swhere}.nqn")
            for p, port in enumerate(_expect(sub.get("ports", []), list, f"{swhere}.ports")):
                pwhere = f"{swhere}.ports[{p}]"
                _expect(port, dict, pwhere)
                transport = str(port.get("transport", "tcp")).lower()
                if transport != "tcp":
                    continue  # another fabric: not ours to connect, as connect-all skips it
                options = {}
                for key, name in PORT_OPTIONS.items():
                    if key in port and port[key] is not None:
                        options[name] = _option(port[key], key, f"{pwhere}.{key}")
                if port.get(SQFLOW_KEY) is not None:
                    options["flow_control"] = not _option(port[SQFLOW_KEY], SQFLOW_KEY,
                                                          f"{pwhere}.{SQFLOW_KEY}")
                if host_secret and "dhchap_secret" not in options:
                    options["dhchap_secret"] = _expect(host_secret, str, f"{where}.dhchap_key")
                ports.append(Port(nqn, _expect(port.get("traddr"), str, f"{pwhere}.traddr"),
                                  str(port.get("trsvcid") or "4420"), host.get("hostnqn"),
                                  host.get("hostid"), options))
    return ports


def _expect(value, kind, where: str):
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        import json

        raise UsageError(f"{where}: expected {kind.__name__}, got {json.dumps(value)}")
    return value


def _option(value, key: str, where: str):
    if key in _INT_OPTIONS:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            import json

            raise UsageError(f"{where}: expected a number, got {json.dumps(value)}")
        return value
    if key in _BOOL_OPTIONS:
        return _expect(value, bool, where)
    return _expect(value, str, where)


def find(ports: list[Port], subnqn: str, traddrs: set[str], trsvcid: str) -> Port | None:
    """The port of ``subnqn`` at one of ``traddrs`` (name and numeric) and ``trsvcid``."""
    for p in ports:
        if p.subnqn == subnqn and p.trsvcid == str(trsvcid) and p.traddr in traddrs:
            return p
    return None


def port_for_address(ports: list[Port], subnqn: str, address_text: str, address,
                     hostnqn: str | None = None) -> Port | None:
    """The port of ``subnqn`` at the address as typed (a name or numeric) and as resolved.

    With a host NQN given on the command line, only that host's ports (or
    ports of no named host) count: the settings are per host/subsystem pair.
    """
    traddrs = {address.host, address_text.rsplit(":", 1)[0].strip("[]")}
    if hostnqn is not None:
        ports = [p for p in ports if p.hostnqn in (None, hostnqn)]
    return find(ports, subnqn, traddrs, str(address.port))


def port_for_target(target: str, subnqn: str | None, hostnqn: str | None = None,
                    config: str | None = None) -> Port | None:
    """The port a one-shot command's network target names (None for a device or session).

    ``identify``/``logpage`` take ``ADDRESS [SUBNQN]`` (the discovery NQN
    when left out), ``discover`` takes ``ADDRESS``; the default ports are
    theirs (8009 for discovery, 4420 otherwise).  An address that does not
    parse is left to the command, which reports it.
    """
    from nvmecontrol.api.admin import target_kind

    # A device or session first: they need none of the address machinery
    # (sockets, host identity), which would only slow their start-up.
    if target_kind(target) != "address":
        return None
    from nvmecontrol.api.addresses import DISCOVERY_PORT, IO_PORT, parse_address
    from nvmecontrol.api.hosts import DISCOVERY_NQN

    nqn = DISCOVERY_NQN if subnqn is None else subnqn
    try:
        address = parse_address(target, default_port=DISCOVERY_PORT if nqn == DISCOVERY_NQN
                                else IO_PORT)
    except UsageError:
        return None
    return port_for_address(load(config), nqn, target, address, hostnqn)


def merged(ctx, port: Port | None, values: dict) -> dict:
    """``values`` (a command's parameters by name) with the port's settings filled in.

    A setting applies to a parameter the command has and the command line
    left at its default; the port's host NQN and host ID apply when none
    was given (an empty ``-q`` is a mistake to report, not "not given").
    """
    if port is None:
        return values
    out = dict(values)
    for name, value in from_port(ctx, port).items():
        if name in out:
            out[name] = value
    for name in ("hostnqn", "hostid"):
        if name in out and out[name] is None:
            out[name] = getattr(port, name)
    return out


def network_options(ctx, target: str, subnqn: str | None, *, timeout: float, **values):
    """How ``identify``/``logpage`` reach ``target``: the command line, then config.json.

    ``values``: the command's hostnqn, hostid, hdr_digests, data_digests,
    dhchap_secret and dhchap_ctrl_secret parameters.
    """
    from nvmecontrol.cli.device import ConnectOptions

    v = merged(ctx, port_for_target(target, subnqn, values["hostnqn"]), values)
    return ConnectOptions(v["hostnqn"], v["hostid"], v["hdr_digests"], v["data_digests"], timeout,
                          dhchap_secret=v["dhchap_secret"],
                          dhchap_ctrl_secret=v["dhchap_ctrl_secret"])


def secrets_for_entry(ports: list[Port], subnqn: str, traddr: str, trsvcid: str,
                      hostnqn: str | None) -> dict:
    """The DH-HMAC-CHAP secrets config.json holds for one discovery log entry.

    As libnvme's connect-all (``nvmf_add_ctrl``): a port of the entry's
    subsystem at its address gives the host and controller secrets for that
    subsystem, over the ones the command line gave for all of them.
    """
    port = find([p for p in ports if p.hostnqn in (None, hostnqn)], subnqn, {traddr},
                str(trsvcid))
    if port is None:
        return {}
    return {k: v for k, v in port.options.items() if k in ("dhchap_secret", "dhchap_ctrl_secret")}


def from_port(ctx, port: Port | None) -> dict:
    """The port's settings for the options ``ctx`` left at their defaults."""
    if port is None:
        return {}

    def defaulted(name: str) -> bool:
        source = ctx.get_parameter_source(name)
        return source is None or source.name in ("DEFAULT", "DEFAULT_MAP")

    out = {}
    for name, value in port.options.items():
        given_by = _SQFLOW_GIVEN_BY if name == "flow_control" else (name,)
        if all(defaulted(n) for n in given_by):
            out[name] = value
    return out


# The connect option (command parameter) -> the field of api.tuning.Tuning.
_TUNING_FIELDS = {
    "nr_io_queues": "num_io_queues", "queue_size": "queue_size", "keep_alive_tmo": "kato_s",
    "reconnect_delay": "reconnect_delay_s", "ctrl_loss_tmo": "ctrl_loss_tmo_s",
    "hdr_digests": "hdgst", "data_digests": "ddgst", "dhchap_secret": "dhchap_secret",
    "dhchap_ctrl_secret": "dhchap_ctrl_secret", "flow_control": "sq_flow_control",
}


def tuning_for(ctx, port: Port | None, tuning):
    """``tuning`` with the port's settings where the command line gave none."""
    import dataclasses

    given = from_port(ctx, port)
    return dataclasses.replace(tuning, **{_TUNING_FIELDS[k]: v for k, v in given.items()})


def dump(controllers) -> list[dict]:
    """``ControllerInfo``s as config.json: hosts -> subsystems -> ports (secrets left out)."""
    hosts: dict[tuple[str, str], dict[str, list]] = {}
    for c in controllers:
        p = c.params
        hostid = p.hostid if p else ""
        subsystems = hosts.setdefault((c.hostnqn or (p.hostnqn if p else ""), hostid), {})
        port = {"transport": c.transport.lower(), "traddr": c.traddr, "trsvcid": c.trsvcid}
        if p is not None:
            port.update(nr_io_queues=p.num_io_queues, keep_alive_tmo=p.kato_s,
                        reconnect_delay=p.reconnect_delay_s, ctrl_loss_tmo=p.ctrl_loss_tmo_s,
                        hdr_digest=p.hdgst, data_digest=p.ddgst,
                        disable_sqflow=not p.sq_flow_control)
            if p.queue_size:
                port["queue_size"] = p.queue_size
        subsystems.setdefault(c.subnqn, []).append(port)
    return [{"hostnqn": nqn, **({"hostid": hid} if hid else {}),
             "subsystems": [{"nqn": s, "ports": ports} for s, ports in subs.items()]}
            for (nqn, hid), subs in hosts.items()]
