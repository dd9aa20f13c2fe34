"""The discovery cache that ``connect ADDRESS <TAB>`` reads, and ``discover`` writing it."""

from __future__ import annotations

from nvmecontrol.cli import discovery_cache
from nvmecontrol.cli.app import main
from nvmecontrol.nqn import DISCOVERY_NQN


def test_path_mangles_what_a_file_name_cannot_hold(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    base = tmp_path / "nvmecontrol" / "discovery"
    assert discovery_cache.path_for("192.0.2.1:4420", env) == base / "192.0.2.1_4420"
    assert discovery_cache.path_for("[2001:db8::1]:4420", env) == base / "_2001_db8__1__4420"
    assert discovery_cache.path_for("a/b", env) == base / "a_b"


def test_without_xdg_cache_home_it_is_under_home(tmp_path):
    path = discovery_cache.path_for("h:1", {"HOME": str(tmp_path)})
    assert path == tmp_path / ".cache" / "nvmecontrol" / "discovery" / "h_1"


def test_save_writes_one_nqn_per_line_and_replaces(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    discovery_cache.save("h:1", ["nqn.a:x", "nqn.a:y", "nqn.a:x", ""], env)
    path = discovery_cache.path_for("h:1", env)
    assert path.read_text() == "nqn.a:x\nnqn.a:y\n"
    discovery_cache.save("h:1", ["nqn.a:z"], env)
    assert path.read_text() == "nqn.a:z\n"
    assert [p.name for p in path.parent.iterdir()] == ["h_1"]  # no temporary file left


def test_save_failures_are_silent(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    discovery_cache.save("h:1", ["nqn.a:x"], {"XDG_CACHE_HOME": str(blocker)})
    discovery_cache.save("..", ["nqn.a:x"], {"XDG_CACHE_HOME": str(tmp_path)})
    assert not (tmp_path / "nvmecontrol" / "discovery").exists()


def test_discover_caches_the_nqns_it_found(nvmfd_server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    typed = f"localhost:{nvmfd_server.port}"
    assert main(["discover", typed]) == 0
    capsys.readouterr()
    by_typed = discovery_cache.path_for(typed).read_text().splitlines()
    assert by_typed == [nvmfd_server.subnqn]
    # Also under the address the entry names, which is what connect is given.
    by_entry = discovery_cache.path_for(f"127.0.0.1:{nvmfd_server.port}").read_text()
    assert by_entry.splitlines() == [nvmfd_server.subnqn]
    assert DISCOVERY_NQN not in by_entry
