"""Every command that acts on hosts runs `pyinfra -y inventories/ENV.py ...` one way
(orchestra_infra/pyinfra_run.py); backup and restore: test_backup.py."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from benchmarks import provision
from orchestra_infra import cli, config, pyinfra_run, reprovision, sandbox
from orchestra_infra.paths import project_root

REPO = project_root()


@pytest.fixture
def runs(monkeypatch):
    calls = []

    def run(argv, **kwargs):
        calls.append((argv, kwargs))
        return SimpleNamespace(returncode=0, stdout="out\n", stderr="")

    monkeypatch.setattr(pyinfra_run.subprocess, "run", run)
    return calls


def test_rollback_runs_rollback_py(runs):
    result = CliRunner().invoke(cli.main, ["rollback", "sandbox", "-y"])
    assert result.exit_code == 0, result.output
    ((argv, kwargs),) = runs
    assert argv == [sys.executable, "-m", "pyinfra", "-y", "inventories/sandbox.py",
                    "rollback.py"]
    assert kwargs["cwd"] == config.project_root()


def test_rollback_refuses_an_unknown_environment(runs):
    result = CliRunner().invoke(cli.main, ["rollback", "prdo"])
    assert result.exit_code == 2  # a usage error, like every command's unknown ENV
    assert "Error: unknown environment 'prdo'" in result.output
    assert runs == []


def test_reprovision_stages_pass_the_data_and_read_no_input(runs):
    reprovision._pyinfra("sandbox", "deploy.py", ["a=1", "b=x"], {"ORCHESTRA_SANDBOX_HOSTS": "n"})
    ((argv, kwargs),) = runs
    assert argv[4:] == ["inventories/sandbox.py", "deploy.py", "--data", "a=1", "--data", "b=x"]
    assert kwargs["env"]["ORCHESTRA_SANDBOX_HOSTS"] == "n"
    assert kwargs["stdin"] is subprocess.DEVNULL


def test_bench_deploys_to_its_host_only_and_reads_the_output(runs):
    host = sandbox.SandboxHost("bench-deploy", "10.213.0.2", "ubuntu2204", "/key")
    _, output = provision._pyinfra(host, "-vv")
    ((argv, kwargs),) = runs
    assert argv[4:] == ["inventories/sandbox.py", "deploy.py", "-vv"]
    assert kwargs["env"]["ORCHESTRA_SANDBOX_HOSTS"] == "bench-deploy"
    assert kwargs["capture_output"] and kwargs["text"]
    assert output == "out\n"


def test_bench_floor_installs_every_components_packages():
    packages = provision.floor_packages("debian12")
    assert {"postgresql-15", "redis-server", "nginx", "monit", "restic"} <= set(packages)
    assert "postgresql-14" in provision.floor_packages("ubuntu2204")
    config = provision.sandbox_config().model_copy(
        update={"extra_ca_certificates": [], "pm2_version": "6.0.8"})
    script = provision.floor_script(["a", "b c"], config, "https://mirror.test/node_22.x",
                                    "https://mirror.test/key.asc")
    assert "apt-get install -y -qq a 'b c' >/dev/null" in script.splitlines()
    assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0
    assert ("deb [signed-by=/etc/apt/keyrings/nodesource.asc] https://mirror.test/node_22.x "
            "nodistro main") in script
    assert "pm2@6.0.8" in script


def test_bench_floor_builds_the_release_as_the_deploy_does():
    """A fair floor: every build command of the deploy's release build, the same words."""
    build = (REPO / "templates/app/scripts/release-build.sh.j2").read_text()
    commands = [line for line in build.splitlines()
                if line.startswith(("python3 -m venv", "venv/bin/pip", "npm "))]
    assert len(commands) == 4
    script = provision.floor_script([], provision.sandbox_config(), "https://r.test",
                                    "https://k.test")
    for command in commands:
        assert any(line.startswith(command) for line in script.splitlines()), command
