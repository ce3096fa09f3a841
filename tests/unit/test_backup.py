"""Backups: the data block, the rendered scripts and units.

The operations themselves are tested as data in tests/unit/operations/backup.*, the restic
facts in tests/unit/facts/facts.Restic*.
"""

import subprocess
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from pyinfra.api import DeployError, Inventory, State
from pyinfra.context import ctx_host, ctx_state
from pyinfra_testing.util import FakeState, create_host

from operations import backup, render
from orchestra_infra import cli, pyinfra_run, schema
from orchestra_infra import config as config_module
from orchestra_infra.errors import ConfigError
from orchestra_infra.secrets import MASK, NAMES, Secrets

SECRETS = {
    "restic_password": "restic-pw-canary-0123456789",
    "redis_admin_password": "redis-admin-canary-0123456789",
    "weaviate_api_key": 'weaviate-canary-"0123456789',
    "restic_s3_access_key_id": "AKIACANARY",
    "restic_s3_secret_access_key": "s3-secret-canary'0123",
    "restic_sftp_private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nkeycanary\n"
                               "-----END OPENSSH PRIVATE KEY-----\n",
}
KNOWN_HOST = "backup.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests"


def _config(**overrides):
    # Real environments pin Weaviate's checksum.
    pinned = {"weaviate_sha256": "0" * 64, **overrides}
    return schema.validate(config_module.environment_data("prod", pinned), NAMES)


def _problems(**overrides):
    with pytest.raises(ConfigError) as e:
        _config(**overrides)
    return e.value.problems

# `backup` takes the run lock over SSH: never on a real (sandbox) host from here.
pytestmark = pytest.mark.usefixtures("no_remote_lock")


@pytest.fixture
def secrets():
    render.use_secrets(Secrets("test", SECRETS))
    yield
    render.use_secrets(None)


def _context(config):
    etc = backup.etc_dir(config)
    return {
        "config": config, "restic": backup.RESTIC, "backup_etc": etc,
        "state_dir": backup.state_dir(config), "textfile_dir": backup.TEXTFILE_DIR,
        "host_name": backup.host_name(config, 0), "lib": backup.LIB,
        "pg_archive_script": backup.PG_ARCHIVE_SCRIPT,
        "databases": [db.name for db in config.postgres_databases],
        "script": backup.BACKUP_SCRIPT, "cache_dir": backup.CACHE_DIR,
        "read_write_paths": backup._read_write_paths(config),
        "password_file": f"{etc}/restic-password", "s3": backup._is_s3(config),
        "env_file": f"{etc}/restic.env", "sftp": schema.sftp_endpoint(config.restic_repository),
        "alias": backup.SSH_ALIAS, "ssh_config": f"{etc}/ssh_config",
        "key_file": backup.SSH_KEY, "known_hosts": f"{etc}/known_hosts",
    }


def _render(name, config, masked=False):
    return render.render(f"backup/{name}.j2", _context(config), masked=masked)


# --- data --------------------------------------------------------------------------------------


def test_defaults_are_valid():
    config = _config()
    assert config.restic_repository == "/var/backups/orchestra/restic"
    assert backup.host_name(config, 0) == "orchestra-prod"


@pytest.mark.parametrize("repository", [
    "/home/ubuntu/orchestra-fs/restic",
    "s3:https://s3.example.com/bucket/orchestra",
    "s3:s3.amazonaws.com/bucket",
])
def test_supported_repositories(repository):
    assert _config(restic_repository=repository).restic_repository == repository


@pytest.mark.parametrize("repository", ["ftp://host/x", "relative/path", "b2:bucket:path",
                                        "sftp:host", "s3:bucket"])
def test_unsupported_repository_names_the_key(repository):
    (problem,) = _problems(restic_repository=repository)
    assert problem.startswith(f"restic_repository: {repository!r} is not a restic repository")


@pytest.mark.parametrize("repository, endpoint", [
    ("sftp:backup@host.example:/srv/restic", {"user": "backup", "host": "host.example",
                                              "port": 22}),
    ("sftp:host.example:restic", {"user": None, "host": "host.example", "port": 22}),
    ("sftp://backup@host.example:2222//srv/restic", {"user": "backup", "host": "host.example",
                                                     "port": 2222}),
    ("sftp://backup@[2001:db8::1]:2222//srv/restic", {"user": "backup", "host": "2001:db8::1",
                                                      "port": 2222}),
    ("/srv/restic", None),
    ("s3:host/bucket", None),
])
def test_sftp_endpoint(repository, endpoint):
    assert schema.sftp_endpoint(repository) == endpoint


