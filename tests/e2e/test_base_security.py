"""Base and security deploys on a bare sandbox host, checked from inside and from a peer."""

from __future__ import annotations

import socket
import subprocess

import pytest

from .conftest import CLOUD_INIT_DROPIN, on, pyinfra

pytestmark = pytest.mark.e2e


def test_second_run_changes_nothing(provisioned):
    first, second = provisioned
    assert first.totals["success"] > 0
    assert second.totals["success"] == 0, f"changed on the second run: {second.changed}"
    assert second.totals["error"] == 0


def test_service_user_and_directories(testinfra_host):
    user = testinfra_host.user("orchestra")
    assert user.exists and user.uid < 1000 and user.shell == "/usr/sbin/nologin"
    for path, owner, group, mode in (
        ("/opt/orchestra", "root", "orchestra", 0o755),
        ("/etc/orchestra", "root", "orchestra", 0o750),
        ("/var/log/orchestra", "orchestra", "orchestra", 0o750),
    ):
        directory = testinfra_host.file(path)
        assert directory.is_directory
        assert (directory.user, directory.group, directory.mode) == (owner, group, mode), path


def test_effective_sshd_config_wins_over_cloud_init(testinfra_host):
    assert testinfra_host.file(CLOUD_INIT_DROPIN).contains("PasswordAuthentication yes")
    effective = dict(
        line.split(" ", 1) for line in testinfra_host.check_output("sshd -T").splitlines()
    )
    assert effective["passwordauthentication"] == "no"
    assert effective["permitrootlogin"] == "no"
    assert effective["kbdinteractiveauthentication"] == "no"
    assert effective["maxauthtries"] == "3"
    assert effective["allowusers"] == "ubuntu"
    assert effective["x11forwarding"] == "no"
    assert effective["allowtcpforwarding"] == "no"
    assert effective["maxsessions"] == "10"
    assert effective["loglevel"] == "VERBOSE"
    assert effective["banner"] == "/etc/issue.net"
    assert effective["ciphers"].split(",")[0] == "chacha20-poly1305@openssh.com"
    assert "cbc" not in effective["ciphers"]
    assert "sha1" not in effective["macs"]


