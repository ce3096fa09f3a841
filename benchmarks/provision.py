"""Provisioning benchmark on sandbox hosts: first run against its floor, then no-op runs and
previews of the converged host (issue 15's targets).

The floor is what one plain shell script takes on another bare host to do the same installs
and builds: every apt package of the stack from the same repositories (Node.js from the
same NodeSource repository), pm2 from npm, and the same release built the same way (a
virtualenv from the hash-locked requirements, `npm ci`, the admin's build). It trusts the
same CA certificates, as the deploy's first step does. What the deploy does beyond it is
configuration, health checks and ordering. The deploy's first run is compared to it in the
same invocation, so both see the same mirrors, caches and machine load.
"""

from __future__ import annotations

import shlex
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from orchestra_infra import config as config_module
from orchestra_infra import sandbox, secrets
from orchestra_infra.pyinfra_run import run_pyinfra
from orchestra_infra.schema import Config, validate

DEPLOY_HOST, FLOOR_HOST = "bench-deploy", "bench-floor"
NOOP_TARGET_SECONDS = 3.0
PREVIEW_TARGET_SECONDS = 5.0
RUNS = 3  # no-op runs and previews: the median of this many
FIRST_RUN_TARGET_RATIO = 1.5
FLOOR_RELEASE = "/opt/floor-release"  # where the floor builds the release
FLOOR_UPLOAD = "/root/floor-release.tar.gz"


@dataclass
class Figures:
    image: str
    floor_seconds: float
    first_run_seconds: float
    noop_seconds: float
    preview_seconds: float
    operations: int
    noop_remote_commands: int

    def report(self) -> str:
        ratio = self.first_run_seconds / self.floor_seconds

        def verdict(met: bool) -> str:
            return "met" if met else "MISSED"

        return "\n".join([
            f"{self.image}:",
            f"  floor (plain script, same installs and builds): {self.floor_seconds:7.1f} s",
            f"  first run on a bare host:        {self.first_run_seconds:7.1f} s  "
            f"({ratio:.2f}x the floor; target <= {FIRST_RUN_TARGET_RATIO}x: "
            f"{verdict(ratio <= FIRST_RUN_TARGET_RATIO)})",
            f"  no-op run (median of {RUNS}):       {self.noop_seconds:7.2f} s  "
            f"(target <= {NOOP_TARGET_SECONDS:.0f} s: "
            f"{verdict(self.noop_seconds <= NOOP_TARGET_SECONDS)})",
            f"  preview --dry --diff (median of {RUNS}): {self.preview_seconds:5.2f} s  "
            f"(target <= {PREVIEW_TARGET_SECONDS:.0f} s: "
            f"{verdict(self.preview_seconds <= PREVIEW_TARGET_SECONDS)})",
            f"  operations:                      {self.operations:7d}",
            f"  remote commands, no-op run:      {self.noop_remote_commands:7d}",
        ])


# The distro's PostgreSQL major on each sandbox image.
POSTGRES_MAJOR = {"ubuntu2204": 14, "debian12": 15}


def sandbox_config() -> Config:
    return validate(config_module.environment_data("sandbox"), secrets.NAMES)


def floor_packages(image: str = sandbox.DEFAULT_IMAGE) -> list[str]:
    """Every package the deploy installs on a sandbox host of image, for the plain script."""
    return packages_for(sandbox_config(), POSTGRES_MAJOR[image])


def packages_for(config: Config, postgres_major: int) -> list[str]:
    """Every package the deploy installs for config on a host in every group (the
    catalogue's components), with the PostgreSQL packages of ``postgres_major``."""
    from operations import postgres, stack

    pg = postgres.package_names(postgres_major, pgvector=False)
    return stack.packages(config, ("data", "app", "edge"), postgres_packages=pg)


