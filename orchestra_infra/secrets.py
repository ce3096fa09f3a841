"""Per-environment secrets: generated, kept outside git, validated, never printed.

A secrets file is ``secrets/ENV.yaml`` (mode 0600, gitignored) or, age-encrypted,
``secrets/ENV.yaml.age`` decrypted with the identity in ``ORCHESTRA_AGE_IDENTITY``.
``ORCHESTRA_SECRET_<NAME>`` environment variables override single values.
"""

from __future__ import annotations

import os
import re
import secrets as _random
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path

import yaml

from . import secrets_edit
from .errors import ConfigError
from .paths import project_root

MIN_LENGTH = 16
MASK = "********"


# What each kind of secret may hold. Secrets land in env files, URLs (postgresql://user:
# PASSWORD@...), Monit's and Alertmanager's quoted strings, curl config files and SQL; a
# character set that none of those reads as syntax keeps every one of them a single value,
# with no escaping per format to get wrong. (regex, what an operator is told)
TOKEN = (r"[A-Za-z0-9._~-]+", "letters, digits and . _ ~ - (what `secrets init` generates)")
S3_SECRET = (r"[A-Za-z0-9._~+/=-]+", "letters, digits and . _ ~ + / = -")
HTTPS_URL = (r"(https://[A-Za-z0-9.-]+|http://(127\.[0-9.]+|localhost|\[::1\]))(:[0-9]{1,5})?"
             r"(/[A-Za-z0-9._~%/+=&?:@,-]*)?",
             "an https URL (http only on loopback) without quotes, spaces, $ or backslashes")
PRIVATE_KEY = (r"-----BEGIN [A-Z ]+-----\n[A-Za-z0-9+/=\n]+-----END [A-Z ]+-----\n*",
               "a PEM/OpenSSH private key (-----BEGIN ... KEY-----, base64 lines, "
               "-----END ... KEY-----)")


@dataclass(frozen=True)
class SecretSpec:
    name: str
    description: str
    generate: bool = True  # `secrets init` creates a random value
    required: bool = True  # a deploy stops when it is missing
    charset: tuple[str, str] = TOKEN  # (regex the whole value matches, its description)
    max_bytes: int | None = None  # longest value the program that checks it reads whole


SPECS = (
    SecretSpec("postgres_app_password", "password of the app's PostgreSQL role"),
    SecretSpec("redis_app_password", "password of the Redis ACL user the app connects as"),
    SecretSpec("redis_admin_password", "password of the administrative Redis ACL user"),
    SecretSpec("weaviate_api_key", "API key the app presents to Weaviate"),
    SecretSpec("monit_password", "basic-auth password of Monit's web interface"),
    SecretSpec("restic_password", "encryption password of the restic backup repository"),
    SecretSpec("pg_archive_cipher_pass", "encryption passphrase of the pgBackRest (PostgreSQL "
               "archive) repository"),
    SecretSpec("postgres_exporter_password", "password of the metrics exporter's PostgreSQL "
               "role (pg_monitor)"),
    SecretSpec("redis_exporter_password", "password of the metrics exporter's Redis ACL user"),
    # Needed only by multi-host layouts (orchestra_infra/mesh.py); `secrets init` adds it.
    SecretSpec("wireguard_mesh_seed", "seed the hosts' WireGuard keys are derived from",
               required=False),
    SecretSpec("alert_webhook_url", "Slack-compatible alert webhook", generate=False,
               required=False, charset=HTTPS_URL),
    SecretSpec("lambda_api_key", "Lambda Cloud API key", generate=False, required=False),
    SecretSpec("restic_s3_access_key_id", "access key id of an s3: restic repository",
               generate=False, required=False),
    SecretSpec("restic_s3_secret_access_key", "secret access key of an s3: restic repository",
               generate=False, required=False, charset=S3_SECRET),
    SecretSpec("restic_sftp_private_key", "SSH private key (OpenSSH, multi-line) for an sftp: "
               "restic repository", generate=False, required=False, charset=PRIVATE_KEY),
    SecretSpec("app_deploy_key", "SSH private key that may read the app's git repository",
               generate=False, required=False, charset=PRIVATE_KEY),
    # The edge (nginx) keeps only a bcrypt hash of it, and bcrypt reads 72 bytes at most.
    SecretSpec("edge_password", "basic-auth password of the edge's protected routes (the "
               "admin, the MCP servers; user edge_auth_user)", max_bytes=72),
)
SPEC_BY_NAME = {spec.name: spec for spec in SPECS}
NAMES = frozenset(SPEC_BY_NAME)  # what schema.validate accepts as a secret's name


class Secrets(Mapping):
    """Secret values by name. Its repr never shows a value."""

    def __init__(self, env: str, values: dict[str, str]):
        self.env = env
        self._values = dict(values)

    def __getitem__(self, name: str) -> str:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"<Secrets {self.env}: {', '.join(sorted(self._values))}>"

    def mask(self, text: str) -> str:
        """Replace every secret value in text by a mask (longest first, so no prefix leaks)."""
        for value in sorted(self._values.values(), key=len, reverse=True):
            if value:
                text = text.replace(value, MASK)
        return text


def secrets_dir() -> Path:
    return Path(os.environ.get("ORCHESTRA_SECRETS_DIR", project_root() / "secrets"))


def secrets_path(env: str) -> Path:
    return secrets_dir() / f"{env}.yaml"


