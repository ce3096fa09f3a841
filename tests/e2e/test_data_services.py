"""PostgreSQL, Redis and Weaviate on the provisioned sandbox host: locked down, self-restarting."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from orchestra_infra import secrets
from orchestra_infra.sandbox.ssh import ssh_base
from standins.weaviate_release import build_weaviate_tarball

from .conftest import converge, on, pyinfra

pytestmark = pytest.mark.e2e

SERVICES = ("postgres", "redis", "weaviate")


def data_units(host) -> dict[str, str]:
    """The data services' units; PostgreSQL's names the distro's major (Ubuntu 22.04: 14,
    Debian 12: 15)."""
    major = on(host, "ls /etc/postgresql").split()[0]
    return {"postgres": f"postgresql@{major}-main", "redis": "redis-server",
            "weaviate": "weaviate"}


@pytest.fixture(scope="module")
def secret():
    return secrets.load("sandbox")


def _psql(target, password: str, sql: str, user="orchestra", db="orchestra") -> str:
    return on(target, f"PGPASSWORD={password} psql -h 127.0.0.1 -U {user} -d {db} -XAtc "
                      f"\"{sql}\" 2>&1; true", sudo=False).strip()


def _redis(target, user: str, password: str, command: str) -> str:
    return on(target, f"REDISCLI_AUTH={password} redis-cli --no-auth-warning --user {user} "
                      f"{command} 2>&1; true", sudo=False).strip()


def _weaviate(target, path: str, key: str | None = None, method="GET", body=None) -> str:
    auth = f"-H 'Authorization: Bearer {key}' " if key else ""
    data = f"-H 'Content-Type: application/json' -d '{json.dumps(body)}' " if body else ""
    return on(target, f"curl -s -o /dev/stderr -w '%{{http_code}}' -X {method} {auth}{data}"
                      f"http://127.0.0.1:8080{path} 2>/dev/null", sudo=False).strip()


def test_postgres_needs_the_password(target, provisioned, secret):
    assert _psql(target, secret["postgres_app_password"], "select current_user") == "orchestra"
    assert "password authentication failed" in _psql(target, "wrong-password", "select 1")
    # Not a superuser, and the only role (with the owner) allowed into its database.
    assert _psql(target, secret["postgres_app_password"],
                 "select rolsuper from pg_roles where rolname = current_user") == "f"
    rules = [line.split() for line in on(target, "cat /etc/postgresql/*/main/pg_hba.conf")
             .splitlines() if line.strip() and not line.startswith("#")]
    assert {rule[-1] for rule in rules} == {"peer", "scram-sha-256"}
    assert [rule for rule in rules if rule[-1] == "peer"] == [["local", "all", "postgres", "peer"]]


def test_extensions_are_created_by_the_superuser(target, provisioned, secret):
    with_trgm = json.dumps([{"name": "orchestra", "owner": "orchestra",
                             "extensions": ["pg_trgm"]}])
    run = converge(target, "--data", f"postgres_databases={with_trgm}")
    assert "PostgreSQL | Create extensions in orchestra" in run.changed
    assert _psql(target, secret["postgres_app_password"],
                 "select extname from pg_extension where extname = 'pg_trgm'") == "pg_trgm"
    assert converge(target, "--data", f"postgres_databases={with_trgm}").changed == []


def test_redis_app_user_cannot_run_dangerous_commands(target, provisioned, secret):
    app = secret["redis_app_password"]
    assert _redis(target, "orchestra", app, "SET probe 1") == "OK"
    assert _redis(target, "orchestra", app, "GET probe") == "1"
    assert "NOPERM" in _redis(target, "orchestra", app, "FLUSHALL")
    assert "NOPERM" in _redis(target, "orchestra", app, "CONFIG GET maxmemory")
    assert "NOPERM" in _redis(target, "orchestra", app, "KEYS *")
    assert "NOAUTH" in on(target, "redis-cli PING 2>&1; true", sudo=False)
    # Redis 7's redis-cli prints the server's WRONGPASS; 6.0's (Ubuntu 22.04) its own warning.
    wrong = _redis(target, "orchestra", "wrong", "PING")
    assert "WRONGPASS" in wrong or ("AUTH failed" in wrong and "NOAUTH" in wrong), wrong
    admin = secret["redis_admin_password"]
    assert _redis(target, "admin", admin, "CONFIG GET maxmemory-policy").endswith("allkeys-lru")
    assert _redis(target, "admin", admin, "CONFIG GET appendonly").endswith("yes")


def test_weaviate_needs_the_api_key(target, provisioned, secret):
    key = secret["weaviate_api_key"]
    assert _weaviate(target, "/v1/.well-known/ready") == "200"
    assert _weaviate(target, "/v1/meta") == "401"
    assert _weaviate(target, "/v1/meta", key="wrong-key") == "401"
    assert _weaviate(target, "/v1/meta", key=key) == "200"
    body = {"class": "Probe", "properties": {"text": "kept across restarts"}}
    assert _weaviate(target, "/v1/objects", key=key, method="POST", body=body) == "200"


def test_secret_files_are_private(target, provisioned, secret):
    listing = on(target, "stat -c '%a %U %G %n' /etc/weaviate/weaviate.env /etc/redis/users.acl")
    assert listing.splitlines() == [
        "640 root weaviate /etc/weaviate/weaviate.env",
        "640 root redis /etc/redis/users.acl",
    ]
    # Redis keeps only hashes of its passwords; no process shows a secret.
    assert secret["redis_app_password"] not in on(target, "cat /etc/redis/users.acl")
    processes = on(target, "ps -eo args")
    for value in secret.values():
        assert value not in processes


def test_data_ports_are_closed_to_other_hosts(target, peer, provisioned):
    probe = ("python3 -c \"import socket; socket.create_connection(('{addr}', {port}), 3)\" "
             "2>/dev/null && echo open || echo closed")
    for port in (5432, 6379, 8080, 50051):
        assert on(peer, probe.format(addr=target.address, port=port), sudo=False).strip() == \
            "closed", f"port {port} is reachable from another host"
    listening = on(target, "ss -Htln")
    # Not 50051: Weaviate's gRPC listens on every interface (net.Listen(":PORT"), no setting
    # moves it), as the stand-in now does too; the firewall above and the unit's
    # IPAddressDeny keep it private (tests/e2e/test_lynis.py).
    for port in (5432, 6379, 8080):
        for line in listening.splitlines():
            if line.split()[3].endswith(f":{port}"):
                assert line.split()[3].startswith(("127.0.0.1:", "[::1]:")), line


def _main_pid(target, unit: str) -> int:
    return int(on(target, f"systemctl show -p MainPID --value {unit}").strip())


def _wait_active(target, unit: str, old_pid: int, timeout: float = 30) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        pid = _main_pid(target, unit)
        if pid not in (0, old_pid) and on(target, f"systemctl is-active {unit} || true").strip() \
                == "active":
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"{unit} not back within {timeout} s")


@pytest.mark.parametrize("service", SERVICES)
def test_killed_service_is_back_within_10_s(target, provisioned, service):
    unit = data_units(target)[service]
    pid = _main_pid(target, unit)
    on(target, f"kill -9 {pid}")
    recovery = _wait_active(target, unit, pid)
    print(f"{service}: back {recovery:.1f} s after kill -9")
    assert recovery < 10


def test_ten_kills_in_a_row_do_not_hit_the_start_limit(target, provisioned):
    unit = data_units(target)["redis"]
    for _ in range(10):
        pid = _main_pid(target, unit)
        on(target, f"kill -9 {pid}")
        _wait_active(target, unit, pid)
    assert on(target, f"systemctl is-active {unit}").strip() == "active"


def _start_times(target) -> dict[str, str]:
    return {name: on(target, f"systemctl show -p ExecMainStartTimestampMonotonic --value {u}")
            for name, u in data_units(target).items()}


def test_a_tuning_change_restarts_only_its_service(target, provisioned):
    before = _start_times(target)
    changed = converge(target, "--data", "redis_maxmemory=256M")
    assert "Redis | Run Redis" in changed.changed
    after = _start_times(target)
    assert after["redis"] != before["redis"]
    assert after["postgres"] == before["postgres"] and after["weaviate"] == before["weaviate"]
    converge(target)  # back to the defaults


RELEASES_ON_HOST = "/var/tmp/orchestra-e2e-releases"
RELEASES_PORT = 18480


@pytest.fixture
def release_server(target, tmp_path):
    """Serve stand-in release tarballs on the sandbox host's own loopback (plain http is
    accepted there only: weaviate_url is https elsewhere). Yields the local directory to
    build into, the base URL, and ``publish(path)``, which copies a tarball to the host."""
    directory = tmp_path / "releases"
    directory.mkdir()
    on(target, f"install -d -m 755 {RELEASES_ON_HOST} && systemd-run --quiet "
               f"--unit=orchestra-e2e-releases python3 -m http.server --bind 127.0.0.1 "
               f"--directory {RELEASES_ON_HOST} {RELEASES_PORT}")

    def publish(path: Path) -> None:
        with path.open("rb") as data:
            copy = subprocess.run(
                [*ssh_base(target.address, batch=True),
                 f"sudo -n tee {RELEASES_ON_HOST}/{path.name} >/dev/null"],
                stdin=data, capture_output=True, timeout=120)
        assert copy.returncode == 0, copy.stderr

    try:
        yield directory, f"http://127.0.0.1:{RELEASES_PORT}", publish
    finally:
        on(target, f"systemctl stop orchestra-e2e-releases; rm -rf {RELEASES_ON_HOST}")


def test_sha256_mismatch_leaves_the_running_version_serving(target, provisioned,
                                                             release_server):
    directory, base_url, publish = release_server
    tarball, _ = build_weaviate_tarball("1.99.0", Path(directory))
    publish(tarball)
    running = on(target, "readlink /opt/weaviate/current").strip()
    pid = _main_pid(target, "weaviate")
    run = pyinfra(target, "-y", "--data", "weaviate_source=download",
                  "--data", "weaviate_version=1.99.0",
                  "--data", f"weaviate_url={base_url}/{tarball.name}",
                  "--data", f"weaviate_sha256={'ab' * 32}")
    assert run.returncode != 0
    assert "sha256 mismatch for Weaviate 1.99.0" in run.stdout + run.stderr
    assert on(target, "readlink /opt/weaviate/current").strip() == running
    assert _main_pid(target, "weaviate") == pid
    assert "1.99.0" not in on(target, "ls -a /opt/weaviate")


def test_upgrade_keeps_the_previous_version_for_rollback(target, provisioned, release_server,
                                                         secret):
    directory, base_url, publish = release_server
    tarball, digest = build_weaviate_tarball("1.99.1", Path(directory))
    publish(tarball)
    previous = on(target, "readlink /opt/weaviate/current").strip()
    upgrade = ["--data", "weaviate_source=download", "--data", "weaviate_version=1.99.1",
               "--data", f"weaviate_url={base_url}/{tarball.name}",
               "--data", f"weaviate_sha256={digest}"]
    converge(target, *upgrade)
    assert on(target, "readlink /opt/weaviate/current").strip() == "/opt/weaviate/v1.99.1"
    assert on(target, f"test -x {previous}/weaviate && echo kept").strip() == "kept"
    meta = on(target, f"curl -s -H 'Authorization: Bearer {secret['weaviate_api_key']}' "
                      "http://127.0.0.1:8080/v1/meta", sudo=False)
    assert json.loads(meta)["version"] == "1.99.1"
    assert converge(target, *upgrade).changed == []
    converge(target)  # back to the pinned version: a rollback is the same operation
    assert on(target, "readlink /opt/weaviate/current").strip() == previous
