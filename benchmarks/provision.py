"""Provisioning benchmark on sandbox hosts: first run against its floor, then a no-op run.

The floor is what one plain shell script takes to install the same packages on another
bare host; the deploy's first run is compared to it in the same invocation, so both
see the same mirror, cache and machine load.
"""

from __future__ import annotations

import shlex
import statistics
import subprocess
import time
from dataclasses import dataclass

from orchestra_infra import config as config_module
from orchestra_infra import sandbox, secrets
from orchestra_infra.pyinfra_run import run_pyinfra
from orchestra_infra.schema import Config, validate

DEPLOY_HOST, FLOOR_HOST = "bench-deploy", "bench-floor"
NOOP_TARGET_SECONDS = 5.0
NOOP_RUNS = 3
FIRST_RUN_TARGET_RATIO = 1.5


@dataclass
class Figures:
    floor_seconds: float
    first_run_seconds: float
    noop_seconds: float
    operations: int
    noop_remote_commands: int

    def report(self) -> str:
        ratio = self.first_run_seconds / self.floor_seconds
        return "\n".join([
            f"plain install script (floor):  {self.floor_seconds:7.1f} s",
            f"first run on a bare host:      {self.first_run_seconds:7.1f} s  "
            f"({ratio:.2f}x the floor; target <= {FIRST_RUN_TARGET_RATIO}x)",
            f"no-op re-run (median of {NOOP_RUNS}):  {self.noop_seconds:7.1f} s  "
            f"(target <= {NOOP_TARGET_SECONDS:.0f} s)",
            f"operations:                    {self.operations:7d}",
            f"remote commands, no-op run:    {self.noop_remote_commands:7d}",
        ])


# The distro's PostgreSQL major on each sandbox image.
POSTGRES_MAJOR = {"ubuntu2204": 14, "debian12": 15}


def floor_packages(image: str = sandbox.DEFAULT_IMAGE) -> list[str]:
    """Every package the deploy installs on a sandbox host of image, for the plain script
    (nodejs from the distro's archive: the floor adds no repository)."""
    config = validate(config_module.environment_data("sandbox"), secrets.NAMES)
    return packages_for(config, POSTGRES_MAJOR[image])


def packages_for(config: Config, postgres_major: int) -> list[str]:
    """Every package the deploy installs for config on a host in every group (the
    catalogue's components), with the PostgreSQL packages of ``postgres_major``."""
    from operations import postgres, stack

    pg = postgres.package_names(postgres_major, pgvector=False)
    return stack.packages(config, ("data", "app", "edge"), postgres_packages=pg)


def floor_script(packages: list[str]) -> str:
    return (
        "set -e; export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1; "
        "apt-get update -qq; "
        f"apt-get install -y -qq {' '.join(shlex.quote(p) for p in packages)} >/dev/null"
    )


def _pyinfra(host: sandbox.SandboxHost, *args: str) -> tuple[float, str]:
    started = time.monotonic()
    result = run_pyinfra("sandbox", "deploy.py", *args,
                         extra_env={"ORCHESTRA_SANDBOX_HOSTS": host.name},
                         capture_output=True, text=True, stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(f"deploy failed on {host.name}:\n{result.stderr[-4000:]}")
    return elapsed, result.stdout + result.stderr


def run(keep: bool = False, image: str = sandbox.DEFAULT_IMAGE) -> Figures:
    secrets.init("sandbox")
    hosts = {h.name: h for h in sandbox.up(names=[DEPLOY_HOST, FLOOR_HOST], image=image)}
    try:
        # A fresh Ubuntu host's first-boot apt run holds apt for a while: both runs are timed
        # from when it is done, so they measure their own work.
        from operations.base import wait_for_apt_script
        for name in hosts:
            sandbox.run(name, wait_for_apt_script(300), timeout=600)
        started = time.monotonic()
        floor = sandbox.run(FLOOR_HOST, floor_script(floor_packages(image)), timeout=1800)
        floor_seconds = time.monotonic() - started
        if floor.returncode != 0:
            raise RuntimeError(f"plain install failed: {floor.stderr[-2000:]}")
        first_seconds, _ = _pyinfra(hosts[DEPLOY_HOST])
        # The host is still busy right after a first run (services warming up, Monit's
        # start delay): the median of a few no-op runs, not the first one alone.
        noop_seconds = statistics.median(_pyinfra(hosts[DEPLOY_HOST])[0]
                                         for _ in range(NOOP_RUNS))
        _, verbose = _pyinfra(hosts[DEPLOY_HOST], "-vv")
        operations = verbose.count("--> Starting operation:")
        commands = sum(1 for line in verbose.splitlines() if ">>> " in line)
        return Figures(floor_seconds, first_seconds, noop_seconds, operations, commands)
    finally:
        if not keep:
            sandbox.down([DEPLOY_HOST, FLOOR_HOST])