def env_var(name: str) -> str:
    return f"ORCHESTRA_SECRET_{name.upper()}"


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _read_file(env: str) -> tuple[Path | None, str | None]:
    plain, encrypted = secrets_path(env), secrets_path(env).with_suffix(".yaml.age")
    if encrypted.exists():
        return encrypted, _decrypt(encrypted)
    if plain.exists():
        mode = plain.stat().st_mode & 0o777
        if mode & 0o077:
            raise ConfigError([
                f"{_display(plain)}: mode {mode:04o} is too open "
                f"(run: chmod 600 {_display(plain)})"
            ])
        return plain, plain.read_text()
    return None, None


def _decrypt(path: Path) -> str:
    identity = os.environ.get("ORCHESTRA_AGE_IDENTITY")
    if not identity:
        raise ConfigError([f"{_display(path)}: encrypted; set ORCHESTRA_AGE_IDENTITY to the "
                           "age identity file that decrypts it"])
    result = subprocess.run(["age", "--decrypt", "-i", identity, str(path)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ConfigError([f"{_display(path)}: age could not decrypt it: "
                           f"{result.stderr.strip()}"])
    return result.stdout


def _parse(path: Path, text: str) -> dict:
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError([f"{_display(path)}: not valid YAML{where}"]) from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError([f"{_display(path)}: expected a mapping of secret names to values"])
    return values


def load(env: str, environ: Mapping[str, str] | None = None) -> Secrets:
    """Read and check an environment's secrets; raise ConfigError naming every problem."""
    environ = os.environ if environ is None else environ
    path, text = _read_file(env)
    values = _parse(path, text) if path else {}
    problems = []
    for name, value in values.items():
        if name not in SPEC_BY_NAME:
            hint = get_close_matches(str(name), list(SPEC_BY_NAME), n=1)
            problems.append(f"secrets.{name}: unknown secret"
                            + (f" (did you mean {hint[0]}?)" if hint else ""))
        elif not isinstance(value, str):
            problems.append(f"secrets.{name}: expected a string, got {type(value).__name__}")
    for spec in SPECS:
        if env_var(spec.name) in environ:
            values[spec.name] = environ[env_var(spec.name)]
        value = values.get(spec.name)
        if value is None and spec.required:
            problems.append(f"secrets.{spec.name}: missing (run 'orchestra-infra secrets init "
                            f"{env}' or set {env_var(spec.name)})")
        elif isinstance(value, str) and spec.generate and len(value) < MIN_LENGTH:
            problems.append(f"secrets.{spec.name}: too short ({MIN_LENGTH} characters at least)")
        elif isinstance(value, str) and value:
            problems += character_problems(spec, value)
        if isinstance(value, str) and spec.max_bytes and len(value.encode()) > spec.max_bytes:
            problems.append(f"secrets.{spec.name}: too long ({spec.max_bytes} bytes at most)")
    if problems:
        raise ConfigError(problems)
    return Secrets(env, {k: v for k, v in values.items() if isinstance(v, str) and v})


def sources(env: str, environ: Mapping[str, str] | None = None) -> list[dict]:
    """Where each secret of ENV comes from (an ``ORCHESTRA_SECRET_*`` variable, the file, or
    ``unset``), never its value; unlike ``load``, a missing or bad value is no error."""
    environ = os.environ if environ is None else environ
    path, text = _read_file(env)
    values = _parse(path, text) if path else {}
    rows = []
    for spec in SPECS:
        if env_var(spec.name) in environ:
            source = env_var(spec.name)
        elif values.get(spec.name) not in (None, ""):
            source = "file"
        else:
            source = "unset"
        rows.append({"name": spec.name, "source": source, "required": spec.required,
                     "description": spec.description})
    return rows


def character_problems(spec: SecretSpec, value: str) -> list[str]:
    """A line naming the secret (never its value) when ``value`` leaves its character set."""
    pattern, allowed = spec.charset
    if re.fullmatch(pattern, value):
        return []
    return [f"secrets.{spec.name}: has a character outside its set ({allowed}); "
            "no control character, quote, space, $ or backslash"]


def generate() -> str:
    """A random value safe in env files, URLs, SQL literals and Redis ACL rules."""
    return _random.token_urlsafe(32)


def init(env: str, rotate: tuple[str, ...] = ()) -> tuple[Path, list[str]]:
    """Create or complete ``secrets/ENV.yaml``; keep existing values except those rotated.

    Returns the path and the names of the values written anew.
    """
    generated = [spec.name for spec in SPECS if spec.generate]
    for name in rotate:
        if name not in generated:
            hint = get_close_matches(name, generated, n=1)
            raise ConfigError([f"secrets.{name}: not a generated secret"
                               + (f" (did you mean {hint[0]}?)" if hint else
                                  f" (generated: {', '.join(generated)})")])
    path = secrets_path(env)
    if path.with_suffix(".yaml.age").exists():
        raise ConfigError([f"{_display(path.with_suffix('.yaml.age'))}: encrypted; edit it "
                           "with age, `secrets init` only writes plain files"])
    text = _read_file(env)[1] if path.exists() else None
    current = _parse(path, text) if text is not None else {}
    new = {spec.name: generate() for spec in SPECS
           if spec.generate and (spec.name not in current or spec.name in rotate)}
    if text is None:
        _write_private(path, HEADER + yaml.safe_dump(new, default_flow_style=False,
                                                     sort_keys=True))
    elif new:
        _write_private(path, secrets_edit.set_values(text, new))
    return path, list(new)


HEADER = "# orchestra-infra secrets: never commit, never share. Mode 0600.\n"


def _write_private(path: Path, text: str) -> None:
    """Write with mode 0600 from the first byte, then rename into place."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