def test_password_login_is_refused(target):
    # A real SSH client offering only a password: sshd must not even offer it.
    result = subprocess.run(
        ["ssh", "-o", "BatchMode=yes", "-o", "PreferredAuthentications=password",
         "-o", "PubkeyAuthentication=no", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", f"ubuntu@{target.address}", "true"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr


def test_firewall_drops_what_it_does_not_allow(testinfra_host, target, peer):
    ruleset = testinfra_host.check_output("nft list table inet orchestra")
    assert "policy drop" in ruleset
    assert "tcp dport { 22, 80, 443 } accept" in ruleset
    assert testinfra_host.service("orchestra-firewall").is_enabled
    # A listener on a port nobody opened: reachable on the host itself, not from the peer.
    on(target, "systemd-run --unit=probe-listener python3 -m http.server 9999 "
               "--bind 0.0.0.0 --directory /var/empty")
    try:
        on(target, "for i in $(seq 50); do python3 -c \"import socket; "
                   "socket.create_connection(('127.0.0.1', 9999), 1)\" 2>/dev/null && exit 0; "
                   "sleep 0.1; done; exit 1")
        probe = (f"python3 -c \"import socket; socket.create_connection(('{target.address}', "
                 "{port}), 3)\" && echo open || echo closed")
        assert on(peer, probe.format(port=22), sudo=False).strip() == "open"
        assert on(peer, probe.format(port=9999), sudo=False).strip() == "closed"
    finally:
        on(target, "systemctl stop probe-listener")


def test_extra_ca_certificates_are_trusted(testinfra_host):
    bundle = testinfra_host.file("/etc/ssl/certs/ca-certificates.crt").content_string
    for name in ("custom-ca.crt", "sandboxing-egress-ca.crt"):
        installed = testinfra_host.file(f"/usr/local/share/ca-certificates/orchestra/{name}")
        assert installed.exists
        body = installed.content_string.split("-----BEGIN CERTIFICATE-----")[1][:200]
        assert body in bundle, f"{name} is not in the trust store"
    store = "/etc/ssl/certs/ca-certificates.crt"
    assert testinfra_host.file("/etc/pip.conf").contains(f"cert = {store}")
    assert testinfra_host.file("/etc/npmrc").contains(f"cafile={store}")
    assert testinfra_host.file("/etc/uv/uv.toml").contains("native-tls = true")


def test_base_settings(testinfra_host):
    assert testinfra_host.check_output("readlink /etc/localtime") == "/usr/share/zoneinfo/UTC"
    assert "en_US.utf8" in testinfra_host.check_output("locale -a").split()
    assert testinfra_host.file("/etc/default/locale").contains("^LANG=en_US.UTF-8$")
    assert testinfra_host.package("unattended-upgrades").is_installed
    auto = testinfra_host.file("/etc/apt/apt.conf.d/20auto-upgrades")
    assert auto.contains('APT::Periodic::Unattended-Upgrade "1";')
    journald = testinfra_host.check_output("systemd-analyze cat-config systemd/journald.conf")
    assert "SystemMaxUse=1G" in journald and "Storage=persistent" in journald
    assert testinfra_host.file("/var/log/journal").is_directory
    assert testinfra_host.file("/var/lib/orchestra-infra/gpu.json").content_string.strip() == "[]"


def test_kernel_parameters(testinfra_host):
    assert testinfra_host.sysctl("net.ipv4.tcp_syncookies") == 1
    assert testinfra_host.sysctl("net.ipv4.conf.all.accept_redirects") == 0
    conf = testinfra_host.file("/etc/sysctl.d/60-orchestra.conf")
    assert conf.contains("kernel.kptr_restrict")  # named as left to the container's host


def test_bad_data_stops_before_any_change(target, provisioned):
    run = pyinfra(target, "-y", "--data", "redis_port=5432")
    assert run.returncode != 0
    output = run.stdout + run.stderr
    assert "redis_port: 5432 is already used by postgres_port" in output
    assert "nothing was changed" in output
    assert "Starting operation" not in output


def test_require_gpu_without_gpu_stops_before_any_change(target, provisioned):
    run = pyinfra(target, "-y", "--data", "require_gpu=true")
    assert run.returncode != 0
    assert "require_gpu is true but nvidia-smi reports no NVIDIA GPU" in run.stdout + run.stderr
    assert "Starting operation" not in run.stdout + run.stderr


def test_refuses_to_lock_out_the_operator(target, provisioned):
    run = pyinfra(target, "-y", "--data", 'sshd_allow_users=["admin"]')
    assert run.returncode != 0
    assert "would lock you out" in run.stdout + run.stderr


def test_preview_shows_the_diff_and_changes_nothing(target, provisioned, testinfra_host):
    run = pyinfra(target, "--dry", "--diff", "--data", "journald_max_use=2G")
    assert run.returncode == 0, run.stderr
    output = run.stdout + run.stderr
    assert "Will modify /etc/systemd/journald.conf.d/00-orchestra.conf" in output
    assert "- SystemMaxUse=1G" in output and "+ SystemMaxUse=2G" in output
    journald = testinfra_host.file("/etc/systemd/journald.conf.d/00-orchestra.conf")
    assert journald.contains("SystemMaxUse=1G")


def test_ssh_port_answers(target):
    with socket.create_connection((target.address, 22), timeout=5) as conn:
        assert conn.recv(64).startswith(b"SSH-2.0-OpenSSH")


def test_login_banner_and_umasks(target, testinfra_host):
    banner = testinfra_host.file("/etc/issue.net").content_string
    assert banner.startswith("Authorised access only.")
    assert testinfra_host.file("/etc/issue").content_string == banner
    # A login session gets login.defs' UMASK through pam_umask (with USERGROUPS_ENAB the
    # group digit follows the owner's: 0007 for ubuntu): nothing for other users. Commands
    # through sudo (the deploy's) keep 022, or the services could not read what it writes.
    assert on(target, "umask", sudo=False).strip()[-1] == "7"
    assert on(target, "umask").strip() == "0022"
    defs = testinfra_host.file("/etc/login.defs")
    for line in ("UMASK\t027", "PASS_MAX_DAYS\t365", "SHA_CRYPT_MIN_ROUNDS\t65536"):
        assert defs.contains(f"^{line}$"), line


def test_uncommon_modules_and_core_dumps_are_off(target, testinfra_host):
    modprobe = testinfra_host.file("/etc/modprobe.d/orchestra-hardening.conf")
    for module in ("dccp", "sctp", "rds", "tipc", "usb-storage", "firewire-core"):
        assert modprobe.contains(f"^install {module} /bin/true$"), module
        assert modprobe.contains(f"^blacklist {module}$"), module
    assert on(target, "ulimit -H -c", sudo=False).strip() == "0"
    coredump = testinfra_host.check_output("systemd-analyze cat-config systemd/coredump.conf")
    assert "Storage=none" in coredump
    assert testinfra_host.file("/etc/sysctl.d/60-orchestra.conf").contains("fs.suid_dumpable")


def test_accounting_and_fail2ban_run(target, testinfra_host):
    for unit in ("sysstat", "fail2ban"):
        assert testinfra_host.service(unit).is_running, unit
    # A container gets no CAP_SYS_PACCT: accounting is installed but left off.
    assert testinfra_host.package("acct").is_installed
    assert "sshd" in on(target, "fail2ban-client status")
    assert testinfra_host.package("debsums").is_installed
    # No auditd in a container: the kernel's audit system belongs to the container's host.
    assert not testinfra_host.package("auditd").is_installed
