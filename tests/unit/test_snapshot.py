"""HostSnapshot: its command run for real by this machine's shell, and systemctl's output."""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import subprocess

import pytest

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
