"""Every shell program the deploy runs or ships, checked with shellcheck as a host gets it.

Programs that are only run (``sh -c``, ``sh -s``) live in ``templates/<component>/scripts/``
and render through ``render.script``; programs installed on the host live where they land
(``templates/backup/usr/local/lib/orchestra/orchestra-backup.j2``). Each is rendered with
the reference configuration and, where values reach it, with hostile ones (spaces, quotes,
``$(...)``, backticks), which must arrive as single words.

The checks a program is exempt from are listed beside it with the reason: a shellcheck
directive would be a comment in what the host receives, and the golden plans
(tests/unit/golden/) hold that byte for byte.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess

import pytest

from operations import app, base, render, system
from orchestra_infra import config as config_module
from orchestra_infra import secrets, status, status_probe
from orchestra_infra.schema import validate

HOSTILE = "/srv/it's a $(reboot) `id` dir;*"
ALL = ("edge", "app", "data")

# For loops that count rounds (`for i in $(seq N)`) never read their variable.
UNUSED_COUNTER = "SC2034"
# `'$(...)'` in single quotes is the quote filter keeping a hostile value literal.
LITERAL = "SC2016"


@pytest.fixture(scope="module")
def config():
    return validate(config_module.environment_data("sandbox"), secrets.NAMES)


def shellcheck(text: str, *exclude: str, shell: str = "sh", cwd=None) -> None:
    path = shutil.which("shellcheck")
    if not path:
        if os.environ.get("CI"):  # scripts/setup installs it: never skip there
            pytest.fail("shellcheck is not installed (scripts/setup installs it)")
        pytest.skip("shellcheck is not installed")
    args = [path, "--shell", shell, "--external-sources", "--format", "gcc"]
    if exclude:
        args += ["--exclude", ",".join(exclude)]
    result = subprocess.run([*args, "-"], input=text, capture_output=True, text=True, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr


# --- programs the deploy and the CLI run -----------------------------------------------------


def release_build(path: str) -> str:
    return render.script("app/scripts/release-build.sh.j2", upload=f"{path}/.upload-x.tar.gz",
                         target=f"{path}/x", ready_file=f"{path}/x/.ready", release_id="x")


def weaviate_install(path: str, url: str | None) -> str:
    return render.script("weaviate/scripts/install-release.sh.j2", staging=f"{path}/.staging",
                         tarball=f"{path}/.staging/w.tar.gz", url=url, sha256="0" * 64,
                         version="1.38.2", target=f"{path}/v1.38.2",
                         curl_limits=system.curl_limits(system.DOWNLOAD_TIME))


def monit_handover(path: str) -> str:
    return render.script("monit/scripts/handover.sh.j2", monit=f"{path}/monit",
                         control_file=f"{path}/monitrc")


@pytest.mark.parametrize("path", ["/opt/orchestra/releases", HOSTILE])
def test_release_build(path):
    shellcheck(release_build(path), LITERAL)


def test_a_hostile_value_stays_one_word_even_inside_a_trap():
    lines = release_build(HOSTILE).splitlines()
    trap = shlex.split(next(line for line in lines if line.startswith("trap ")))
    assert trap[0] == "trap" and trap[2] == "EXIT"
    assert shlex.split(trap[1]) == ["rm", "-f", f"{HOSTILE}/.upload-x.tar.gz"]
    assert shlex.split(lines[-1]) == ["echo", "x", ">", f"{HOSTILE}/x/.ready"]


def test_release_preflight(config):
    shellcheck(app._preflight_script(config, "0123abcd"), UNUSED_COUNTER)
    hostile = render.script(
        "app/scripts/release-preflight.sh.j2", unit="orchestra preflight", user="o'user",
        target=HOSTILE, current=HOSTILE, launcher=HOSTILE, env_file=HOSTILE,
        release_id="$(reboot)", port=8090, timeout=60, url="http://127.0.0.1:8090/a b'c",
        log=HOSTILE, curl_limits=system.curl_limits())
    shellcheck(hostile, UNUSED_COUNTER, LITERAL)


@pytest.mark.parametrize("path", ["/opt/weaviate", HOSTILE])
@pytest.mark.parametrize("url", [None, "https://example.com/w.tar.gz?a=1&b='2'"])
def test_weaviate_install(path, url):
    shellcheck(weaviate_install(path, url), LITERAL)


def test_apt_wait():
    for timeout, interval in ((900, 5), (2, 1)):
        # `/proc/$pid/cmdline`: $pid is lslocks' PID column, a number.
        shellcheck(base.wait_for_apt_script(timeout, interval), "SC2086")


@pytest.mark.parametrize("path", ["/usr/bin", HOSTILE])
def test_monit_handover(path):
    shellcheck(monit_handover(path), UNUSED_COUNTER, LITERAL)


@pytest.mark.parametrize("groups", [ALL, ("edge",), ("app",), ("data",)])
def test_status_probe(config, groups):
    # `ls /etc/postgresql | sort -n`: the entries are PostgreSQL versions.
    shellcheck(status_probe.script(status.plan(config, groups)), "SC2012")


def test_status_probe_with_hostile_values():
    plan = status_probe.Plan(
        units=("odd'$(reboot).service",), postgres=True, postgres_version=16,
        urls=("http://127.0.0.1:1/a b'c", "http://[::1]/$(id)"), postgres_port=5432,
        redis_port=6379, supervisor=True, pm2=("o'user", HOSTILE, HOSTILE),
        disk_paths=(HOSTILE, "/"), backup_file=HOSTILE)
    shellcheck(status_probe.script(plan), LITERAL)


# --- programs installed on the host -----------------------------------------------------------


def test_orchestra_run():
    shellcheck(render.render("app/opt/orchestra/bin/orchestra-run.j2", {}))


def test_backup_and_restore_with_their_library(config, tmp_path):
    # Rendered beside the scripts, so shellcheck follows their `. LIB` and sees what it
    # defines (it reports nothing inside a file it follows: the library is checked alone too).
    lib = tmp_path / "orchestra-backup-lib.sh"
    lib.write_text(render.render("backup/usr/local/lib/orchestra/orchestra-backup-lib.sh.j2", {
        "config": config, "restic": "/usr/local/sbin/orchestra-restic",
        "backup_etc": "/etc/orchestra/backup", "state_dir": "/var/lib/orchestra-infra/backup",
        "textfile_dir": "/var/lib/prometheus/node-exporter", "host_name": "orchestra-sandbox",
        "databases": [db.name for db in config.postgres_databases],
        "pg_archive_script": "/usr/local/lib/orchestra/orchestra-pg-archive"}))
    # Sourced: its settings are for the scripts (SC2034), and redis.env is a secret the
    # deploy writes (SC1091).
    shellcheck(lib.read_text(), "SC2034", "SC1091")
    backup = render.render("backup/usr/local/lib/orchestra/orchestra-backup.j2",
                           {"config": config, "lib": str(lib)})
    shellcheck(backup, cwd=tmp_path)
    restore = render.render("backup/usr/local/lib/orchestra/orchestra-restore.j2",
                            {"config": config, "lib": str(lib)})
    # `$(echo $wanted)` splits on purpose: the class names, one line.
    shellcheck(restore, "SC2086", "SC2116", cwd=tmp_path)
    archive = render.render("pgarchive/usr/local/lib/orchestra/orchestra-pg-archive.j2", {
        "config": config, "lib": str(lib), "stanza": "orchestra-sandbox",
        "archive_ready": "/var/lib/orchestra-infra/backup/archive-ready", "version": 14,
        "data_dir": "/var/lib/postgresql/14/main", "queue_max": 4 << 30})
    # `set -- $row` and `$TIMERS` split on purpose: three numbers, three timers.
    shellcheck(archive, "SC2086", cwd=tmp_path)


@pytest.mark.parametrize("sftp", [False, True])
def test_orchestra_restic(sftp):
    text = render.render("backup/usr/local/sbin/orchestra-restic.j2", {
        "env_file": "/etc/orchestra/backup/restic.env", "sftp": sftp,
        "alias": "orchestra-backup-repository", "ssh_config": "/etc/orchestra/backup/ssh_config",
        "host_name": "orchestra-sandbox"})
    # The env file is secrets the deploy writes, read at run time: nothing to follow.
    shellcheck(text, "SC1091")


@pytest.mark.parametrize("email_to", [[], ["ops@example.com", "o'neil@example.com"]])
@pytest.mark.parametrize("email_from", [None, "Orchestra <monit@example.com>"])
def test_monit_alert(email_to, email_from):
    text = render.render("monit/usr/local/lib/orchestra/monit-alert.j2", {
        "webhook_config": "/etc/monit/alert-webhook.curl", "email_to": email_to,
        "email_from": email_from, "smtp_host": "smtp.example.com", "smtp_port": 587,
        "rcpt_args": " ".join(f"--mail-rcpt {shlex.quote(a)}" for a in email_to)})
    shellcheck(text)


def test_wait_healthy():
    shellcheck(system.wait_healthy("api-1", 8001, "/api/health/", 60,
                                   on_failure="tail -n 30 /var/log/orchestra/api-1.log >&2; "))
