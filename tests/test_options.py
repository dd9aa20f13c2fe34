"""The option table (nvmecontrol/options.py) is the one place options and defaults live.

The commands take each table option's spellings and default from it, and
the three records (Tuning -> ConnectParams -> AssociationParams) default
to it and convert field by field without dropping one.
"""

from __future__ import annotations

import ast
import dataclasses
import uuid
from pathlib import Path

import pytest
import typer.main
from typer._click import Context

from nvmecontrol.backends.model import ConnectParams
from nvmecontrol.cli.app import app
from nvmecontrol.cli.connect_options import Tuning
from nvmecontrol.host.association import AssociationParams
from nvmecontrol.hostid import HostIdentity
from nvmecontrol.options import CNTLID_DYNAMIC, OPTIONS, default, record_fields
from nvmecontrol.wire import fabrics

CLI = Path(__file__).resolve().parents[1] / "nvmecontrol" / "cli"
# The module of each command's typer signature (cli/signatures/ for the commands
# the start-up fast path runs: their bodies are typer-free).
COMMANDS = {"connect": "connect.py", "connect-all": "connect_all.py",
            "reconnect": "reconnect.py", "discover": "signatures/discover.py",
            "identify": "signatures/identify.py", "logpage": "signatures/logpage.py"}
# What one command says differently, on purpose.
OVERRIDES = {("connect-all", "cntlid")}
HOST = HostIdentity("nqn.2014-08.org.nvmexpress:uuid:3f0a9b2c-4d5e-4f60-8a7b-9c0d1e2f3a4b",
                    uuid.UUID("3f0a9b2c-4d5e-4f60-8a7b-9c0d1e2f3a4b"), "test", "test")


def command_params(name: str):
    group = typer.main.get_command(app)
    return {p.name: p for p in group.get_command(Context(group), name).params}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_commands_take_spellings_and_defaults_from_the_table(command):
    used = {n: p for n, p in command_params(command).items() if n in OPTIONS}
    assert used, "the command shares no option"
    for name, p in used.items():
        if (command, name) in OVERRIDES:
            continue
        o = OPTIONS[name]
        assert (p.opts + p.secondary_opts, p.default, p.help) == \
            (list(o.flags), o.default, o.help), name


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_no_literal_default_in_the_signatures(command):
    """A table option's parameter defaults to ``D.<name>``, never to a number of its own."""
    tree = ast.parse((CLI / COMMANDS[command]).read_text())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "command")
    args = fn.args.args[len(fn.args.args) - len(fn.args.defaults):]
    literal = [a.arg for a, d in zip(args, fn.args.defaults)
               if a.arg in OPTIONS and (command, a.arg) not in OVERRIDES
               and not (isinstance(d, ast.Attribute) and isinstance(d.value, ast.Name)
                        and d.value.id == "D" and d.attr == a.arg)]
    assert literal == []


def test_number_options_enforce_the_table_bounds(capsys):
    from nvmecontrol.cli.app import main

    for name, flag in (("nr_io_queues", "-i"), ("keep_alive_tmo", "-k"), ("queue_size", "-Q")):
        hi = OPTIONS[name].hi
        assert main(["connect", flag, str(hi + 1), "127.0.0.1:1", "nqn.2014-08.org.example:x"]) \
            == 64, name
        assert f"{hi}" in capsys.readouterr().err


def test_records_default_to_the_table():
    fields = record_fields()
    assert set(fields.values()) == {f.name for f in dataclasses.fields(Tuning)}
    tuning = Tuning()
    params = ConnectParams("192.0.2.1", "4420", "nqn.2014-08.org.example:x", HOST.hostnqn,
                           str(HOST.hostid))
    for option, field in fields.items():
        assert getattr(tuning, field) == getattr(params, field) == OPTIONS[option].default, field
    assoc = AssociationParams()
    assert (assoc.hdgst, assoc.ddgst, assoc.kato_s, assoc.io_queue_size, assoc.sq_flow_control,
            assoc.timeout_s) == (default("hdgst"), default("ddgst"), default("kato_s"),
                                 default("queue_size"), default("sq_flow_control"),
                                 default("timeout_s"))
    assert CNTLID_DYNAMIC == fabrics.CNTLID_DYNAMIC == params.cntlid == assoc.cntlid


def test_conversions_carry_every_field():
    from nvmecontrol.wire.dhchap_key import format_secret, generate_secret

    secret = format_secret(generate_secret(key_len=32))
    t = Tuning.from_options(nr_io_queues=4, queue_size=64, keep_alive_tmo=7, reconnect_delay=3,
                            ctrl_loss_tmo=9, hdr_digests=True, data_digests=True,
                            flow_control=True, timeout=2.5, dhchap_secret=secret,
                            dhchap_ctrl_secret=None, backend="nbd")  # backend tunes nothing
    assert all(getattr(t, f.name) != f.default for f in dataclasses.fields(Tuning)
               if f.name != "dhchap_ctrl_secret")
    p = ConnectParams.of(t, "192.0.2.1", 4420, "nqn.2014-08.org.example:x", HOST, cntlid=5)
    assert {f.name: getattr(p, f.name) for f in dataclasses.fields(Tuning)} == \
        dataclasses.asdict(t)
    assert (p.trsvcid, p.hostnqn, p.cntlid) == ("4420", HOST.hostnqn, 5)
    a = p.association_params()
    assert (a.num_io_queues, a.io_queue_size, a.kato_s, a.hdgst, a.ddgst, a.sq_flow_control,
            a.cntlid, a.timeout_s) == (4, 64, 7, True, True, True, 5, 2.5)
    assert a.dhchap_secret is not None and a.dhchap_ctrl_secret is None


def test_config_json_keys_set_the_same_fields():
    # config.json's port keys are the option names: fabrics_config maps them
    # to the Tuning fields the table names.
    from nvmecontrol.cli import fabrics_config

    assert {k: v for k, v in record_fields().items() if k in fabrics_config._TUNING_FIELDS} == \
        fabrics_config._TUNING_FIELDS
