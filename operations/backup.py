"""Backups with restic (PostgreSQL, Redis, Weaviate, the config); their restore is restore.py's.

Backups run unattended from systemd timers, long after any deploy, so the work is done by a
script on the host (``orchestra-backup``); this module installs it with its units, its
credentials (root-only files, never a command line) and the repository itself: created when
there is none, never when it merely cannot be opened (a wrong password must not start a
second, empty repository). ``orchestra-restore``, the way back, is installed here too:
it needs the same settings and credentials.

Backups that cannot delete the last good backup (issue 11):

- a repository path below ``restic_repository_mount`` is refused while planning when that
  file system is not mounted (and every backup checks again): no new repository on the
  instance's own disk;
- the timers run only once the host was restored or declared empty (``BackupReady``);
- every data host records its snapshots under a name of its own (``host_name``);
- ``restic_password`` is changed by adding the new key, checking it opens the repository
  and only then removing the old one (``orchestra-backup rekey``): the deploy writes the
  wanted password beside the one in use, never over it.
"""

from __future__ import annotations

import shlex

from pyinfra import host, state
from pyinfra.api import DeployError, OperationError, QuoteString, StringCommand, deploy, operation

from operations import render, snapshot, system
from operations.facts import BackupReady, MountPoint, ResticRepository, SameFiles
from orchestra_infra.schema import sftp_endpoint

SCRIPT_DIR = "/usr/local/lib/orchestra"
LIB = f"{SCRIPT_DIR}/orchestra-backup-lib.sh"
BACKUP_SCRIPT = f"{SCRIPT_DIR}/orchestra-backup"
RESTORE_SCRIPT = f"{SCRIPT_DIR}/orchestra-restore"
RESTIC = "/usr/local/sbin/orchestra-restic"
# Installed by operations/pgarchive.py; a host that becomes ready starts it too.
PG_ARCHIVE_SCRIPT = f"{SCRIPT_DIR}/orchestra-pg-archive"
CACHE_DIR = "/var/cache/orchestra-backup"
# Read by prometheus-node-exporter's textfile collector (Debian's default directory).
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
SSH_KEY = "/root/.ssh/orchestra-backup"
SSH_ALIAS = "orchestra-backup-repository"
UNITS = ("orchestra-backup.service", "orchestra-backup.timer",
         "orchestra-backup-check.service", "orchestra-backup-check.timer",
         "orchestra-backup-store@.service", "orchestra-backup-store-redis.timer",
         "orchestra-backup-store-weaviate.timer")
TIMERS = (("orchestra-backup.timer", "Back up on schedule"),
          ("orchestra-backup-check.timer", "Check the backups weekly"),
          ("orchestra-backup-store-redis.timer", "Copy Redis every backup_redis_interval"),
          ("orchestra-backup-store-weaviate.timer",
           "Copy Weaviate every backup_weaviate_interval"))


def packages(config, groups) -> list[str]:
    sftp = ["openssh-client"] if sftp_endpoint(config.restic_repository) else []
    return ["restic", "jq", *sftp]


def data_host_index() -> int:
    """This host's place among the inventory's data hosts (0: the first, or not one)."""
    try:
        names = [h.name for h in host.inventory.get_group("data", [])]
    except AttributeError:  # a host without an inventory (pyinfra_testing's FakeHost)
        return 0
    return names.index(host.name) if host.name in names else 0


def host_name(config, index: int | None = None) -> str:
    """The name this data host's snapshots are recorded under (restic --host): the same on a
    replacement instance (the same line of the hosts file), another for each data host, so
    hosts sharing a repository never prune or restore each other's snapshots."""
    base = config.backup_host_name or f"orchestra-{config.environment}"
    index = data_host_index() if index is None else index
    return base if index == 0 else f"{base}-{index + 1}"


def etc_dir(config) -> str:
    return f"{config.config_root}/backup"


def state_dir(config) -> str:
    return f"{config.state_root}/backup"


def _is_s3(config) -> bool:
    return config.restic_repository.startswith("s3:")


def _require_secrets(config) -> None:
    needed = []
    if _is_s3(config):
        needed += ["restic_s3_access_key_id", "restic_s3_secret_access_key"]
    if sftp_endpoint(config.restic_repository):
        needed.append("restic_sftp_private_key")
    missing = []
    for name in needed:
        try:
            render.secret_value(name)
        except OperationError:
            missing.append(name)
    if missing:
        raise DeployError(f"{host.name}: restic_repository {config.restic_repository!r} needs "
                          f"the secret(s) {', '.join(missing)}; nothing was changed")


