"""PostgreSQL's continuous archive with pgBackRest: WAL shipped as it is written, base backups
on a schedule, checks, metrics; the point-in-time restore is restore.py's.

pgBackRest (not pg_receivewal + pg_basebackup): one tool from the distro that ships WAL
(asynchronously, compressed, encrypted, bounded when the repository is out of reach), takes
full and differential base backups, applies the retention, checks the archive end to end
and restores to a point in time, all against a path or S3; the PostgreSQL tools would need
scripts for each of those, and a streaming receiver to babysit.

The archive follows the daily backups' rule (issue 11): a host that was neither restored nor
declared empty keeps no WAL and creates no stanza (the stanza in a shared repository may be
the lost host's, which its replacement is about to be restored from); ``orchestra-pg-archive
start`` runs when it becomes ready (``orchestra-backup start-empty``, a restore's finish).
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import DeployError, StringCommand, deploy, operation
from pyinfra.facts.files import File

from operations import backup, postgres, render, system
from operations.facts import MountPoint
from orchestra_infra.schema import parse_size, pg_archive_s3

SCRIPT = backup.PG_ARCHIVE_SCRIPT
CONF = "/etc/pgbackrest/pgbackrest.conf"
SPOOL = "/var/spool/pgbackrest"
LOG_DIR = "/var/log/pgbackrest"
TIMERS = ("orchestra-pg-backup-full.timer", "orchestra-pg-backup-diff.timer",
          "orchestra-pg-archive-check.timer")
UNITS = ("orchestra-pg-backup@.service", *TIMERS, "orchestra-pg-archive-check.service",
         "orchestra-pg-archive-metrics.service", "orchestra-pg-archive-metrics.timer")


def packages(config, groups) -> list[str]:
    return ["pgbackrest"]


def stanza(config) -> str:
    """The stanza: the data host's backup host name, the same on a replacement instance."""
    return backup.host_name(config)


def archive_ready(config) -> str:
    return f"{backup.state_dir(config)}/archive-ready"


def archive_command(config) -> str:
    """PostgreSQL's archive_command (run by sh; postgresql.conf quoting is the template's):
    pgBackRest's archive-push once the host is ready, else the segment is not kept. The
    word ``pgbackrest`` must be in it: pgBackRest's backup and check look for it."""
    return (f"test ! -e {archive_ready(config)} || "
            f"pgbackrest --stanza={stanza(config)} archive-push %p")


def data_dir(version: int) -> str:
    return f"/var/lib/postgresql/{version}/main"


def writable_paths(config) -> list[str]:
    """What pgBackRest writes besides the state: its spool and log, a path repository."""
    paths = [SPOOL, LOG_DIR]
    if config.pg_archive_repository.startswith("/"):
        paths.append(config.pg_archive_repository)
    return paths


def _read_write_paths(config) -> list[str]:
    paths = [backup.state_dir(config), SPOOL, LOG_DIR, f"-{backup.TEXTFILE_DIR}"]
    if config.pg_archive_repository.startswith("/"):
        paths.append(config.pg_archive_repository)
    return paths


def check_repository_mount(config) -> None:
    mount = config.pg_archive_repository_mount
    if mount is None:
        return
    found = host.get_fact(MountPoint, path=mount)
    if found != "mounted":
        what = "does not exist" if found == "missing" else "is not a mount point"
        raise DeployError(f"{host.name}: pg_archive_repository_mount {mount} {what}: the "
                          f"archive {config.pg_archive_repository} would be written on this "
                          "instance's own disk; nothing was changed")


def _require_secrets(config) -> None:
    names = ["pg_archive_cipher_pass"]
    if pg_archive_s3(config.pg_archive_repository):
        names += ["restic_s3_access_key_id", "restic_s3_secret_access_key"]
    for name in names:
        try:
            render.secret_value(name)
        except Exception:  # noqa: BLE001 - render names the secret
            raise DeployError(f"{host.name}: pg_archive_repository "
                              f"{config.pg_archive_repository!r} needs the secret {name}; "
                              "nothing was changed") from None


def prepare(config):
    """What PostgreSQL's archive_command writes, in place before PostgreSQL (re)starts: its
    sandbox makes a writable path of only what exists when it starts."""
    _require_secrets(config)
    check_repository_mount(config)
    for path in writable_paths(config):
        what = "the archive " if path == config.pg_archive_repository else ""
        system.directory(name=f"Create {what}{path}", path=path, user="postgres",
                         group="postgres", mode="750")


@deploy("PostgreSQL archive")
def configure(config):
    version = postgres.major_version(config)
    system.directory(name="Create /etc/pgbackrest", path="/etc/pgbackrest", mode="755")
    render.template(
        name="Configure pgBackRest (repository, passphrase, retention)", dest=CONF,
        src="pgarchive/etc/pgbackrest/pgbackrest.conf.j2", user="postgres", group="postgres",
        mode="600", secret=True,
        context={"config": config, "s3": pg_archive_s3(config.pg_archive_repository),
                 "spool": SPOOL, "log_dir": LOG_DIR, "stanza": stanza(config),
                 "data_dir": data_dir(version),
                 "queue_max": parse_size(config.pg_archive_queue_max)},
    )
    render.template(
        name="Install orchestra-pg-archive", dest=SCRIPT, mode="755",
        src="pgarchive/usr/local/lib/orchestra/orchestra-pg-archive.j2",
        context={"config": config, "lib": backup.LIB, "stanza": stanza(config),
                 "archive_ready": archive_ready(config), "version": version,
                 "data_dir": data_dir(version),
                 "queue_max": parse_size(config.pg_archive_queue_max)},
    )
    unit_files = {
        unit: render.template(
            name=f"Install {unit}", dest=f"/etc/systemd/system/{unit}",
            src=f"pgarchive/etc/systemd/system/{unit}.j2",
            context={"config": config, "script": SCRIPT,
                     "read_write_paths": _read_write_paths(config)},
        )
        for unit in UNITS
    }
    changed = list(unit_files.values())
    system.service(name="Record the archive's state every minute (metrics timer)",
                   unit="orchestra-pg-archive-metrics.timer", running=True, enabled=True,
                   restart_when=[unit_files["orchestra-pg-archive-metrics.timer"]],
                   daemon_reload_when=changed)
    ready = backup.backups_ready(config) if config.pg_archive_enabled else None
    on = config.pg_archive_enabled and ready is not None
    for timer in TIMERS:
        if on:
            name = f"Run {timer}"
        elif config.pg_archive_enabled:
            name = f"Keep {timer} stopped until a restore or --start-empty"
        else:
            name = f"Stop {timer}"
        system.service(name=name, unit=timer, running=on, enabled=on,
                       restart_when=[unit_files[timer]], daemon_reload_when=changed)
    if on:
        start(name="Archive WAL to the stanza (created, or found to be this cluster's)",
              marker=archive_ready(config))
    elif not config.pg_archive_enabled:
        system.absent(name="Keep no WAL (pg_archive_enabled is off)", path=archive_ready(config))


@operation()
def start(marker: str):
    """
    ``orchestra-pg-archive start`` on a ready host whose WAL is not kept yet.

    + marker: written by the start (or by a restore from the archive)
    """
    if host.get_fact(File, path=marker):
        host.noop("WAL is archived")
        return
    yield StringCommand(SCRIPT, "start")
