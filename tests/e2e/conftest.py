"""End-to-end fixtures: real sandbox hosts, the real pyinfra CLI, pytest-testinfra checks.

One session boots the hosts once and provisions them once; every test module reads
the same converged host (provisioning is minutes, a check is milliseconds).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestra_infra import sandbox, secrets

REPO = Path(__file__).resolve().parents[2]
# ORCHESTRA_E2E_PREFIX names the session's hosts, so that two sessions on one machine (two
# worktrees) do not share them; CI keeps the default.
PREFIX = os.environ.get("ORCHESTRA_E2E_PREFIX", "t-e2e")
TARGET, PEER = f"{PREFIX}-target", f"{PREFIX}-peer"
DEBIAN = f"{PREFIX}-debian"
# The drills' webhook receiver listens here on the target (tests/e2e/test_drills.py); every
# deploy of the session points alert_webhook_url at it.
WEBHOOK_PORT = 9999
# Ubuntu cloud images ship this drop-in; the hardening must win over it.
CLOUD_INIT_DROPIN = "/etc/ssh/sshd_config.d/50-cloud-init.conf"


@dataclass
class PyinfraRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def totals(self) -> dict:
        return json.loads(self.stdout)["results"]["totals"]

    @property
    def changed(self) -> list[str]:
        operations = json.loads(self.stdout)["results"]["operations"]
        return [op["name"] for op in operations if op["success"]]


def pyinfra(host: sandbox.SandboxHost, *args: str, timeout: float = 1800,
            env: dict[str, str] | None = None) -> PyinfraRun:
    """Run the real pyinfra CLI on the sandbox inventory made of this one host."""
    argv = [sys.executable, "-m", "pyinfra", "inventories/sandbox.py", "deploy.py", *args]
    env = {**os.environ, "ORCHESTRA_SANDBOX_HOSTS": host.name, **(env or {})}
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL, env=env)
    return PyinfraRun(result.returncode, result.stdout, result.stderr)


def failure(run: PyinfraRun) -> str:
    """What a failed deploy said: every line naming an error (wherever it was printed; a
    host that fails early stops long before the end of the output), then the end."""
    errors = [line for line in run.stderr.splitlines() if "rror" in line or "failed" in line]
    return "deploy failed:\n" + "\n".join(errors[:40]) + "\n...\n" + run.stderr[-4000:]


def converge(host: sandbox.SandboxHost, *args: str,
             env: dict[str, str] | None = None) -> PyinfraRun:
    run = pyinfra(host, "-y", "--json", *args, env=env)
    assert run.returncode == 0, failure(run)
    assert run.totals["error"] == 0
    return run


def on(host: sandbox.SandboxHost, command: str, sudo: bool = True) -> str:
    """Run a command on a sandbox host over SSH; fail the test with its stderr if it fails."""
    result = sandbox.run(host.name, command, sudo=sudo, timeout=120)
    assert result.returncode == 0, f"{command!r} failed on {host.name}: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="session")
def browser_ready():
    """The distro's Chromium and Playwright, for the admin page (admin_browser.py)."""
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("chromium is not installed (scripts/setup installs it)")
    pytest.importorskip("playwright.sync_api")


def require_sandbox() -> None:
    """Skip unless sandbox hosts can run here; make the sandbox's secrets."""
    if os.geteuid() != 0:
        pytest.skip("end-to-end tests need root (network namespaces, systemd-nspawn)")
    missing = sandbox.missing_tools()
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)}")
    secrets.init("sandbox")


@pytest.fixture(scope="session")
def hosts():
    """The Ubuntu 22.04 target (a Lambda instance's image: sandbox.DEFAULT_IMAGE) and its peer."""
    require_sandbox()
    os.environ["ORCHESTRA_SECRET_ALERT_WEBHOOK_URL"] = f"http://127.0.0.1:{WEBHOOK_PORT}/hook"
    # Debian first: the Ubuntu target's first deploy must meet its first-boot apt run.
    # ORCHESTRA_E2E_DEBIAN=0 leaves it out (a quicker session while developing).
    booted = {}
    if os.environ.get("ORCHESTRA_E2E_DEBIAN", "1") != "0":
        booted = {h.name: h for h in sandbox.up(names=[DEBIAN], image="debian12")}
    # ORCHESTRA_E2E_PEER=0 boots the target alone (modules that need no neighbour).
    alone = os.environ.get("ORCHESTRA_E2E_PEER", "1") == "0"
    booted |= {h.name: h for h in sandbox.up(names=[TARGET] if alone else [TARGET, PEER])}
    yield booted
    if not os.environ.get("ORCHESTRA_KEEP_SANDBOX"):
        sandbox.down([TARGET, PEER, DEBIAN])


@pytest.fixture(scope="session")
def debian(hosts):
    if DEBIAN not in hosts:
        pytest.skip("ORCHESTRA_E2E_DEBIAN=0: no Debian 12 host in this session")
    return hosts[DEBIAN]


@pytest.fixture(scope="session")
def debian_provisioning(hosts):
    """The Debian 12 host provisioned twice, in a thread started as soon as it is up: it
    runs while the Ubuntu target is provisioned and checked."""
    if DEBIAN not in hosts:
        yield None
        return
    def provision():
        first, second = converge(hosts[DEBIAN]), converge(hosts[DEBIAN])
        # Declared empty, as a fresh instance is: its backups and PostgreSQL archive start
        # (test_debian12 drills a point-in-time restore with it) while the target is tested.
        started = subprocess.run(
            [sys.executable, "-m", "orchestra_infra", "backup", "sandbox", "--start-empty"],
            cwd=REPO, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
            env={**os.environ, "ORCHESTRA_SANDBOX_HOSTS": DEBIAN})
        return first, second, started

    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool.submit(provision)


@pytest.fixture(scope="session")
def target(hosts, debian_provisioning):
    return hosts[TARGET]


@pytest.fixture(scope="session")
def peer(hosts):
    if PEER not in hosts:
        pytest.skip("ORCHESTRA_E2E_PEER=0: no neighbour host in this session")
    return hosts[PEER]


@pytest.fixture(scope="session")
def sshd_before(target) -> str:
    """sshd's PID on the bare host, before any deploy."""
    return on(target, "systemctl show -p MainPID --value ssh").strip()


@pytest.fixture(scope="session")
def provisioned(target, sshd_before):
    """The target provisioned from bare, then provisioned again: (first run, second run)."""
    first = converge(target)
    second = converge(target)
    return first, second


@pytest.fixture(scope="session")
def testinfra_host(target, provisioned, tmp_path_factory):
    import testinfra

    config = tmp_path_factory.mktemp("ssh") / "config"
    config.write_text(
        "Host *\n"
        "  User ubuntu\n"
        f"  IdentityFile {target.ssh_key}\n"
        "  StrictHostKeyChecking no\n"
        "  UserKnownHostsFile /dev/null\n"
        "  LogLevel ERROR\n"
    )
    return testinfra.get_host(f"ssh://{target.address}", ssh_config=str(config), sudo=True)
