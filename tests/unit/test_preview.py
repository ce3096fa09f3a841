"""rollback, restore, backup, reprovision: the plan first (pyinfra's preview), then the
question, then the run; pyinfra's --dry, --limit, -v and --json; -y; --force-unlock."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from orchestra_infra import cli, lambda_cloud, pyinfra_run, reprovision, runlock

# `backup` takes the run lock over SSH: never on a real (sandbox) host from here.
pytestmark = pytest.mark.usefixtures("no_remote_lock")


@pytest.fixture
def runs(monkeypatch):
    calls = []

    def run(argv, **kwargs):
        calls.append((argv[3:], kwargs.get("env", {})))
        return SimpleNamespace(returncode=0, stdout="", stderr="")

    monkeypatch.setattr(pyinfra_run.subprocess, "run", run)
    return calls


def invoke(*argv, input=None):
    return CliRunner().invoke(cli.main, list(argv), input=input)


def test_rollback_shows_the_plan_then_asks_then_runs(runs):
    result = invoke("rollback", "sandbox", "--limit", "app", "-v", input="y\n")
    assert result.exit_code == 0, result.output
    assert "Roll sandbox's app hosts back as shown above?" in result.output
    (plan, plan_env), (run, run_env) = runs
    assert plan == ["inventories/sandbox.py", "--limit", "app", "-v", "--dry", "rollback.py"]
    assert run == ["-y", "inventories/sandbox.py", "--limit", "app", "-v", "rollback.py"]
    assert run_env[runlock.COMMAND_ENV] == "orchestra-infra rollback sandbox"
    assert runlock.FORCE_ENV not in run_env


def test_a_no_runs_nothing_and_dry_only_previews(runs):
    assert invoke("rollback", "sandbox", input="n\n").exit_code == 1
    assert len(runs) == 1 and "--dry" in runs[0][0] and "-y" not in runs[0][0]
    runs.clear()
    assert invoke("restore", "sandbox", "--dry", "--snapshot", "9f2c").exit_code == 0
    ((plan, env),) = runs
    assert plan == ["inventories/sandbox.py", "--dry", "restore.py"]
    assert env["ORCHESTRA_RESTORE_SNAPSHOT"] == "9f2c"


def test_json_needs_yes_and_force_unlock_reaches_the_run(runs):
    result = invoke("rollback", "sandbox", "--json")
    assert result.exit_code == 2 and "--json needs -y" in result.output and runs == []
    result = invoke("restore", "sandbox", "-y", "--json", "--force-unlock")
    assert result.exit_code == 0, result.output
    ((run, env),) = runs
    assert run == ["-y", "inventories/sandbox.py", "--json", "restore.py"]
    assert env[runlock.FORCE_ENV] == "1"


def test_backup_takes_the_operator_s_limit_and_dry(runs):
    result = invoke("backup", "sandbox", "--dry", "--limit", "db-1")
    assert result.exit_code == 0, result.output
    ((plan, _),) = runs
    assert plan == ["inventories/sandbox.py", "--limit", "db-1", "--dry", "exec", "--",
                    "/usr/local/lib/orchestra/orchestra-backup", "now"]


def test_a_refused_preview_asks_nothing(monkeypatch):
    monkeypatch.setattr(pyinfra_run.subprocess, "run",
                        lambda argv, **kw: SimpleNamespace(returncode=1))
    result = invoke("restore", "sandbox", input="y\n")
    assert result.exit_code == 1 and "Restore snapshot" not in result.output


def test_reprovision_shows_what_is_launched_and_billed_before_asking(monkeypatch):
    monkeypatch.setattr(reprovision, "price_cents", lambda env, t: 75)
    started = []
    monkeypatch.setattr(reprovision, "run", lambda *a, **kw: started.append(kw) or 0)
    argv = ["reprovision", "sandbox", "--launch", "gpu_1x_a10", "--region", "us-east-1",
            "--ssh-key", "k", "--filesystem", "fs", "--snapshot", "4f1c"]
    result = invoke(*argv, "--dry")
    assert result.exit_code == 0 and started == []
    assert "launch a gpu_1x_a10 instance in us-east-1" in result.output
    assert "BILLED $0.75/h from launch until terminated" in result.output
    assert "4. restore: snapshot 4f1c" in result.output
    assert invoke(*argv, input="n\n").exit_code == 1 and started == []
    assert invoke(*argv, "-y", "-vv", "--force-unlock").exit_code == 0
    assert started[0]["flags"] == ("-vv",)
    assert started[0]["extra_env"] == {runlock.FORCE_ENV: "1"}


def test_the_plan_of_an_address_and_an_unknown_price():
    lines = reprovision.plan("prod", "203.0.113.7", None, "latest")
    assert "use the instance at 203.0.113.7" in lines[1] and "hosts/prod" in lines[2]
    launch = reprovision.Launch("gpu_1x_a10", "us-east-1", "k")
    assert "hourly price (unknown here)" in reprovision.plan("prod", None, launch, "latest")[1]


def test_the_price_is_none_without_the_api(monkeypatch):
    def no_key(env):
        raise lambda_cloud.LambdaError("orchestra/no-key", "no key")

    monkeypatch.setattr(lambda_cloud, "api_key", no_key)
    assert reprovision.price_cents("sandbox", "gpu_1x_a10") is None
