"""PostgreSQL deploy logic: tuning, password rotation by SCRAM verifier, access, extensions.

Its apt repository is system.apt_repository's, tested in tests/unit/operations/.
"""

from types import SimpleNamespace

import pytest
from pyinfra.api import FileUploadCommand
from pyinfra.context import ctx_host, ctx_state
from pyinfra_testing.operations import parse_commands
from pyinfra_testing.util import FakeState, create_host

from operations import postgres, render
from orchestra_infra import scram
from orchestra_infra.secrets import Secrets

PASSWORD = "p" * 43


def _config(**overrides):
    values = {f"postgres_{k}": None for k in
              ("shared_buffers", "effective_cache_size", "work_mem", "maintenance_work_mem")}
    values["postgres_max_connections"] = 100
    values.update(overrides)
    return SimpleNamespace(**values)


def test_tuning_from_memory():
    assert postgres.tuning(_config(), 16384) == {
        "shared_buffers": "4096MB",
        "effective_cache_size": "12288MB",
        "maintenance_work_mem": "1024MB",
        "work_mem": "40MB",
    }


def test_tuning_overrides_and_small_hosts():
    settings = postgres.tuning(_config(postgres_shared_buffers="1G"), 1024)
    assert settings["shared_buffers"] == "1024MB"
    assert settings["maintenance_work_mem"] == "64MB"
    assert settings["work_mem"] == "4MB"  # never below PostgreSQL's default


def _run(op, facts, **kwargs):
    state = FakeState()
    host = create_host(state, facts=facts)
    render.use_secrets(Secrets("test", {"postgres_app_password": PASSWORD}))
    with ctx_state.use(state), ctx_host.use(host):
        render.use_state_root("/srv/orch-state")
        return list(op._inner(**kwargs)), host


def _sql(commands) -> str:
    uploads = [c for c in commands if isinstance(c, FileUploadCommand)]
    assert len(uploads) == 1
    return uploads[0].src.getvalue()


def test_new_role_gets_a_verifier_never_the_password():
    facts = {"facts.PostgresRoleVerifiers": {}, "server.Home": "/home/ubuntu",
             "facts.FileState": {}}
    commands, _ = _run(postgres.role, facts, role="orchestra",
                       password_secret="postgres_app_password")
    sql = _sql(commands)
    assert sql.startswith('CREATE ROLE "orchestra" WITH LOGIN NOSUPERUSER NOCREATEDB')
    verifier = sql.split("PASSWORD '")[1].split("'")[0]
    assert scram.matches(PASSWORD, verifier)
    assert PASSWORD not in sql
    # A root-only file below the host's state_root, removed once psql has read it.
    text = "\n".join(str(c) for c in parse_commands(commands))
    assert "install -d -m 700 /srv/orch-state/private" in text
    assert "rm -f /srv/orch-state/private/role-orchestra.sql" in text
    for command in parse_commands(commands):
        assert PASSWORD not in str(command)


def test_role_with_current_password_is_left_alone():
    facts = {"facts.PostgresRoleVerifiers": {
        "orchestra": {"superuser": False, "verifier": scram.verifier(PASSWORD)}}}
    commands, host = _run(postgres.role, facts, role="orchestra",
                          password_secret="postgres_app_password")
    assert commands == []
    assert host.noop_description == "role orchestra exists with the current password"


def test_changed_secret_rotates_the_password():
    facts = {"facts.PostgresRoleVerifiers": {
        "orchestra": {"superuser": False, "verifier": scram.verifier("the-old-password")}},
        "server.Home": "/home/ubuntu"}
    commands, _ = _run(postgres.role, facts, role="orchestra",
                       password_secret="postgres_app_password")
    assert _sql(commands).startswith('ALTER ROLE "orchestra" WITH LOGIN NOSUPERUSER')


def test_superuser_role_is_refused():
    facts = {"facts.PostgresRoleVerifiers": {"orchestra": {"superuser": True, "verifier": None}}}
    with pytest.raises(Exception, match="is a superuser"):
        _run(postgres.role, facts, role="orchestra", password_secret="postgres_app_password")


def test_database_access_revokes_public():
    facts = {"facts.DatabaseConnectGrants": {"database=orchestra": ["PUBLIC", "orchestra"]},
             "server.Home": "/home/ubuntu"}
    commands, _ = _run(postgres.database_access, facts, database="orchestra",
                       roles=["orchestra"])
    assert _sql(commands) == (
        'REVOKE CONNECT, TEMPORARY ON DATABASE "orchestra" FROM PUBLIC;\n'
        'GRANT CONNECT ON DATABASE "orchestra" TO "orchestra";\n'
    )