def test_sftp_needs_a_pinned_host_key():
    assert _problems(restic_repository="sftp:b@h:/r") == [
        "backup_sftp_known_hosts: required for an sftp: restic_repository (the server's host "
        "key lines, e.g. from `ssh-keyscan -t ed25519 HOST`)"]
    assert _config(restic_repository="sftp:b@h:/r", backup_sftp_known_hosts=[KNOWN_HOST])


def test_retention_must_keep_something():
    (problem,) = _problems(backup_keep_daily=0, backup_keep_weekly=0, backup_keep_monthly=0)
    assert problem.startswith("backup_keep_daily: ")


def test_the_last_three_snapshots_are_always_kept():
    assert _config().backup_keep_last == 3
    assert _problems(backup_keep_last=2) == ["backup_keep_last: 2 must be at least 3"]


def test_repository_mount_must_hold_the_repository():
    config = _config(restic_repository="/lambda/nfs/orchestra/restic",
                     restic_repository_mount="/lambda/nfs/orchestra")
    assert config.restic_repository_mount == "/lambda/nfs/orchestra"
    assert _problems(restic_repository_mount="/lambda/nfs/orchestra") == [
        "restic_repository_mount: the repository /var/backups/orchestra/restic is not below "
        "/lambda/nfs/orchestra (an absolute restic_repository inside the mount point)"]
    assert any(p.startswith("restic_repository_mount:")
               for p in _problems(restic_repository_mount="relative/path"))


def _planned(facts, config, name="h1"):
    state = FakeState()
    fake = create_host(state, name=name, facts=facts)
    return state, fake


@pytest.mark.parametrize("found", ["not-mounted", "missing"])
def test_an_unmounted_repository_file_system_stops_the_plan(found):
    config = _config(restic_repository="/lambda/nfs/orchestra/restic",
                     restic_repository_mount="/lambda/nfs/orchestra")
    state, fake = _planned({"facts.MountPoint": {"path=/lambda/nfs/orchestra": found}}, config)
    with ctx_state.use(state), ctx_host.use(fake):
        with pytest.raises(DeployError, match=r"restic_repository_mount /lambda/nfs/orchestra "
                           r"(is not a mount point|does not exist): the repository "
                           r"/lambda/nfs/orchestra/restic would be created on this instance's "
                           r"own disk.*nothing was changed"):
            backup.check_repository_mount(config)
    state, fake = _planned({"facts.MountPoint": {"path=/lambda/nfs/orchestra": "mounted"}},
                           config)
    with ctx_state.use(state), ctx_host.use(fake):
        backup.check_repository_mount(config)
    backup.check_repository_mount(_config())  # no mount set: no question asked


def test_timers_wait_for_a_restore_or_start_empty():
    ready = {"last_success=/var/lib/orchestra-infra/backup/last-success, "
             "ready=/var/lib/orchestra-infra/backup/ready": None}
    state, fake = _planned({"facts.BackupReady": ready}, _config())
    with ctx_state.use(state), ctx_host.use(fake):
        assert backup.backups_ready(_config()) is None
        assert backup.backups_ready(_config(backup_start_empty=True)) == "backup_start_empty"


def test_each_data_host_has_its_own_snapshot_name():
    inventory = Inventory((["10.0.0.1", "10.0.0.2", "10.0.0.3"], {}),
                          data=(["10.0.0.2", "10.0.0.3"], {}))
    state = State(inventory=inventory)
    config = _config()
    names = []
    for name in ("10.0.0.2", "10.0.0.3", "10.0.0.1"):
        with ctx_state.use(state), ctx_host.use(inventory.get_host(name)):
            names.append(backup.host_name(config))
    assert names == ["orchestra-prod", "orchestra-prod-2", "orchestra-prod"]
    assert backup.host_name(_config(backup_host_name="shop"), 2) == "shop-3"


def test_repository_inside_the_work_dir_is_refused():
    (problem,) = _problems(restic_repository="/var/backups/orchestra/work/restic")
    assert problem.startswith("restic_repository: /var/backups/orchestra/work/restic is inside")


@pytest.mark.parametrize("subset", ["5%", "2.5%", "100%", "1/20", "20/20"])
def test_read_subset_valid(subset):
    assert _config(backup_check_read_subset=subset).backup_check_read_subset == subset


@pytest.mark.parametrize("subset", ["0%", "150%", "0/5", "6/5", "5", "1G"])
def test_read_subset_invalid(subset):
    (problem,) = _problems(backup_check_read_subset=subset)
    assert problem.startswith(f"backup_check_read_subset: {subset!r} is not a read subset")


def test_calendar_is_checked():
    (problem,) = _problems(backup_on_calendar="03:15; rm -rf /")
    assert problem.startswith("backup_on_calendar: ")


