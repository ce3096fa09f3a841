"""Secrets files: generated private, kept on re-init, every defect named."""

import shutil
import subprocess

import pytest

from orchestra_infra import secrets
from orchestra_infra.errors import ConfigError


def _problems(env="prod", environ=None):
    with pytest.raises(ConfigError) as raised:
        secrets.load(env, environ or {})
    return raised.value.problems


def test_init_writes_a_private_file_and_keeps_values(secrets_dir):
    path, written = secrets.init("prod")
    assert path.stat().st_mode & 0o777 == 0o600
    assert secrets_dir.stat().st_mode & 0o777 == 0o700
    assert written == [s.name for s in secrets.SPECS if s.generate]
    first = dict(secrets.load("prod", {}))
    assert all(len(v) >= 32 for v in first.values())
    assert secrets.init("prod")[1] == []
    assert dict(secrets.load("prod", {})) == first


def test_rotate_changes_only_the_named_secret(secrets_dir):
    secrets.init("prod")
    before = dict(secrets.load("prod", {}))
    secrets.init("prod", rotate=("redis_app_password",))
    after = dict(secrets.load("prod", {}))
    assert after["redis_app_password"] != before["redis_app_password"]
    assert {k: v for k, v in after.items() if k != "redis_app_password"} == \
        {k: v for k, v in before.items() if k != "redis_app_password"}


def test_environment_variable_overrides_one_value(secrets_dir):
    secrets.init("prod")
    loaded = secrets.load("prod", {"ORCHESTRA_SECRET_WEAVIATE_API_KEY": "x" * 40})
    assert loaded["weaviate_api_key"] == "x" * 40


def test_missing_file_names_the_command(secrets_dir):
    problems = _problems()
    assert problems[0] == ("secrets.postgres_app_password: missing (run 'orchestra-infra "
                           "secrets init prod' or set ORCHESTRA_SECRET_POSTGRES_APP_PASSWORD)")
    assert len(problems) == len([s for s in secrets.SPECS if s.required])


def _write(secrets_dir, text, mode=0o600):
    secrets_dir.mkdir(exist_ok=True)
    path = secrets_dir / "prod.yaml"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_malformed_yaml(secrets_dir):
    path = _write(secrets_dir, "postgres_app_password: [unclosed\n")
    assert _problems() == [f"{path}: not valid YAML (line 2, column 1)"]


def test_not_a_mapping(secrets_dir):
    path = _write(secrets_dir, "- a\n- b\n")
    assert _problems() == [f"{path}: expected a mapping of secret names to values"]


def test_too_open_mode(secrets_dir):
    path = _write(secrets_dir, "{}\n", mode=0o644)
    assert _problems() == [f"{path}: mode 0644 is too open (run: chmod 600 {path})"]


def test_unknown_short_and_mistyped_secrets(secrets_dir):
    secrets.init("prod")
    path = secrets_dir / "prod.yaml"
    path.write_text(path.read_text() + "redis_pasword: abc\nlambda_api_key: 12\n")
    problems = _problems(environ={"ORCHESTRA_SECRET_MONIT_PASSWORD": "short"})
    assert problems == [
        "secrets.redis_pasword: unknown secret (did you mean redis_app_password?)",
        "secrets.lambda_api_key: expected a string, got int",
        "secrets.monit_password: too short (16 characters at least)",
    ]


def test_encrypted_file_needs_identity(secrets_dir, monkeypatch):
    monkeypatch.delenv("ORCHESTRA_AGE_IDENTITY", raising=False)
    secrets_dir.mkdir()
    (secrets_dir / "prod.yaml.age").write_bytes(b"age-encryption.org/v1\n")
    assert _problems() == [f"{secrets_dir / 'prod.yaml.age'}: encrypted; set "
                           "ORCHESTRA_AGE_IDENTITY to the age identity file that decrypts it"]


@pytest.mark.skipif(not shutil.which("age"), reason="age is not installed")
def test_age_encrypted_round_trip(secrets_dir, tmp_path, monkeypatch):
    identity = tmp_path / "key.txt"
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    recipient = subprocess.run(["age-keygen", "-y", str(identity)], check=True,
                               capture_output=True, text=True).stdout.strip()
    plain, _ = secrets.init("prod")
    values = dict(secrets.load("prod", {}))
    subprocess.run(["age", "-r", recipient, "-o", str(plain) + ".age", str(plain)], check=True)
    plain.unlink()
    monkeypatch.setenv("ORCHESTRA_AGE_IDENTITY", str(identity))
    assert dict(secrets.load("prod", {})) == values