def _read_write_paths(config) -> list[str]:
    # "-": the unit still starts when the path does not exist (yet).
    paths = [config.backup_work_dir, state_dir(config), f"-{config.weaviate_backup_dir}",
             f"-{TEXTFILE_DIR}"]
    if config.restic_repository.startswith("/"):
        paths.append(f"-{config.restic_repository}")
    return paths


def check_repository_mount(config) -> None:
    """Stop while planning (nothing changed yet) when restic_repository_mount is not mounted."""
    mount = config.restic_repository_mount
    if mount is None:
        return
    found = host.get_fact(MountPoint, path=mount)
    if found != "mounted":
        what = "does not exist" if found == "missing" else "is not a mount point"
        raise DeployError(f"{host.name}: restic_repository_mount {mount} {what}: the "
                          f"repository {config.restic_repository} would be created on this "
                          "instance's own disk. Mount the persistent file system there (or set "
                          "restic_repository_mount = None for a repository on this disk); "
                          "nothing was changed")


@deploy("Backup")
def configure(config):
    _require_secrets(config)
    check_repository_mount(config)
    etc = etc_dir(config)
    sftp = sftp_endpoint(config.restic_repository)
    for path, mode in ((etc, "700"), (state_dir(config), "755"),
                       (config.backup_work_dir, "700"), (SCRIPT_DIR, "755")):
        system.directory(name=f"Create {path}", path=path, mode=mode)
    # node-exporter's package or the monitoring deploy may own it: only create it if missing.
    system.directory_if_missing(name=f"Create {TEXTFILE_DIR} if missing", path=TEXTFILE_DIR)

    password_file = f"{etc}/restic-password"
    # The wanted password goes beside the one in use; `orchestra-backup rekey` makes it the
    # repository's key before it replaces the one in use.
    wanted = render.template(name="Write the wanted restic repository password",
                             dest=f"{password_file}.wanted",
                             src="backup/etc/orchestra/backup/restic-password.j2", mode="600",
                             secret=True)
    credentials = [
        wanted,
        render.template(name="Write the restic repository settings", dest=f"{etc}/restic.env",
                        src="backup/etc/orchestra/backup/restic.env.j2", mode="600",
                        context={"config": config, "password_file": password_file,
                                 "cache_dir": CACHE_DIR, "s3": _is_s3(config)},
                        secret=True),
    ]
    if sftp:
        system.directory(name="Create /root/.ssh", path="/root/.ssh", mode="700")
        known_hosts = f"{etc}/known_hosts"
        credentials += [
            render.template(name="Install the SSH key of the SFTP repository", dest=SSH_KEY,
                            src="backup/root/.ssh/orchestra-backup.j2", mode="600",
                            secret=True),
            render.template(name="Pin the SFTP repository's host key", dest=known_hosts,
                            src="backup/etc/orchestra/backup/known_hosts.j2", mode="600",
                            context={"config": config}),
            render.template(name="Configure SSH to the SFTP repository", dest=f"{etc}/ssh_config",
                            src="backup/etc/orchestra/backup/ssh_config.j2", mode="600",
                            context={"alias": SSH_ALIAS, "sftp": sftp, "key_file": SSH_KEY,
                                     "known_hosts": known_hosts}),
        ]
    else:
        # A repository that moved away from SFTP leaves no private key behind.
        for path in (SSH_KEY, f"{etc}/known_hosts", f"{etc}/ssh_config"):
            system.absent(name=f"Remove {path} (no SFTP repository)", path=path)
    for name, what in (("redis.env", "Redis admin password (for BGSAVE)"),
                       ("weaviate.curl", "Weaviate API key")):
        render.template(name=f"Give the backup the {what}", dest=f"{etc}/{name}",
                        src=f"backup/etc/orchestra/backup/{name}.j2", mode="600", secret=True)
    wrapper = render.template(
        name="Install orchestra-restic (restic with the repository's settings)", dest=RESTIC,
        src="backup/usr/local/sbin/orchestra-restic.j2", mode="750",
        context={"env_file": f"{etc}/restic.env", "sftp": bool(sftp), "alias": SSH_ALIAS,
                 "ssh_config": f"{etc}/ssh_config", "host_name": host_name(config)},
    )
    _scripts(config)
    repository_key(
        name="Make restic_password the repository's key (add it, check it, remove the old)",
        wanted=f"{password_file}.wanted", current=password_file, when=[wanted],
    )
    repository(
        name="Create the restic repository if there is none",
        marker=f"{state_dir(config)}/repository",
        text=config.restic_repository,
        version=config.restic_repository_version,
        when=[*credentials, wrapper],
    )
    _timers(config)


def _scripts(config):
    render.template(
        name="Install the backup scripts' settings", dest=LIB,
        src="backup/usr/local/lib/orchestra/orchestra-backup-lib.sh.j2",
        context={"config": config, "restic": RESTIC, "backup_etc": etc_dir(config),
                 "state_dir": state_dir(config), "textfile_dir": TEXTFILE_DIR,
                 "host_name": host_name(config),
                 "pg_archive_script": PG_ARCHIVE_SCRIPT,
                 "databases": [db.name for db in config.postgres_databases]},
    )
    for script in (BACKUP_SCRIPT, RESTORE_SCRIPT):
        name = script.rsplit("/", 1)[1]
        render.template(name=f"Install {name}", dest=script, mode="750",
                        src=f"backup/usr/local/lib/orchestra/{name}.j2",
                        context={"config": config, "lib": LIB})


def backups_ready(config):
    """Why backups may run on this host, or None (neither restored nor declared empty)."""
    if config.backup_start_empty:
        return "backup_start_empty"
    return host.get_fact(BackupReady, ready=f"{state_dir(config)}/ready",
                         last_success=f"{state_dir(config)}/last-success")


def _timers(config):
    unit_files = {
        unit: render.template(
            name=f"Install {unit}", dest=f"/etc/systemd/system/{unit}",
            src=f"backup/etc/systemd/system/{unit}.j2",
            context={"config": config, "script": BACKUP_SCRIPT, "cache_dir": CACHE_DIR,
                     "read_write_paths": _read_write_paths(config)},
        )
        for unit in UNITS
    }
    ready = backups_ready(config) if config.backup_enabled else None
    on = config.backup_enabled and ready is not None
    for timer, what in TIMERS:
        if on:
            name = f"{what} ({timer})"
        elif config.backup_enabled:
            # A restore (orchestra-restore finish) or `backup ENV --start-empty` starts it.
            name = f"Keep {timer} stopped until a restore or --start-empty"
        else:
            name = f"Stop {timer}"
        system.service(
            name=name,
            unit=timer,
            running=on,
            enabled=on,
            restart_when=[unit_files[timer]],
            daemon_reload_when=list(unit_files.values()),
        )


def init_script(restic: str, version: int) -> str:
    """``restic init`` for a repository format; restic < 0.14 only knows format 1."""
    return (
        "v=$(restic version | cut -d' ' -f2); "
        "if [ \"$(printf '%s\\n' 0.14.0 \"$v\" | sort -V | head -n 1)\" = 0.14.0 ]; then "
        f"{restic} init --repository-version {version}; "
        f"elif [ {version} = 1 ]; then {restic} init; "
        f"else echo \"restic $v cannot create a version {version} repository (0.14 can): set "
        "restic_repository_version = 1\" >&2; exit 1; fi"
    )


@operation()
def repository_key(wanted: str, current: str, when=()):
    """
    Make the wanted restic password the one in use, through ``orchestra-backup rekey``: the
    first one installed as it is; a new one added as a key of the repository, checked, then
    the old key removed, so an interrupted change leaves a key that opens the repository.

    + wanted: the password file the deploy writes
    + current: the password file restic reads
    + when: the operation writing ``wanted``
    """
    if not system.changed(when) and host.get_fact(SameFiles, first=wanted, second=current):
        host.noop("the repository's password is restic_password")
        return
    yield StringCommand(BACKUP_SCRIPT, "rekey")


@snapshot.registers("files", "marker")
@operation()
def repository(marker: str, text: str, version: int = 1, when=()):
    """
    Create the restic repository when there is none; stop when it exists but cannot be
    opened. ``marker`` records a success, so converged runs do not ask the repository again
    until its settings (``when``) change.

    + marker: file written once the repository opened
    + text: what the marker says (the repository, for the operator)
    + version: repository format of a new repository
    + when: operations writing the repository's settings and credentials
    """
    if snapshot.lookup("files", marker) and not system.changed(when):
        host.noop("the restic repository opened with these settings before")
        return
    status = host.get_fact(ResticRepository, restic=RESTIC)
    if status == "missing" or (status == "unconfigured" and not state.is_executing):
        yield StringCommand("sh", "-c", QuoteString(init_script(RESTIC, version)))
    elif status != "ok":
        hint = " (is restic_password this repository's password?)" if "password" in status else ""
        raise OperationError(f"restic cannot open restic_repository: "
                             f"{status.removeprefix('error: ')}{hint}; nothing was created")
    yield StringCommand("sh", "-c", QuoteString(
        f"printf '%s\\n' {shlex.quote(text)} > {shlex.quote(marker + '.new')} && "
        f"mv -f {shlex.quote(marker + '.new')} {shlex.quote(marker)}"))
