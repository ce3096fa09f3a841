"""Host hardening (Lynis): its keys are checked before any host is touched, what it renders,
and the systemd sandboxing of the units the deploy writes (systemd-analyze, offline)."""

from __future__ import annotations

import re
import shutil
import subprocess
import types

import pytest
from jinja2 import Environment, FileSystemLoader

from operations import admin_status, security, system
from orchestra_infra import config, secrets
from orchestra_infra.errors import ConfigError
from orchestra_infra.paths import project_root
from orchestra_infra.schema import validate

PINNED = {"weaviate_sha256": "0" * 64}
TEMPLATES = Environment(loader=FileSystemLoader(str(project_root() / "templates")),
                        trim_blocks=True, lstrip_blocks=True)


def _config(**overrides):
    return validate({**config.environment_data("prod"), **PINNED, **overrides}, secrets.NAMES)


def _problems(**overrides):
    with pytest.raises(ConfigError) as raised:
        _config(**overrides)
    return raised.value.problems


@pytest.mark.parametrize(("override", "message"), [
    ({"login_banner": ["Hello \\l"]},
     "login_banner: may hold printable characters only (a line each), no backslash"),
    ({"login_banner": ["  "]}, "login_banner: is empty: write the text every login shows"),
    ({"disabled_kernel_modules": ["dccp; reboot"]},
     "disabled_kernel_modules[0]: 'dccp; reboot' is not a kernel module name"),
    ({"login_umask": "27"}, "login_umask: '27' does not match ^0?[0-7]{3}$"),
    ({"password_hash_rounds": 1000}, "password_hash_rounds: 1000 must be at least 5000"),
    ({"sshd_max_sessions": 0}, "sshd_max_sessions: 0 must be at least 1"),
    ({"fail2ban_ignore_networks": ["10.0.0.0/33"]},
     "fail2ban_ignore_networks[0]: '10.0.0.0/33' is not an IP address or network"),
    ({"hardening_packages": ["debsums; rm -rf /"]},
     "hardening_packages[0]: 'debsums; rm -rf /' does not match ^[a-z0-9][a-z0-9.+-]+$"),
])
def test_bad_hardening_input_is_named(override, message):
    assert _problems(**override) == [message]


def test_login_defs_keys():
    assert security.login_defs(_config()) == {
        "PASS_MAX_DAYS": "365", "PASS_MIN_DAYS": "1", "PASS_WARN_AGE": "14", "UMASK": "027",
        "SHA_CRYPT_MIN_ROUNDS": "65536", "SHA_CRYPT_MAX_ROUNDS": "65536",
    }


def test_packages_follow_the_switches():
    assert {"acct", "fail2ban", "python3-systemd", "debsums"} <= set(security.packages(_config()))
    off = _config(process_accounting=False, fail2ban_enabled=False, hardening_packages=[])
    assert security.packages(off) == []


def test_sshd_dropin_forbids_forwarding_and_shows_the_banner():
    text = TEMPLATES.get_template("security/etc/ssh/sshd_config.d/00-orchestra.conf.j2").render(
        config=_config())
    for line in ("AllowTcpForwarding no", "MaxSessions 10", "LogLevel VERBOSE",
                 "Banner /etc/issue.net", "X11Forwarding no", "MaxAuthTries 3"):
        assert f"\n{line}\n" in text, line


def test_fail2ban_never_bans_loopback_or_trusted_networks():
    cfg = _config(firewall_trusted_networks=["10.0.0.0/24"], fail2ban_ignore_networks=["192.0.2.7"])
    text = TEMPLATES.get_template("security/etc/fail2ban/jail.local.j2").render(
        config=cfg)
    assert "\nignoreip = 127.0.0.1/8 ::1 10.0.0.0/24 192.0.2.7\n" in text
    assert "\nbackend = systemd\n" in text and "\nmaxretry = 5\n" in text


def test_modules_are_neither_loaded_on_demand_nor_by_alias():
    text = TEMPLATES.get_template("security/etc/modprobe.d/orchestra-hardening.conf.j2").render(
        config=_config(disabled_kernel_modules=["dccp", "usb-storage"]))
    assert re.findall(r"^(install|blacklist) (\S+)", text, re.M) == [
        ("install", "dccp"), ("blacklist", "dccp"),
        ("install", "usb-storage"), ("blacklist", "usb-storage")]


def test_every_dropin_sandbox_is_strict():
    for unit, lines in system.SANDBOX.items():
        assert "ProtectSystem=strict" in lines and "NoNewPrivileges=true" in lines, unit
    # PostgreSQL's JIT maps memory writable, then executable.
    assert "MemoryDenyWriteExecute=true" not in system.SANDBOX["postgresql@"]
    # Supervisor's programs drop to the service user: setuid stays allowed.
    supervisor = system.process_manager_sandbox(["/var/log/orchestra"])
    assert "SystemCallFilter=~@privileged" not in supervisor
    assert "ReadWritePaths=/var/log/orchestra" in supervisor


def _analyze_version() -> int:
    if not shutil.which("systemd-analyze"):
        return 0
    out = subprocess.run(["systemd-analyze", "--version"], capture_output=True, text=True).stdout
    found = re.match(r"systemd (\d+)", out)
    return int(found.group(1)) if found else 0


@pytest.mark.skipif(_analyze_version() < 250, reason="needs systemd-analyze --offline (250+)")
def test_units_the_deploy_writes_expose_little(tmp_path):
    """The units written whole, scored offline; the drop-ins' packaged units are scored on
    the host (tests/e2e/test_lynis.py)."""
    cfg = types.SimpleNamespace(**_config().model_dump())
    units = {
        "weaviate.service": ("weaviate/etc/systemd/system/weaviate.service.j2",
                             {"config": cfg, "binary": "/opt/weaviate/current/weaviate",
                              "env_file": "/etc/weaviate/weaviate.env"}),
        "monit.service": ("monit/etc/systemd/system/monit.service.j2",
                          {"monit": "/usr/bin/monit", "control_file": "/etc/monit/monitrc",
                           "pm2_home": "/var/lib/orchestra/pm2"}),
        "pm2-orchestra.service": ("pm2/etc/systemd/system/pm2-orchestra.service.j2",
                                  {"user": "orchestra", "pm2_home": "/var/lib/orchestra/pm2",
                                   "pm2": "/usr/bin/pm2", "log_root": "/var/log/orchestra"}),
        "orchestra-firewall.service": (
            "security/etc/systemd/system/orchestra-firewall.service.j2",
            {"rules": security.FIREWALL_RULES}),
        "orchestra-status.service": (
            "status/etc/systemd/system/orchestra-status.service.j2",
            {"runner": admin_status.RUNNER, "output": admin_status.OUTPUT,
             "output_dir": admin_status.OUTPUT_DIR}),
        f"{admin_status.SHARE}@.service": (
            f"status/etc/systemd/system/{admin_status.SHARE}@.service.j2",
            {"output": admin_status.OUTPUT, "group": "orchestra"}),
    }
    unit_dir = tmp_path / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    for name, (src, context) in units.items():
        (unit_dir / name).write_text(TEMPLATES.get_template(src).render(**context))
    for name in units:
        name = name.replace("@.", "@1.")  # an instance of a template unit
        result = subprocess.run(
            ["systemd-analyze", "security", "--offline=yes", f"--root={tmp_path}", "--no-pager",
             name], capture_output=True, text=True, timeout=60)
        found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
        assert found, result.stdout + result.stderr
        assert float(found.group(1)) <= 4.9, (name, found.group(1))
