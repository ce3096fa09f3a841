"""What a new user trips on first: secrets listed before they exist, a mistyped name, comments
in the secrets file, JSON for scripts, a fresh clone's hosts/ folder."""

import json
import subprocess

from click.testing import CliRunner

from orchestra_infra import secrets
from orchestra_infra.cli import main
from orchestra_infra.secrets_edit import set_values
from tests.unit.test_lambda_cloud import cli, clock, project, standin  # noqa: F401 (fixtures)


def test_secrets_list_before_init_lists_everything_unset_in_columns(secrets_dir):
    result = CliRunner().invoke(main, ["secrets", "list", "prod"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["NAME", "SOURCE", "DESCRIPTION"]
    assert len(lines) == len(secrets.SPECS) + 1
    assert "postgres_app_password" in lines[1] and "unset (missing)" in lines[1]
    # Every description starts in the same column.
    starts = {line.index(spec.description) for line, spec in zip(lines[1:], secrets.SPECS,
                                                                  strict=True)}
    assert len(starts) == 1 and lines[0].index("DESCRIPTION") in starts


def test_secrets_list_json_says_where_each_comes_from_never_the_value(secrets_dir,
                                                                      monkeypatch):
    secrets.init("prod")
    monkeypatch.setenv("ORCHESTRA_SECRET_LAMBDA_API_KEY", "k" * 20)
    result = CliRunner().invoke(main, ["secrets", "list", "prod", "--json"])
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["postgres_app_password"]["source"] == "file"
    assert rows["lambda_api_key"]["source"] == "ORCHESTRA_SECRET_LAMBDA_API_KEY"
    assert rows["alert_webhook_url"] == {"name": "alert_webhook_url", "source": "unset",
                                         "required": False,
                                         "description": "Slack-compatible alert webhook"}
    for value in secrets.load("prod", {}).values():
        assert value not in result.output


def test_secrets_init_refuses_an_unknown_environment(secrets_dir):
    result = CliRunner().invoke(main, ["secrets", "init", "prdo"])
    assert result.exit_code == 2
    assert "unknown environment 'prdo' (known: prod, sandbox, staging)" in result.output
    assert not secrets_dir.exists()


def test_rotate_suggests_the_name_meant(secrets_dir):
    result = CliRunner().invoke(main, ["secrets", "init", "prod", "--rotate",
                                       "redis_app_pasword"])
    assert result.exit_code == 1
    assert "secrets.redis_app_pasword: not a generated secret (did you mean " \
           "redis_app_password?)" in result.output
    assert not (secrets_dir / "prod.yaml").exists()


def test_comments_survive_rotation(secrets_dir):
    path, _ = secrets.init("prod")
    text = path.read_text()
    before = secrets.load("prod", {})
    edited = text.replace("redis_app_password:", "# rotated after the March incident\n"
                          "redis_app_password:").rstrip("\n")
    edited = edited.replace(f"weaviate_api_key: {before['weaviate_api_key']}",
                            f"weaviate_api_key: {before['weaviate_api_key']}  # shared with Bob")
    path.write_text(edited + "\nalert_webhook_url: https://hooks.example.com/x  # ops\n")
    result = CliRunner().invoke(main, ["secrets", "init", "prod", "--rotate",
                                       "redis_app_password", "--rotate", "weaviate_api_key"])
    assert result.exit_code == 0, result.output
    after_text = path.read_text()
    after = secrets.load("prod", {})
    assert "# rotated after the March incident\nredis_app_password: " in after_text
    assert f"weaviate_api_key: {after['weaviate_api_key']}  # shared with Bob" in after_text
    assert "alert_webhook_url: https://hooks.example.com/x  # ops" in after_text
    assert after_text.startswith(secrets.HEADER)
    assert after["redis_app_password"] != before["redis_app_password"]
    assert after["weaviate_api_key"] != before["weaviate_api_key"]
    assert {k: v for k, v in after.items() if k not in ("redis_app_password",
                                                        "weaviate_api_key",
                                                        "alert_webhook_url")} == \
        {k: v for k, v in before.items() if k not in ("redis_app_password",
                                                      "weaviate_api_key")}
    assert path.stat().st_mode & 0o777 == 0o600


def test_set_values_replaces_a_multi_line_entry_and_appends_a_new_one():
    text = "# keep\na: |\n  one\n\n  two\nb: x  # why\n"
    assert set_values(text, {"a": "new", "c": "added"}) == \
        "# keep\na: new\nb: x  # why\nc: added\n"


def test_check_json(secrets_dir):
    secrets.init("sandbox")
    result = CliRunner().invoke(main, ["check", "prod", "--json"])
    assert result.exit_code == 2
    found = json.loads(result.output)
    assert found["valid"] is False and found["environment"] == "prod"
    assert any(p.startswith("secrets.postgres_app_password: missing") for p in found["problems"])
    secrets.init("prod")
    found = json.loads(CliRunner().invoke(main, ["check", "prod", "--json", "--data",
                                                 "weaviate_sha256=" + "a" * 64]).output)
    assert found["valid"] is True and found["problems"] == [] and found["ports"] > 10


def test_lambda_types_and_instances_json(project, clock):  # noqa: F811
    found = json.loads(cli(clock, "types", "--available", "--json").output)
    a10 = next(t for t in found if t["name"] == "gpu_1x_a10")
    assert a10["price_cents_per_hour"] == 75
    assert [r["name"] for r in a10["regions_with_capacity"]] == ["us-east-1", "us-west-1"]
    assert "gpu_8x_h100_sxm5" not in {t["name"] for t in found}
    assert json.loads(cli(clock, "instances", "--json").output) == []


def test_a_fresh_clone_has_hosts_readme_and_ignores_host_lists():
    tracked = subprocess.run(["git", "ls-files", "hosts"], capture_output=True, text=True,
                             check=True).stdout.split()
    assert tracked == ["hosts/README.md"]
    ignored = subprocess.run(["git", "check-ignore", "hosts/prod", "hosts/staging"],
                             capture_output=True, text=True, check=False).stdout.split()
    assert ignored == ["hosts/prod", "hosts/staging"]
