"""What nvmfd cannot honour is refused at start-up with one line naming the key,
exit status 78 (EX_CONFIG): never served weaker than asked."""

from __future__ import annotations

import copy
import json

import pytest

from nvmecontrol.errors import UsageError
from nvmecontrol.target import main as M
from nvmecontrol.target.config import load_nvmetcli
from nvmecontrol.target.port_params import ConfigRefused, parse_port_params

SUB = "nqn.2014-08.org.example:refusals"

BASE = {
    "hosts": [],
    "ports": [{"portid": 1, "addr": {"trtype": "tcp", "adrfam": "ipv4", "traddr": "127.0.0.1",
                                     "trsvcid": "0", "treq": "not specified", "tsas": "none"},
               "param": {}, "subsystems": [SUB],
               "referrals": [{"name": "r", "enable": 1,
                              "addr": {"trtype": "tcp", "adrfam": "ipv4", "traddr": "192.0.2.1",
                                       "trsvcid": "8009", "treq": "not specified",
                                       "portid": "2"}}]}],
    "subsystems": [{"nqn": SUB, "attr": {"allow_any_host": "1"},
                    "namespaces": [{"nsid": 1, "enable": 1, "device": {"path": "mem:1M"}}]}],
}

REFUSED = [
    ("addr.tsas", lambda c: c["ports"][0]["addr"].update(tsas="tls1.3")),
    ("addr.treq", lambda c: c["ports"][0]["addr"].update(treq="required")),
    ("addr.trtype", lambda c: c["ports"][0]["addr"].update(trtype="rdma")),
    ("addr.trtype", lambda c: c["ports"][0]["addr"].update(trtype="fc")),
    ("addr.trtype", lambda c: c["ports"][0]["addr"].update(trtype="loop")),
    ("addr.adrfam", lambda c: c["ports"][0]["addr"].update(adrfam="ib")),
    ("addr.adrfam", lambda c: c["ports"][0]["addr"].update(adrfam="fc")),
    ("param.pi_enable", lambda c: c["ports"][0]["param"].update(pi_enable="1")),
    ("addr.tsas", lambda c: c["ports"][0]["referrals"][0]["addr"].update(tsas="tls1.3")),
]


def _mutated(mutate) -> dict:
    data = copy.deepcopy(BASE)
    mutate(data)
    return data


def test_the_base_configuration_is_served_as_is():
    cfg = load_nvmetcli(copy.deepcopy(BASE))
    assert cfg.ports[0].treq == "not specified"


@pytest.mark.parametrize("key, mutate", REFUSED)
def test_refused_with_the_key_named(key, mutate):
    with pytest.raises(ConfigRefused, match=key.replace(".", r"\.")) as e:
        load_nvmetcli(_mutated(mutate))
    assert "port 1" in str(e.value)


@pytest.mark.parametrize("key, mutate", REFUSED)
def test_start_up_exits_78_with_one_line(tmp_path, capsys, key, mutate):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(_mutated(mutate)))
    assert M.main(["-F", "-S", str(tmp_path / "s.sock"), "-c", str(path)]) == M.EX_CONFIG == 78
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"nvmfd: {path}: port 1") and key in err
    assert not (tmp_path / "s.sock").exists()


def test_treq_required_on_a_referral_is_information_not_a_demand():
    # The referral's target asks for a secure channel; nvmfd only passes that on.
    data = _mutated(lambda c: c["ports"][0]["referrals"][0]["addr"].update(treq="required"))
    assert load_nvmetcli(data).ports[0].referrals[0].treq == "required"


@pytest.mark.parametrize("argv, status, text", [
    (["-t", "rdma", "mem:1M"], 78, "-t"),
    (["-t", "TCP", "-K"], 78, "nvmft"),
    (["-K", "mem:1M"], 64, "-K takes no devices"),
    (["-P", "70000", "mem:1M"], 64, "-P"),
])
def test_freebsd_options_that_cannot_be_honoured(tmp_path, capsys, argv, status, text):
    assert M.main(["-F", "-a", "127.0.0.1", "-p", "0", "-n", SUB, "-S",
                   str(tmp_path / "s.sock"), *argv]) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and text in err


def test_p_with_a_configuration_file_is_a_usage_error(tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(BASE))
    assert M.main(["-F", "-c", str(path), "-P", "0"]) == 64
    assert "-P" in capsys.readouterr().err


@pytest.mark.parametrize("param, message", [
    ({"max_queue_size": "8"}, "max_queue_size"),
    ({"max_queue_size": "4096"}, "max_queue_size"),
    ({"maxh2cdata": "1000"}, "maxh2cdata"),
    ({"maxh2cdata": "8190"}, "maxh2cdata"),
    ({"inline_data_size": "-5"}, "inline_data_size"),
    ({"inline_data_size": "lots"}, "inline_data_size"),
])
def test_bad_port_parameters(param, message):
    with pytest.raises(UsageError, match=message):
        parse_port_params(param, "port 1")


def test_port_parameters():
    p = parse_port_params({"inline_data_size": "16384", "max_queue_size": "32",
                           "maxh2cdata": "65536", "pi_enable": "0", "other": "x"}, "port 1")
    # More in-capsule data than nvmfd takes is served as what it takes.
    assert (p.inline_data_size, p.ioccsz) == (8192, (64 + 8192) // 16)
    assert (p.max_queue_size, p.mqes, p.maxh2cdata) == (32, 31, 65536)
    assert parse_port_params({"inline_data_size": "-1"}, "port 1").inline_data_size == 8192
