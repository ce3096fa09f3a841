"""HostSnapshot: its command run for real by this machine's shell, and systemctl's output."""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import subprocess

import pytest

from operations import snapshot
from operations.snapshot import HostSnapshot


def _run(command: str) -> list[str]:
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
    return result.stdout.splitlines()


def test_files_and_dirs_in_one_pass(tmp_path):
    config = tmp_path / "app.conf"
    config.write_text("key = value\n")
    config.chmod(0o640)
    spaced = tmp_path / "with space.env"
    spaced.write_text("A=1\n")
    spaced.chmod(0o600)
    (tmp_path / "a-dir").mkdir(mode=0o750)
    user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    fact = HostSnapshot()
    files = (str(config), str(spaced), str(tmp_path / "absent"))
    dirs = (str(tmp_path / "a-dir"), str(tmp_path / "no-dir"))
    snapshot = fact.process(_run(fact.command(files=files, dirs=dirs)))
    assert snapshot["files"] == {
        str(config): {"user": user, "group": group, "mode": 640,
                      "sha256": hashlib.sha256(b"key = value\n").hexdigest()},
        str(spaced): {"user": user, "group": group, "mode": 600,
                      "sha256": hashlib.sha256(b"A=1\n").hexdigest()},
        str(tmp_path / "absent"): None,
    }
    assert snapshot["dirs"] == {str(tmp_path / "a-dir"): {"user": user, "group": group,
                                                          "mode": 750},
                                str(tmp_path / "no-dir"): None}
    assert snapshot["units"] == {}


def test_a_directory_where_a_file_belongs_is_an_error(tmp_path):
    fact = HostSnapshot()
    with pytest.raises(ValueError, match="not a regular file"):
        fact.process(_run(fact.command(files=(str(tmp_path),))))


def test_nothing_to_read():
    fact = HostSnapshot()
    assert fact.process(_run(fact.command())) == {"files": {}, "dirs": {}, "units": {}}


def test_units_from_one_systemctl_show():
    fact = HostSnapshot()
    command = fact.command(units=("redis-server", "nosuch", "monit"))
    assert command.count("systemctl show") == 1
    # What Debian 12's systemctl printed for these three, after the names the loop prints.
    output = ["N\tredis-server", "N\tnosuch", "N\tmonit",
              "U\tActiveState=active", "U\tUnitFileState=enabled", "U\t",
              "U\tActiveState=inactive", "U\tUnitFileState=", "U\t",
              "U\tActiveState=activating", "U\tUnitFileState=disabled"]
    assert fact.process(output)["units"] == {
        "redis-server": {"active": True, "enabled": True, "exists": True},
        "nosuch": {"active": False, "enabled": False, "exists": False},
        "monit": {"active": True, "enabled": False, "exists": True},
    }


class _Host:
    """pyinfra's host as lookup() sees it: a name and get_fact, every call counted."""

    def __init__(self, name):
        self.name, self.asked = name, []

    refused: str | None = None  # a path that is no longer a file: HostSnapshot raises

    def get_fact(self, fact, **keys):
        self.asked.append({k: set(v) for k, v in keys.items() if v})
        if self.refused in keys.get("files", ()):
            raise ValueError("exists and is not a regular file")
        return {kind: {key: {"asked": True} for key in keys.get(kind, ())}
                for kind in ("files", "dirs", "units")}


def _plan(monkeypatch, keys, executing=False, refused=None):
    """Register and look up keys one after the other, as a preview plans operations."""
    fake = _Host("203.0.113.10")
    fake.refused = refused
    monkeypatch.setattr(snapshot, "host", fake)
    monkeypatch.setattr(snapshot, "state", type("State", (), {"is_executing": executing}))
    monkeypatch.setattr(snapshot, "_registered",
                        snapshot.defaultdict(lambda: [{k: set() for k in snapshot.KINDS}]))
    monkeypatch.setattr(snapshot, "_snapshots", {})
    monkeypatch.setattr(snapshot, "_remembered", {})  # a new process: read from the cache
    for kind, key in keys:
        snapshot._registered[fake.name][-1][kind].add(key)
        assert snapshot.lookup(kind, key) == {"asked": True}
    snapshot.remember()
    return fake.asked


def test_a_second_plan_asks_once_for_what_the_first_registered(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    keys = [("files", "/etc/a.conf"), ("units", "redis-server"), ("dirs", "/opt/b")]
    assert len(_plan(monkeypatch, keys)) == 3  # the first plan: a snapshot per new key
    assert _plan(monkeypatch, keys) == [{"files": {"/etc/a.conf"}, "units": {"redis-server"},
                                         "dirs": {"/opt/b"}}]
    # A key the last plan did not have costs one more snapshot, then it is remembered too.
    more = [*keys, ("files", "/etc/new.conf")]
    assert len(_plan(monkeypatch, more)) == 2
    assert len(_plan(monkeypatch, more)) == 1
    # Execution reads only what this run registered, as before.
    assert _plan(monkeypatch, keys[:1], executing=True) == [{"files": {"/etc/a.conf"}}]


def test_an_unreadable_cache_costs_only_the_old_way(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    keys = [("files", "/etc/a.conf"), ("units", "redis-server")]
    _plan(monkeypatch, keys)
    (cached,) = (tmp_path / "orchestra-infra" / "snapshot-keys").iterdir()
    cached.write_text("{not json")
    assert len(_plan(monkeypatch, keys)) == 2


def test_a_remembered_file_that_became_a_directory_falls_back_to_this_plan(monkeypatch,
                                                                          tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    _plan(monkeypatch, [("files", "/etc/a.conf"), ("files", "/etc/gone.conf")])
    asked = _plan(monkeypatch, [("files", "/etc/a.conf")], refused="/etc/gone.conf")
    assert asked == [{"files": {"/etc/a.conf", "/etc/gone.conf"}}, {"files": {"/etc/a.conf"}}]