# --- rendered files ----------------------------------------------------------------------------


def test_local_repository_settings(secrets):
    text = _render("etc/orchestra/backup/restic.env", _config())
    assert "RESTIC_REPOSITORY=/var/backups/orchestra/restic\n" in text
    assert "RESTIC_PASSWORD_FILE=/etc/orchestra/backup/restic-password\n" in text
    assert "AWS_" not in text


def test_s3_credentials_are_literal_and_masked(secrets, tmp_path):
    config = _config(restic_repository="s3:https://s3.example.com/bucket")
    text = _render("etc/orchestra/backup/restic.env", config)
    assert "AWS_ACCESS_KEY_ID=AKIACANARY\n" in text
    assert "AWS_SECRET_ACCESS_KEY=s3-secret-canary'0123\n" in text
    masked = _render("etc/orchestra/backup/restic.env", config, masked=True)
    assert "canary" not in masked
    assert f"{MASK}(restic_s3_secret_access_key)" in masked
    # What orchestra-restic's reader (never a shell) makes of it is the secret itself.
    env_file = tmp_path / "restic.env"
    env_file.write_text(text)
    reader = render.render("shell/read-env.sh.j2", {})
    program = reader + 'read_env "$1"; printf %s "$AWS_SECRET_ACCESS_KEY"'
    shell = subprocess.run(["sh", "-c", program, "sh", str(env_file)],
                           capture_output=True, text=True, check=True)
    assert shell.stdout == SECRETS["restic_s3_secret_access_key"]


def test_credentials_files(secrets):
    config = _config()
    assert _render("etc/orchestra/backup/restic-password", config) == \
        SECRETS["restic_password"] + "\n"
    assert "REDISCLI_AUTH=redis-admin-canary-0123456789\n" in \
        _render("etc/orchestra/backup/redis.env", config)
    assert 'header = "Authorization: Bearer weaviate-canary-\\"0123456789"\n' in \
        _render("etc/orchestra/backup/weaviate.curl", config)


def test_sftp_wrapper_and_ssh_config(secrets):
    config = _config(restic_repository="sftp://backup@repo.example:2222//srv/restic",
                     backup_sftp_known_hosts=[KNOWN_HOST])
    wrapper = _render("usr/local/sbin/orchestra-restic", config)
    assert ('exec restic -o sftp.command="ssh -F /etc/orchestra/backup/ssh_config '
            'orchestra-backup-repository -s sftp" "$@"\n') in wrapper
    ssh_config = _render("etc/orchestra/backup/ssh_config", config)
    for line in ("Host orchestra-backup-repository", "    HostName repo.example",
                 "    Port 2222", "    User backup", "    IdentityFile /root/.ssh/orchestra-backup",
                 "    UserKnownHostsFile /etc/orchestra/backup/known_hosts",
                 "    StrictHostKeyChecking yes", "    BatchMode yes"):
        assert line in ssh_config.splitlines()
    assert _render("etc/orchestra/backup/known_hosts", config) == KNOWN_HOST + "\n"
    assert _render("root/.ssh/orchestra-backup", config).endswith(
        "-----END OPENSSH PRIVATE KEY-----\n")
    assert backup.packages(config, ["data"]) == ["restic", "jq", "openssh-client"]


def test_local_wrapper(secrets):
    assert _render("usr/local/sbin/orchestra-restic", _config()).endswith('exec restic "$@"\n')


def test_units(secrets):
    config = _config()
    service = _render("etc/systemd/system/orchestra-backup.service", config).splitlines()
    assert "ExecStart=/usr/local/lib/orchestra/orchestra-backup run" in service
    assert "Type=oneshot" in service
    assert "IOSchedulingClass=idle" in service
    assert ("ReadWritePaths=/var/backups/orchestra/work /var/lib/orchestra-infra/backup "
            "-/var/backups/weaviate -/var/lib/prometheus/node-exporter "
            "-/var/backups/orchestra/restic") in service
    timer = _render("etc/systemd/system/orchestra-backup.timer", config).splitlines()
    assert "OnCalendar=*-*-* 03:15:00" in timer
    assert "RandomizedDelaySec=15min" in timer
    assert "Persistent=true" in timer
    check = _render("etc/systemd/system/orchestra-backup-check.service", config).splitlines()
    assert "ExecStart=/usr/local/lib/orchestra/orchestra-backup check" in check
    remote = _config(restic_repository="s3:https://s3.example.com/b")
    assert "restic" not in backup._read_write_paths(remote)[-1]


