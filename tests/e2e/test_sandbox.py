"""Sandbox hosts for real: systemd-nspawn, network namespaces, SSH. Needs root.

The hosts are named t-sbx-* so they never collide with the demo's orch-N or other tests; they
share the default cache (the root file system is built once) and state (addresses are
allocated across all hosts).
"""

import os
import re
import subprocess
from pathlib import Path

import pytest

from orchestra_infra import sandbox

pytestmark = pytest.mark.e2e

NAMES = ["t-sbx-a", "t-sbx-b"]


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "sandbox hosts need root"
    missing = sandbox.missing_tools()
    if missing:
        return "missing tools: " + ", ".join(f"{t} ({p})" for t, p in missing.items())
    return None


@pytest.fixture(scope="module")
def hosts():
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    sandbox.down(NAMES)  # whatever an interrupted earlier run left
    try:
        yield {h.name: h for h in sandbox.up(names=NAMES)}
    finally:
        sandbox.down(NAMES)


def _ok(name: str, command: str, sudo: bool = True) -> str:
    result = sandbox.run(name, command, sudo=sudo, timeout=60)
    assert result.returncode == 0, f"{command!r} on {name}: {result.stderr}"
    return result.stdout


def _ours(hosts_status):
    return {h["name"]: h for h in hosts_status if h["name"] in NAMES}


def test_up_again_leaves_running_hosts_alone(hosts):
    before = _ours(sandbox.status())
    assert all(h["running"] for h in before.values())
    again = sandbox.up(names=NAMES)
    after = _ours(sandbox.status())
    assert {h.name: h.address for h in again} == {n: h.address for n, h in hosts.items()}
    assert {n: h["pid"] for n, h in after.items()} == {n: h["pid"] for n, h in before.items()}


def test_each_host_has_its_own_address_in_the_sandbox_subnet(hosts):
    addresses = {h.address for h in hosts.values()}
    assert len(addresses) == len(NAMES)
    assert all(a.startswith("10.213.0.") for a in addresses)
    inventory = dict(sandbox.inventory_hosts())
    for host in hosts.values():
        assert inventory[host.address]["sandbox_name"] == host.name
        assert inventory[host.address]["ssh_user"] == "ubuntu"


def test_ssh_as_ubuntu_with_passwordless_sudo_and_systemd_running(hosts):
    assert _ok("t-sbx-a", "id -un", sudo=False).strip() == "ubuntu"
    assert _ok("t-sbx-a", "id -un").strip() == "root"
    assert _ok("t-sbx-a", "cat /proc/1/comm").strip() == "systemd"
    assert _ok("t-sbx-a", "systemctl is-system-running", sudo=False).strip() == "running"
    assert _ok("t-sbx-a", "hostname", sudo=False).strip() == "t-sbx-a"


def test_hosts_are_distinct_machines(hosts):
    def identity(name):
        return _ok(name, "cat /etc/machine-id /etc/ssh/ssh_host_ed25519_key.pub")

    assert identity("t-sbx-a") != identity("t-sbx-b")


def test_only_sshd_listens_beyond_loopback(hosts):
    # Like a Lambda instance: sshd on every address; systemd-resolved's stub and Docker's
    # containerd on loopback only.
    listening = _ok("t-sbx-a", "ss -Htlnp")
    public = {re.search(r":(\d+)\s", line).group(1) for line in listening.splitlines()
              if not re.search(r"\s(127\.[0-9.]+|\[::1\])(%\w+)?:\d+\s", line)}
    assert public == {"22"}, listening
    assert "sshd" in listening


def test_the_container_may_run_a_firewall_and_set_network_sysctls(hosts):
    """What a deploy's nftables firewall and net.* sysctls need (nft itself is not installed)."""
    cap_eff = int(_ok("t-sbx-a", "awk '/^CapEff/ {print $2}' /proc/self/status"), 16)
    cap_net_admin = 12
    assert cap_eff & (1 << cap_net_admin)
    _ok("t-sbx-a", "echo 1 > /proc/sys/net/ipv4/tcp_syncookies")


def test_hosts_reach_each_other_with_their_own_addresses(hosts):
    """Routed through this machine, not masqueraded: a peer firewall can allow one address."""
    a, b = hosts["t-sbx-a"], hosts["t-sbx-b"]
    assert _ok("t-sbx-a", f"timeout 5 head -c 4 < /dev/tcp/{b.address}/22", sudo=False) == "SSH-"
    accept_one = (
        "import socket; s = socket.create_server(('', 7001)); s.settimeout(20); "
        "print(s.accept()[1][0], flush=True)"
    )
    listener = subprocess.Popen(
        [*sandbox.ssh_command("t-sbx-b"), f"timeout 30 python3 -c {accept_one!r}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        # Bounded retry: the listener on b may not be up yet.
        attempt = f"(echo > /dev/tcp/{b.address}/7001) 2>/dev/null"
        retry = f"for i in $(seq 20); do {attempt} && exit 0; sleep 0.5; done; exit 1"
        _ok("t-sbx-a", retry, sudo=False)
        peer, _ = listener.communicate(timeout=30)
    finally:
        listener.kill()
        listener.wait(timeout=10)
    assert peer.strip() == a.address


def test_reboot_keeps_the_disk_and_ssh_comes_back(hosts):
    _ok("t-sbx-a", "echo kept > /var/tmp/marker && sync")
    boot_id = _ok("t-sbx-a", "cat /proc/sys/kernel/random/boot_id")
    old_pid = _ours(sandbox.status())["t-sbx-a"]["pid"]
    sandbox.reboot("t-sbx-a")
    assert _ok("t-sbx-a", "cat /var/tmp/marker").strip() == "kept"
    assert _ok("t-sbx-a", "cat /proc/sys/kernel/random/boot_id") != boot_id
    now = _ours(sandbox.status())["t-sbx-a"]
    assert now["running"] and now["pid"] != old_pid
    assert now["address"] == hosts["t-sbx-a"].address


def test_down_leaves_nothing_behind(hosts):
    entries = {n: e for n, e in sandbox.read_state().items() if n in NAMES}
    sandbox.down(NAMES)

    assert not _ours(sandbox.status())
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    mounts = Path("/proc/self/mountinfo").read_text()
    for name, entry in entries.items():
        assert entry["namespace"] not in netns
        assert not (sandbox.NETNS_DIR / entry["namespace"]).exists()
        assert f" {entry['veth']}@" not in links and f" {entry['veth']}:" not in links
        assert not sandbox.host_dir(name).exists()
        assert str(sandbox.host_dir(name)) not in mounts
        assert not _processes_using(entry["rootfs"])
    if not sandbox.status():
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        assert sandbox.NAT_TABLE not in tables


def _processes_using(rootfs: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if rootfs.encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids
