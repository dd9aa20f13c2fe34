"""The control socket of a running nvmfd: a JSON-lines protocol, both ends.

A Unix stream socket (mode 0600: it can end associations and export any
file the daemon can open).  Each request is one JSON object on one line,
each answer one line back; a client may send several requests on one
connection.

    {"op": "list"}
        -> {"ok": true, "associations": [{"id", "transport", "hostnqn", "subnqn",
            "cntlid", "peer", "local", "queues", "kato_ms", "discovery", "since"}]}
    {"op": "terminate", "id": N} | {"op": "terminate", "host": NQN} | {"op": "terminate", "all": true}
        -> {"ok": true, "terminated": count}
    {"op": "ns-add", "device": PATH, "nsid": N?, "subsystem": NQN?, "read_only": bool?,
     "block_size": 512|4096?, "ana_grpid": N?}
        -> {"ok": true, "subsystem": NQN, "nsid": N}
    {"op": "ns-remove", "nsid": N, "subsystem": NQN?}
        -> {"ok": true, "subsystem": NQN, "nsid": N}
    {"op": "config"}
        -> {"ok": true, "config": <nvmetcli saved-config JSON of what is served>,
            "path": the daemon's configuration file (-c) or null}
    {"op": "host-add", "host": NQN, "subsystem": NQN?, "dhchap_key": KEY?,
     "dhchap_ctrl_key": KEY?, "dhchap_hash": NAME?, "dhchap_dhgroup": NAME?}
        -> {"ok": true, "subsystem": NQN, "allow_any_host": bool, <reload counts>}
    {"op": "host-remove", "host": NQN, "subsystem": NQN?}
        -> {"ok": true, "subsystem": NQN, "allow_any_host": bool, "terminated": count, ...}
    {"op": "reauth", "host": NQN}
        -> {"ok": true, "host": NQN, "queues": count asked to authenticate again}
    {"op": "ana-state", "port": PORTID, "group": GRPID, "state": "optimized" | "non-optimized"
     | "inaccessible" | "persistent-loss" | "change"}
        -> {"ok": true, "port", "group", "state", "chgcnt", "notified": controllers told}

Errors: {"ok": false, "error": "message", "kind": "usage" | "notfound" | "internal"}.
"""

from __future__ import annotations

import logging

from nvmecontrol.errors import UsageError
from nvmecontrol.target import constants as K
from nvmecontrol.target.defaults import default_socket_path  # noqa: F401 (its users import it here)
from nvmecontrol.transport.jsonlines import JsonLineClient, JsonLineServer

log = logging.getLogger("nvmfd")

CONTROL_TIMEOUT_S = 30.0


# --- server side --------------------------------------------------------------

class ControlServer(JsonLineServer):
    def __init__(self, server, path: str):
        super().__init__(path, self.handle, name="nvmfd-control", log=log,
                         max_clients=K.MAX_CONTROL_CLIENTS, max_line=K.MAX_CONTROL_LINE,
                         client_timeout=CONTROL_TIMEOUT_S)
        self.server = server

    def handle(self, req: dict) -> dict:
        op = req.get("op")
        srv = self.server
        if op == "list":
            return {"associations": srv.associations()}
        if op == "terminate":
            if req.get("all"):
                n = srv.terminate(all=True)
            elif req.get("id") is not None:
                n = srv.terminate(assoc_id=_int(req["id"], "id"))
            elif req.get("host"):
                n = srv.terminate(hostnqn=str(req["host"]))
            else:
                raise UsageError("terminate needs an id, a host or all")
            return {"terminated": n}
        if op == "ns-add":
            device = req.get("device")
            if not isinstance(device, str) or not device:
                raise UsageError("ns-add needs a device")
            nsid = req.get("nsid")
            subnqn, nsid = srv.add_namespace(
                device, nsid=_int(nsid, "nsid") if nsid is not None else None,
                subnqn=req.get("subsystem"), read_only=bool(req.get("read_only", False)),
                block_size=_int(req.get("block_size", 512), "block_size"),
                ana_grpid=_int(req.get("ana_grpid", 1), "ana_grpid"))
            return {"subsystem": subnqn, "nsid": nsid}
        if op == "ns-remove":
            subnqn, nsid = srv.remove_namespace(_int(req.get("nsid"), "nsid"),
                                                subnqn=req.get("subsystem"))
            return {"subsystem": subnqn, "nsid": nsid}
        if op == "config":
            return {"config": srv.dump_config(), "path": srv.config_path}
        if op in ("host-add", "host-remove"):
            return _host_acl(srv, op, req)
        if op == "ana-state":
            return _ana_state(srv, req)
        if op == "reauth":
            return _reauth(srv, req)
        raise UsageError(f"unknown operation {op!r}")


def _ana_state(srv, req: dict) -> dict:
    from nvmecontrol.target.ana import set_state  # the server side only

    state = req.get("state")
    if not isinstance(state, str):
        raise UsageError("ana-state needs a state")
    return set_state(srv, _int(req.get("port"), "port"), _int(req.get("group"), "group"), state)


def _reauth(srv, req: dict) -> dict:
    """Ask every live queue of a host to authenticate again, with its current keys."""
    from nvmecontrol.target.auth import rekey_host  # the server side only

    host = req.get("host")
    if not isinstance(host, str) or not host:
        raise UsageError("reauth needs a host NQN")
    cfg = srv.config.host_auth.get(host)
    if cfg is None:
        raise UsageError(f"host {host} has no DH-HMAC-CHAP keys (host-add --dhchap-key)")
    return {"host": host, "queues": rekey_host(srv, host, cfg)}


def _host_acl(srv, op: str, req: dict) -> dict:
    from nvmecontrol.target.config import check_hostnqn, host_auth_from

    host = req.get("host")
    if not isinstance(host, str) or not host:
        raise UsageError(f"{op} needs a host NQN")
    check_hostnqn(host, op)
    subnqn = req.get("subsystem")
    if op == "host-remove":
        return srv.remove_host(host, subnqn=subnqn)
    auth = host_auth_from({k: req[k] for k in DHCHAP_KEYS if req.get(k) is not None}, op)
    return srv.add_host(host, subnqn=subnqn, auth=auth)


# The DH-HMAC-CHAP settings host-add takes, under the configfs names.
DHCHAP_KEYS = ("dhchap_key", "dhchap_ctrl_key", "dhchap_hash", "dhchap_dhgroup")


def _int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise UsageError(f"{what} must be a number")
    try:
        return int(value, 0) if isinstance(value, str) else value
    except ValueError:
        raise UsageError(f"{what} must be a number") from None


# --- client side ----------------------------------------------------------------

class ControlClient(JsonLineClient):
    """Talks to a running nvmfd; raises ConnectError when nothing answers."""

    def __init__(self, path: str | None = None, timeout: float = CONTROL_TIMEOUT_S):
        super().__init__(path or default_socket_path(), not_running="nvmfd is not running",
                         timeout=timeout)