def test_scripts_parse_and_carry_the_settings(secrets, tmp_path):
    config = _config(postgres_databases=[{"name": "orchestra", "owner": "orchestra"},
                                         {"name": "analytics", "owner": "orchestra"}],
                     postgres_roles=[{"name": "orchestra", "password_secret":
                                      "postgres_app_password",
                                      "connect": ["orchestra", "analytics"]}])
    for name in ("orchestra-backup", "orchestra-restore", "orchestra-backup-lib.sh"):
        path = tmp_path / name
        path.write_text(_render(f"usr/local/lib/orchestra/{name}", config))
        subprocess.run(["sh", "-n", str(path)], check=True)
    lib = _render("usr/local/lib/orchestra/orchestra-backup-lib.sh", config).splitlines()
    assert 'DATABASES="orchestra analytics"' in lib
    assert "SNAPSHOT_HOST=orchestra-prod" in lib
    assert "TIMEOUT=1800" in lib
    script = _render("usr/local/lib/orchestra/orchestra-backup", config)
    # Retention per host and tag: the Weaviate backup's directory name changes every day.
    assert "--group-by host,tags --keep-last 3 --keep-daily 7" in script
    assert "--keep-weekly 4" in script and "--keep-monthly 6" in script
    assert "--read-data-subset=5%" in script
    for secret in SECRETS.values():
        assert secret.strip() not in script


def test_init_script_keeps_old_restic_on_format_1():
    script = backup.init_script("/usr/local/sbin/orchestra-restic", 2)
    assert "init --repository-version 2" in script
    assert "restic $v cannot create a version 2 repository" in script


# --- commands ----------------------------------------------------------------------------------


@pytest.fixture
def pyinfra_runs(monkeypatch):
    calls = []

    def run(args, **kwargs):
        calls.append((args, kwargs))
        return SimpleNamespace(returncode=0)

    monkeypatch.setattr(pyinfra_run.subprocess, "run", run)
    return calls


def test_restore_command_passes_its_choices_to_restore_py(pyinfra_runs):
    result = CliRunner().invoke(cli.main, ["restore", "sandbox", "--snapshot", "9f2c", "--force",
                                           "-y"])
    assert result.exit_code == 0, result.output
    ((args, kwargs),) = pyinfra_runs
    assert args[1:] == ["-m", "pyinfra", "-y", "inventories/sandbox.py", "restore.py"]
    assert kwargs["env"]["ORCHESTRA_RESTORE_SNAPSHOT"] == "9f2c"
    assert kwargs["env"]["ORCHESTRA_RESTORE_FORCE"] == "1"
    assert "sandbox: restore done in " in result.output


def test_restore_command_asks_first(pyinfra_runs):
    result = CliRunner().invoke(cli.main, ["restore", "sandbox"], input="n\n")
    assert result.exit_code == 1
    assert "Restore snapshot latest onto sandbox's data hosts?" in result.output
    ((args, _),) = pyinfra_runs  # the plan only: pyinfra's preview, which changes nothing
    assert args[2:] == ["pyinfra", "inventories/sandbox.py", "--dry", "restore.py"]


def test_backup_command_runs_the_service_on_data_hosts(pyinfra_runs):
    result = CliRunner().invoke(cli.main, ["backup", "sandbox", "-y"])
    assert result.exit_code == 0, result.output
    ((args, _),) = pyinfra_runs
    assert args[4:] == ["inventories/sandbox.py", "--limit", "data", "exec", "--",
                        "/usr/local/lib/orchestra/orchestra-backup", "now"]


def test_backup_command_can_start_empty_and_allow_empty(pyinfra_runs):
    script = "/usr/local/lib/orchestra/orchestra-backup"
    result = CliRunner().invoke(cli.main, ["backup", "sandbox", "--start-empty",
                                           "--allow-empty", "-y"])
    assert result.exit_code == 0, result.output
    ((args, _),) = pyinfra_runs
    assert args[8:] == ["--", script, "start-empty", "&&", script, "now", "--allow-empty"]


def test_restore_command_passes_from_host(pyinfra_runs):
    result = CliRunner().invoke(cli.main, ["restore", "sandbox", "--from-host",
                                           "orchestra-prod-2", "-y"])
    assert result.exit_code == 0, result.output
    assert pyinfra_runs[0][1]["env"]["ORCHESTRA_RESTORE_FROM_HOST"] == "orchestra-prod-2"
    result = CliRunner().invoke(cli.main, ["restore", "sandbox", "--from-host", "a b;c", "-y"])
    assert result.exit_code == 2 and "is not a backup host name" in result.output
    assert len(pyinfra_runs) == 1


def test_unknown_environment(pyinfra_runs):
    result = CliRunner().invoke(cli.main, ["backup", "prdo"])
    assert result.exit_code == 2  # a usage error, like every command's unknown ENV
    assert "unknown environment 'prdo'" in result.output