def floor_script(packages: list[str], config: Config, node_repository: str,
                 node_key_url: str) -> str:
    """The plain script: one command per line (``set -e`` stops at the first failure)."""
    from operations import pm2

    q = shlex.quote
    certificates = [
        f"printf '%s' {q(Path(path).read_text())} > "
        f"{q('/usr/local/share/ca-certificates/' + Path(path).stem + '.crt')}"
        for path in config.extra_ca_certificates
    ]
    return "\n".join([
        "set -e",
        "export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1",
        # The deploy's first step: trust the CA certificates, point pip and npm at them.
        *certificates,
        "update-ca-certificates >/dev/null",
        "printf '[global]\\ncert = /etc/ssl/certs/ca-certificates.crt\\n' > /etc/pip.conf",
        "printf 'cafile=/etc/ssl/certs/ca-certificates.crt\\nprefix=/usr/local\\n' > /etc/npmrc",
        # Node.js from the same repository as the deploy's; curl first where the image has
        # none (base.prepare's step: Debian 12's minimal image).
        "command -v curl >/dev/null || { apt-get update -qq && "
        "apt-get install -y -qq ca-certificates curl >/dev/null; }",
        "install -d -m 755 /etc/apt/keyrings",
        f"curl -fsSL -o {q(pm2.KEYRING)} {q(node_key_url)}",
        f"echo {q(f'deb [signed-by={pm2.KEYRING}] {node_repository} nodistro main')}"
        f" > {q(pm2.SOURCES)}",
        "apt-get update -qq",
        f"apt-get install -y -qq {' '.join(q(p) for p in packages)} >/dev/null",
        # NodeSource's npm reads /etc/npmrc only when told to (operations/pm2.py's step).
        *(["printf 'globalconfig=/etc/npmrc\\n' > /usr/lib/node_modules/npm/npmrc"]
          if config.node_source == "nodesource" else []),
        "npm install --global --no-audit --no-fund --loglevel=error "
        f"{q('pm2@' + config.pm2_version)} >/dev/null",
        # The release, built as templates/app/scripts/release-build.sh.j2 builds it.
        f"mkdir -p {FLOOR_RELEASE}",
        f"tar -xzf {FLOOR_UPLOAD} -C {FLOOR_RELEASE} --no-same-owner",
        f"cd {FLOOR_RELEASE}",
        "python3 -m venv venv",
        "venv/bin/pip install --quiet --disable-pip-version-check --no-input --require-hashes"
        " -r requirements.txt",
        "cd modern-admin",
        "npm ci --no-audit --no-fund --loglevel=error",
        "npm run build --silent >/dev/null",
        "test -f dist/index.html",
    ])


def release_tarball(config: Config) -> Path:
    """The release the deploy will build (the same file: build/ caches it by content)."""
    from orchestra_infra import app_source, release
    from orchestra_infra.paths import project_root

    build_dir = project_root() / "build"

    def optional_secret(name):
        return secrets.load("sandbox").get(name)

    source = app_source.resolve(config, build_dir, project_root(), optional_secret)
    return release.build(source, build_dir)[0]


def _pyinfra(host: sandbox.SandboxHost, *args: str) -> tuple[float, str]:
    started = time.monotonic()
    # A preview without -y: with it pyinfra skips the change detection that makes it one.
    result = run_pyinfra("sandbox", "deploy.py", *args,
                         extra_env={"ORCHESTRA_SANDBOX_HOSTS": host.name},
                         yes="--dry" not in args,
                         capture_output=True, text=True, stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(f"deploy failed on {host.name}:\n{result.stderr[-4000:]}")
    return elapsed, result.stdout + result.stderr


def _upload(host: sandbox.SandboxHost, local: Path, remote: str) -> None:
    with local.open("rb") as data:
        result = subprocess.run(
            [*sandbox.ssh_base(host.address, batch=True),
             f"sudo -n sh -c {shlex.quote(f'cat > {remote}')}"],
            stdin=data, capture_output=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"upload to {host.name} failed: {result.stderr.decode()[-2000:]}")


def run(keep: bool = False, image: str = sandbox.DEFAULT_IMAGE) -> Figures:
    secrets.init("sandbox")
    config = sandbox_config()
    hosts = {h.name: h for h in sandbox.up(names=[DEPLOY_HOST, FLOOR_HOST], image=image)}
    try:
        # A fresh Ubuntu host's first-boot apt run holds apt for a while: both runs are timed
        # from when it is done, so they measure their own work.
        from operations.base import wait_for_apt_script
        for name in hosts:
            sandbox.run(name, wait_for_apt_script(300), timeout=600)
        _upload(hosts[FLOOR_HOST], release_tarball(config), FLOOR_UPLOAD)
        host_data = dict(next(data for address, data in sandbox.inventory_hosts()
                              if data["sandbox_name"] == FLOOR_HOST))
        script = floor_script(floor_packages(image), config, host_data["node_apt_repository"],
                              host_data["node_apt_key_url"])
        started = time.monotonic()
        floor = sandbox.run(FLOOR_HOST, script, timeout=1800)
        floor_seconds = time.monotonic() - started
        if floor.returncode != 0:
            raise RuntimeError(f"plain install failed: {floor.stderr[-2000:]}")
        first_seconds, _ = _pyinfra(hosts[DEPLOY_HOST])
        # The host is still busy right after a first run (services warming up, Monit's
        # start delay): the median of a few runs, not the first one alone.
        noop_seconds = statistics.median(_pyinfra(hosts[DEPLOY_HOST])[0] for _ in range(RUNS))
        preview_seconds = statistics.median(_pyinfra(hosts[DEPLOY_HOST], "--dry", "--diff")[0]
                                            for _ in range(RUNS))
        _, verbose = _pyinfra(hosts[DEPLOY_HOST], "-vv")
        operations = verbose.count("--> Starting operation:")
        commands = sum(1 for line in verbose.splitlines() if ">>> " in line)
        return Figures(image, floor_seconds, first_seconds, noop_seconds, preview_seconds,
                       operations, commands)
    finally:
        if not keep:
            sandbox.down([DEPLOY_HOST, FLOOR_HOST])
