"""The Orchestra application: content-addressed releases, health-checked before they go live.

A release is unpacked into <install_root>/releases/<id>/ with its own virtualenv (locked
requirements with hashes) and its built admin; its API must answer healthy on a spare
port before `current` is switched to it; then the API instances restart one at a time,
so nginx always has one to send requests to. A release that fails its check leaves the
previous one serving and prints the failing service's log and the URL it checked.
"""

from __future__ import annotations

import shlex
import uuid
from pathlib import Path

from pyinfra import host
from pyinfra.api import (
    DeployError,
    QuoteString,
    StringCommand,
    deploy,
    operation,
)
from pyinfra.facts.files import Link

from operations import render, snapshot, system, wireguard
from operations.facts import AppReleases
from orchestra_infra import app_source, catalog
from orchestra_infra import release as release_module
from orchestra_infra.config import project_root
from orchestra_infra.errors import ConfigError


def packages(config, groups) -> list[str]:
    """Each release builds its own venv (and any C extension of its requirements)."""
    return ["python3-venv", "python3-dev", "build-essential"]


def releases_dir(config) -> str:
    return f"{config.install_root}/releases"


def current_link(config) -> str:
    """The live release: a link into ``releases_dir``, where the programs run from."""
    return f"{config.install_root}/current"


def launcher(config) -> str:
    return f"{config.install_root}/bin/orchestra-run"


def env_file(config, program: str) -> str:
    return f"{config.config_root}/{program}.env"


def programs(config) -> list[dict]:
    """Every Supervisor program (the catalogue's), with the env file it reads and its log."""
    return [{**program, "env_file": env_file(config, program["env_name"]),
             "log": f"{config.log_root}/{program['name']}.log"}
            for program in catalog.programs(config)]


def source_tarball(config) -> tuple[Path, str]:
    def optional_secret(name):
        return render.secret_value(name) if name in render.loaded_secrets() else None

    build_dir = project_root() / "build"
    try:
        source = app_source.resolve(config, build_dir, project_root(), optional_secret)
        return release_module.build(source, build_dir)
    except ConfigError as e:
        raise DeployError(f"{host.name}: nothing was changed: " + "; ".join(e.problems)) from None


@deploy("App")
def configure(config) -> tuple:
    """Install the release; returns (the switch to it, operations whose change needs the
    programs restarted)."""
    user, releases = config.service_user, releases_dir(config)
    for path, owner, mode in ((releases, "root", "755"),
                              (f"{config.install_root}/bin", "root", "755"),
                              (f"/var/lib/{user}", user, "750")):
        system.directory(name=f"Create {path}", path=path, user=owner, group=user, mode=mode)
    installed_launcher = render.template(name="Install the orchestra-run launcher",
                                         src="app/opt/orchestra/bin/orchestra-run.j2",
                                         dest=launcher(config), mode="755")
    env_files = [
        render.template(name=f"Write the environment of {program}",
                        src="app/etc/orchestra/app.env.j2", dest=env_file(config, program),
                        context={"config": config, "program": program,
                                 "data_address": wireguard.data_address(config),
                                 "listen_also": wireguard.listen_also(config)},
                        group=user, mode="640", secret=True)
        for program in ["api", *(f"mcp-{name}" for name in config.mcp_servers)]
    ]
    tarball, release_id = source_tarball(config)
    built = build(name=f"Build release {release_id}", tarball=str(tarball),
                  release_id=release_id, releases=releases,
                  ready_file=f"{releases}/{release_id}/.ready")
    # Several app hosts: one at a time (operations/supervisor.py restarts them the same way).
    switched = switch(name=f"Make release {release_id} live (after its health check)",
                      release_id=release_id, config=config, _serial=wireguard.enabled())
    return switched, [built, switched, installed_launcher, *env_files]


def previous_release(config) -> str:
    """The release live before the live one: the first of the built releases, ordered by when
    each was last made live (or built), after the live one."""
    releases = host.get_fact(AppReleases, root=config.install_root)
    before = release_before(releases)
    if before is None:
        raise DeployError(f"{host.name}: no earlier release to roll back to "
                          f"(live: {releases['live']}, built: "
                          f"{', '.join(releases['built']) or 'none'})")
    return before


