"""system.service_account: a system user and its group, from two getent lookups."""

from __future__ import annotations

from tests.unit.test_deploy_refusals import capture

ORCHESTRA = r"^getent group orchestra "


def _commands(passwd_line: str, group_line: str = "orchestra:x:998:") -> list[str]:
    run = capture(responses=[[ORCHESTRA, f"{group_line}\n---\n{passwd_line}"]])
    assert run.returncode == 0, run.stderr[-2000:]
    return [line for line in run.stdout.splitlines()
            if line.startswith("$ ") and " orchestra" in line
            and line.split()[1] in ("groupadd", "useradd", "usermod")]


def test_a_bare_host_gets_the_group_then_the_user():
    run = capture()
    assert "$ groupadd --system orchestra" in run.stdout
    assert ("$ useradd --system --gid orchestra --home-dir /opt/orchestra --no-create-home "
            "--shell /usr/sbin/nologin orchestra") in run.stdout


def test_an_account_as_wanted_is_left_alone():
    assert _commands("orchestra:x:998:998::/opt/orchestra:/usr/sbin/nologin") == []


def test_an_account_that_drifted_is_put_back_in_one_usermod():
    assert _commands("orchestra:x:998:100::/home/orchestra:/bin/bash") == [
        "$ usermod --gid orchestra --home /opt/orchestra --shell /usr/sbin/nologin orchestra"]


def test_a_user_without_its_group_gets_the_group_and_is_moved_into_it():
    assert _commands("orchestra:x:998:100::/opt/orchestra:/usr/sbin/nologin", group_line="") == [
        "$ groupadd --system orchestra", "$ usermod --gid orchestra orchestra"]
