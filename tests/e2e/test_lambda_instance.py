"""What a fresh Lambda instance (Ubuntu 22.04) has that a minimal host lacks, and the deploy's
answer to each: the first-boot apt run, needrestart, Docker's firewall, the system Python,
Node.js 12 in the archive."""

from __future__ import annotations

import pytest

from .conftest import on, pyinfra

pytestmark = pytest.mark.e2e


def test_the_target_is_ubuntu_2204_like_a_lambda_instance(target, provisioned):
    assert 'VERSION_ID="22.04"' in on(target, "cat /etc/os-release")
    assert on(target, "command -v nvidia-smi || echo none").strip() == "none"


def test_the_first_deploy_waited_for_the_first_boot_apt_run(provisioned):
    first, second = provisioned
    # The image holds apt's locks for 60 s after boot, as unattended-upgrades does: the first
    # run found them held and waited (an operation that did something), the second did not.
    assert "Prepare apt | Wait for apt and dpkg to be free" in first.changed
    assert "Prepare apt | Wait for apt and dpkg to be free" not in second.changed


def test_apt_busy_past_the_timeout_stops_the_deploy_naming_the_holder(target, provisioned):
    on(target, "systemd-run --unit=hold-apt /usr/local/sbin/lambda-first-boot-apt 60")
    try:
        run = pyinfra(target, "-y", "--data", "apt_lock_timeout=5")
        output = run.stdout + run.stderr
        assert run.returncode != 0
        assert "apt/dpkg locks still held after 5 s (apt_lock_timeout)" in output
        assert "/var/lib/dpkg/lock-frontend: pid " in output
        assert "/usr/bin/python3 /usr/local/sbin/lambda-first-boot-apt 60" in output
        # Never killed: the holder is still there.
        assert on(target, "systemctl is-active hold-apt").strip() == "active"
    finally:
        on(target, "systemctl stop hold-apt; systemctl reset-failed hold-apt 2>/dev/null; true")


def test_needrestart_is_installed_and_restarted_nothing_sshd_included(target, sshd_before,
                                                                      provisioned):
    assert on(target, "dpkg-query -W -f='${Status}' needrestart") == "install ok installed"
    # The hardening reloads sshd (same process); a restart by needrestart would replace it.
    assert on(target, "systemctl show -p MainPID --value ssh").strip() == sshd_before


def test_docker_and_its_firewall_rules_survive_the_deploy(target, provisioned):
    assert on(target, "docker info --format '{{.ServerVersion}}'").strip()
    rules = on(target, "iptables -S; iptables -t nat -S")
    assert "-N DOCKER-USER" in rules and "-N DOCKER" in rules
    # The deploy's firewall is a table of its own next to Docker's.
    tables = on(target, "nft list tables").split("\n")
    assert "table inet orchestra" in tables and "table ip nat" in tables


def test_the_app_runs_on_the_system_python_310(target, provisioned):
    assert on(target, "/opt/orchestra/current/venv/bin/python --version").startswith(
        "Python 3.10.")


def test_node_comes_from_the_nodesource_repository_at_the_pinned_major(target, provisioned):
    assert on(target, "node --version", sudo=False).startswith("v22.")
    source = on(target, "cat /etc/apt/sources.list.d/nodesource.list")
    assert source.startswith("deb [signed-by=/etc/apt/keyrings/nodesource.asc] http")
    assert "nodistro main" in source
    policy = on(target, "apt-cache policy nodejs")
    assert "1nodesource1" in policy.split("Installed:")[1].split("\n")[0]
    # Global npm packages go to /usr/local, where the pm2 unit and Monit look for them.
    assert on(target, "test -x /usr/local/bin/pm2 && echo ok").strip() == "ok"


def test_the_distros_node_is_refused_before_any_change(target, provisioned):
    run = pyinfra(target, "-y", "--data", "node_source=distro")
    assert run.returncode != 0
    output = run.stdout + run.stderr
    assert 'ships Node.js 12, older than the 18 the admin needs: set node_source = "nodesource"' \
        in output
    assert "Starting operation" not in output