def release_before(releases: dict) -> str | None:
    """From the AppReleases fact: the release after the live one in its order, or None."""
    built, live = releases["built"], releases["live"]
    older = built[built.index(live) + 1:] if live in built else [r for r in built if r != live]
    return older[0] if older else None


@snapshot.registers("files", "ready_file")
@operation()
def build(tarball: str, release_id: str, releases: str, ready_file: str):
    """
    Unpack a release, create its virtualenv from the hash-locked requirements and build
    the admin, unless it is already built (``ready_file`` marks a finished build).

    + tarball: the release tarball on the control machine
    + release_id: its content digest, the release's directory name
    + releases: the directory of every release (``releases_dir``)
    + ready_file: written last, so an interrupted build is redone
    """
    if snapshot.lookup("files", ready_file):
        host.noop(f"release {release_id} is built")
        return
    target = f"{releases}/{release_id}"
    # Unique per run: a build left running by an interrupted deploy (the remote side of a
    # killed pyinfra goes on) must not remove or read this run's upload.
    upload = f"{releases}/.upload-{release_id}-{uuid.uuid4().hex[:12]}.tar.gz"
    yield from render.upload(tarball, upload)
    # One build at a time, under a lock: this run waits for such a leftover build, then
    # finds the release ready, or builds it anew (templates/app/scripts/release-build.sh.j2).
    script = render.script("app/scripts/release-build.sh.j2", upload=upload, target=target,
                           ready_file=ready_file, release_id=release_id)
    yield StringCommand("flock", QuoteString(f"{releases}/.build.lock"), "sh", "-c",
                        QuoteString(script))


# The preflight instance runs as a transient systemd unit: stopping the unit kills every
# process it started, so no instance survives an interrupted or failed attempt to hold the
# preflight port against the next one (the first command of every attempt stops it again).
PREFLIGHT_UNIT = "orchestra-preflight"


def _preflight_script(config, release_id: str) -> str:
    target = f"{releases_dir(config)}/{release_id}"
    return render.script(
        "app/scripts/release-preflight.sh.j2",
        unit=PREFLIGHT_UNIT, user=config.service_user, target=target, current=current_link(config),
        launcher=launcher(config), env_file=env_file(config, "api"), release_id=release_id,
        port=config.app_preflight_port, timeout=config.app_health_timeout,
        curl_limits=system.curl_limits(),
        url=f"http://127.0.0.1:{config.app_preflight_port}{catalog.API_HEALTH}",
        log=f"{config.log_root}/preflight-{release_id}.log",
    )


@operation()
def switch(release_id: str, config=None):
    """
    Health-check a built release on the preflight port, then point ``current`` at it
    atomically and remove the oldest releases beyond ``app_releases_keep``.

    + release_id: the release to make live
    + config: the validated configuration (ports, timeouts, users)
    """
    releases, current = releases_dir(config), current_link(config)
    link = host.get_fact(Link, path=current)
    if link and Path(link["link_target"]).name == release_id:
        host.noop(f"release {release_id} is live")
        return
    yield StringCommand("sh", "-c", QuoteString(_preflight_script(config, release_id)))
    # Releases are ordered by when they were last made live (or built): a rollback goes to
    # the release that was live before this one, not to a newer build that was rolled back
    # (operations.facts.AppReleases, previous_release), and pruning keeps those.
    yield StringCommand("touch", QuoteString(f"{releases}/{release_id}"),
                        QuoteString(f"{releases}/{release_id}/.ready"))
    yield StringCommand("ln", "-sfn", QuoteString(f"{releases}/{release_id}"),
                        QuoteString(f"{current}.new"))
    yield StringCommand("mv", "-T", QuoteString(f"{current}.new"), QuoteString(current))
    quoted, logs = shlex.quote(releases), shlex.quote(config.log_root)
    prune = (f"ls -1dt {quoted}/*/ | sed 's#/$##' | grep -vx {quoted}/{release_id} | "
             f"tail -n +{config.app_releases_keep} | xargs -r rm -rf; "
             # one preflight log per release: keep as many as releases
             f"ls -1t {logs}/preflight-*.log 2>/dev/null | "
             f"tail -n +{config.app_releases_keep + 1} | xargs -r rm -f")
    yield StringCommand("sh", "-c", QuoteString(prune))
