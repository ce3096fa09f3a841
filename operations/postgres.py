"""PostgreSQL: package, locked-down access, tuning from the host's memory, roles and databases."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import DeployError, OperationError, QuoteString, StringCommand, deploy, operation
from pyinfra.facts.hardware import Memory
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import postgres, server

from operations import facts, pgarchive, render, system
from operations.facts import (
    PSQL,
    AptCandidate,
    DatabaseConnectGrants,
    PostgresExtensions,
    PostgresRoleVerifiers,
)
from orchestra_infra import scram
from orchestra_infra.schema import parse_size

# The version each supported distro ships.
DISTRO_VERSIONS = {("Ubuntu", 22): 14, ("Debian", 12): 15}
KEYRING = "/etc/apt/keyrings/postgresql.asc"
SOURCES = "/etc/apt/sources.list.d/pgdg.list"


def _archive_timeout_wakeup(config) -> list[str]:
    # PostgreSQL's checkpointer computes its first sleep while the server is still starting
    # (recovery, even after a clean shutdown), when archive_timeout does not count: it then
    # sleeps checkpoint_timeout (5 min) and no WAL is shipped for that long after every
    # start, reboot or promotion (measured on Debian 12 after a reboot: nothing archived
    # 60 s after a write, with archive_timeout 30 s). A CHECKPOINT right after the start
    # wakes it with recovery done; on an idle server it costs nothing. Never fails the start.
    # (pg_ctlcluster runs as root: psql as postgres, by peer authentication on the socket.)
    if not config.pg_archive_enabled:
        return []
    return ["# Wake the checkpointer once started, so archive_timeout counts at once.",
            "ExecStartPost=-/usr/sbin/runuser -u postgres -- /usr/bin/psql -X -q "
            f"-p {config.postgres_port} -d postgres -c CHECKPOINT"]


def major_version(config, on=None) -> int:
    """The PostgreSQL major version of this host (or of host ``on``)."""
    if config.postgres_version:
        return config.postgres_version
    on = host if on is None else on
    distro = facts.planned(LinuxDistribution, on=on)
    version = DISTRO_VERSIONS.get((distro["name"], distro["major"]))
    if version is None:
        raise DeployError(f"{on.name}: no default PostgreSQL for {distro['name']} "
                          f"{distro['major']}; set postgres_version")
    return version


def tuning(config, memory_mb: int) -> dict[str, str]:
    """Memory settings: each from the data when set, else computed from the host's memory."""
    computed = {
        "shared_buffers": memory_mb // 4,
        "effective_cache_size": memory_mb * 3 // 4,
        "maintenance_work_mem": min(memory_mb // 16, 2048),
        # What is left after shared buffers, spread over the connections, a few sorts each.
        "work_mem": max(4, memory_mb * 3 // 4 // (config.postgres_max_connections * 3)),
    }
    settings = {}
    for key, megabytes in computed.items():
        override = getattr(config, f"postgres_{key}")
        settings[key] = _postgres_size(parse_size(override)) if override else f"{megabytes}MB"
    return settings


def _postgres_size(size: int) -> str:
    """Bytes -> PostgreSQL's units, exactly: 512K stays 512kB instead of rounding to 0MB."""
    kilobytes = size // 1024
    return f"{kilobytes // 1024}MB" if kilobytes % 1024 == 0 else f"{kilobytes}kB"


def package_names(version: int, pgvector: bool) -> list[str]:
    names = [f"postgresql-{version}", f"postgresql-client-{version}"]
    return names + [f"postgresql-{version}-pgvector"] if pgvector else names


def packages(config, groups) -> list[str]:
    """The server, its client and pgvector when asked for and a source offers it."""
    version = major_version(config)
    pgvector = config.postgres_pgvector and bool(
        facts.planned(AptCandidate, package=f"postgresql-{version}-pgvector")
    )
    for i, db in enumerate(config.postgres_databases):
        if "vector" in db.extensions and not pgvector:
            raise DeployError(
                f"postgres_databases[{i}].extensions: 'vector' needs pgvector "
                f"(postgresql-{version}-pgvector), which no apt source of {host.name} offers; "
                "add postgres_apt_repository or drop the extension"
            )
    return package_names(version, pgvector)


def add_repository(config):
    """The PostgreSQL apt repository, before any install, when a version is pinned."""
    if not config.postgres_apt_repository:
        return None
    if not config.postgres_apt_key_url:
        raise DeployError(f"{host.name}: postgres_apt_key_url is required with "
                          "postgres_apt_repository; nothing was changed")
    codename = facts.planned(LinuxDistribution)["release_meta"].get("VERSION_CODENAME", "")
    return system.apt_repository(
        name="Add the PostgreSQL apt repository",
        url=config.postgres_apt_repository,
        suite=f"{codename}-pgdg",
        key_url=config.postgres_apt_key_url,
        keyring=KEYRING,
        sources=SOURCES,
    )


def sandbox(config) -> list[str]:
    """The unit's sandboxing, with what its archive_command (pgBackRest) writes: its spool,
    its log and a path repository."""
    extra = pgarchive.writable_paths(config)
    return [f"{line} {' '.join(f'-{path}' for path in extra)}"
            if line.startswith("ReadWritePaths=") else line
            for line in system.SANDBOX["postgresql@"]]


@deploy("PostgreSQL")
def configure(config):
    version = major_version(config)
    etc = f"/etc/postgresql/{version}/main"
    unit = f"postgresql@{version}-main"

    pgarchive.prepare(config)
    restart_policy = system.restart_always_dropin(
        "postgresql@", name="Restart PostgreSQL when it dies",
        why="a killed or crashed cluster comes back. RestartSec keeps\n"
            "restarts under systemd's start limit (5 in 10 s), so a crash loop never ends in\n"
            "start-limit-hit with the database down for good.",
        sandbox=sandbox(config),
        # A repository on a mounted file system (the Lambda persistent filesystem): mounted
        # before PostgreSQL starts, so its archive_command finds it.
        unit_settings=[f"RequiresMountsFor={config.pg_archive_repository}"]
        if config.pg_archive_repository.startswith("/") else [],
        service_settings=_archive_timeout_wakeup(config),
    )
    settings = render.template(
        name="Configure PostgreSQL (listen, auth, memory)",
        src="postgres/etc/postgresql/main/conf.d/orchestra.conf.j2",
        dest=f"{etc}/conf.d/orchestra.conf",
        context={"config": config, "tuning": tuning(config, host.get_fact(Memory)),
                 "archive_command": pgarchive.archive_command(config)},
        user="postgres", group="postgres",
    )
    hba = render.template(
        name="Allow only scram-sha-256 logins (pg_hba.conf)",
        src="postgres/etc/postgresql/main/pg_hba.conf.j2",
        dest=f"{etc}/pg_hba.conf",
        context={"config": config},
        user="postgres", group="postgres", mode="640",
    )
    restarted = system.service(
        name=f"Run {unit}",
        unit=unit,
        running=True,
        enabled=True,
        restart_when=[settings],
        reload_when=[hba],
        daemon_reload_when=[restart_policy],
    )
    server.shell(
        name="Wait for PostgreSQL",
        commands=[f"for i in $(seq 60); do pg_isready -q -h 127.0.0.1 -p {config.postgres_port}"
                  " && exit 0; sleep 1; done; exit 1"],
        _if=restarted.did_change,
    )

    for role_data in config.postgres_roles:
        role(name=f"Create PostgreSQL role {role_data.name}",
             role=role_data.name, password_secret=role_data.password_secret)
    for db in config.postgres_databases:
        postgres.database(name=f"Create database {db.name}", database=db.name, owner=db.owner,
                          _sudo_user="postgres", _use_sudo_login=True)
        allowed = [r.name for r in config.postgres_roles if db.name in r.connect]
        database_access(name=f"Allow only {', '.join(allowed) or 'its owner'} into {db.name}",
                        database=db.name, roles=[db.owner, *allowed])
        if db.extensions:
            extensions(name=f"Create extensions in {db.name}", database=db.name,
                       names=db.extensions)


def _psql_file(sql: str, label: str):
    """Run SQL as the postgres superuser from a root-only file: no value reaches a command
    line, a process list or pyinfra's output."""
    private_dir = render.state_dir("private")
    path = f"{private_dir}/{label}.sql"
    yield StringCommand("install", "-d", "-m", "700", private_dir)
    yield from render.place(sql, path, "root", "root", "600")
    script = f"{PSQL} -q -v ON_ERROR_STOP=1 -d postgres < {path}; rc=$?; rm -f {path}; exit $rc"
    yield StringCommand("sh", "-c", QuoteString(script))


@operation()
def role(role: str, password_secret: str):
    """
    Create a login role, or rotate its password when the secret changed.

    PostgreSQL only ever receives a SCRAM verifier computed here; an existing role's
    verifier is checked against the secret, so a changed secret rotates the password on
    the next run and an unchanged one changes nothing. The role is never a superuser.

    + role: role name
    + password_secret: name of the secret holding its password
    """
    password = render.secret_value(password_secret)
    existing = host.get_fact(PostgresRoleVerifiers).get(role)
    if existing and not existing["superuser"] and scram.matches(password, existing["verifier"]):
        host.noop(f"role {role} exists with the current password")
        return
    if existing and existing["superuser"]:
        raise OperationError(f"role {role} is a superuser; orchestra-infra will not manage it")
    verb = "ALTER" if existing else "CREATE"
    sql = (f'{verb} ROLE "{role}" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE '
           f"PASSWORD '{scram.verifier(password)}';\n")
    yield from _psql_file(sql, f"role-{role}")


@operation()
def database_access(database: str, roles: list[str]):
    """
    Revoke CONNECT on a database from PUBLIC and grant it to the given roles only.

    + database: database name
    + roles: roles allowed to connect
    """
    grants = host.get_fact(DatabaseConnectGrants, database=database)
    wanted = sorted(set(roles))
    if grants == wanted:
        host.noop(f"only {', '.join(wanted)} may connect to {database}")
        return
    sql = f'REVOKE CONNECT, TEMPORARY ON DATABASE "{database}" FROM PUBLIC;\n'
    for name in grants or []:
        if name not in wanted and name != "PUBLIC":
            sql += f'REVOKE CONNECT ON DATABASE "{database}" FROM "{name}";\n'
    for name in wanted:
        sql += f'GRANT CONNECT ON DATABASE "{database}" TO "{name}";\n'
    yield from _psql_file(sql, f"access-{database}")


@operation()
def extensions(database: str, names: list[str]):
    """
    Create extensions in a database (as the superuser: the app's role may not).

    + database: database name
    + names: extensions that must exist, e.g. ``["vector"]``
    """
    existing = host.get_fact(PostgresExtensions, database=database)
    missing = [name for name in names if name not in existing]
    if not missing:
        host.noop(f"extensions {', '.join(names)} exist in {database}")
        return
    script = f"{PSQL} -q -v ON_ERROR_STOP=1 -d {database}"
    for name in missing:
        script += f' -c "CREATE EXTENSION IF NOT EXISTS \\"{name}\\""'
    yield StringCommand("sh", "-c", QuoteString(script))
