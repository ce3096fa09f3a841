"""The Orchestra application: content-addressed releases, health-checked before they go live.

A release is unpacked into <install_root>/releases/<id>/ with its own virtualenv (locked
requirements with hashes) and its built admin; its API must answer healthy on a spare
port before `current` is switched to it; then the API instances restart one at a time,
so nginx always has one to send requests to. A release that fails its check leaves the
previous one serving and prints the failing service's log and the URL it checked.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from pyinfra import host
from pyinfra.api import (
    DeployError,
    FileUploadCommand,
    QuoteString,
    StringCommand,
    deploy,
    operation,
)
from pyinfra.facts.files import Link

from operations import render, snapshot, system
from operations.facts import AppReleases
from orchestra_infra import app_source
from orchestra_infra import release as release_module
from orchestra_infra.config import project_root
from orchestra_infra.schema import ConfigError

PACKAGES = ["python3-venv", "python3-dev", "build-essential"]


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
    """Every Supervisor program: the API instances, then one per MCP server."""
    api = [{"name": f"api-{i}", "module": "api", "port": config.api_port + i,
            "env_file": env_file(config, "api"), "health": "/api/health/"}
           for i in range(config.api_instances)]
    mcp = [{"name": f"mcp-{name}", "module": f"mcp.server --name {name}", "port": server.port,
            "env_file": env_file(config, f"mcp-{name}"), "health": "/health"}
           for name, server in config.mcp_servers.items()]
    return [{**program, "log": f"{config.log_root}/{program['name']}.log"}
            for program in api + mcp]


def source_tarball(config) -> tuple[Path, str]:
    def optional_secret(name):
        return render.secret_value(name) if name in render.loaded_secrets() else None

    build_dir = project_root() / "build"
    try:
        source = app_source.resolve(config, build_dir, project_root(), optional_secret)
    except ConfigError as e:
        raise DeployError(f"{host.name}: nothing was changed: " + "; ".join(e.problems)) from None
    return release_module.build(source, build_dir)


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
                        context={"config": config, "program": program},
                        group=user, mode="640", secret=True)
        for program in ["api", *(f"mcp-{name}" for name in config.mcp_servers)]
    ]
    tarball, release_id = source_tarball(config)
    built = build(name=f"Build release {release_id}", tarball=str(tarball),
                  release_id=release_id, releases=releases,
                  ready_file=f"{releases}/{release_id}/.ready")
    switched = switch(name=f"Make release {release_id} live (after its health check)",
                      release_id=release_id, config=config)
    return switched, [built, switched, installed_launcher, *env_files]


def previous_release(config) -> str:
    """The newest built release older than the live one."""
    releases = host.get_fact(AppReleases, root=config.install_root)
    built = releases["built"]
    if releases["live"] in built:
        older = built[built.index(releases["live"]) + 1:]
    else:
        older = [r for r in built if r != releases["live"]]
    if not older:
        raise DeployError(f"{host.name}: no earlier release to roll back to "
                          f"(live: {releases['live']}, built: {', '.join(built) or 'none'})")
    return older[0]


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
    yield FileUploadCommand(tarball, upload, remote_temp_filename=host.get_temp_filename(upload))
    # One build at a time, under a lock: this run waits for such a leftover build, then
    # finds the release ready, or builds it anew. The virtualenv is made in its final place
    # (its scripts record their path).
    # One command per line: `set -e` ignores a failure inside an `a && b` list, and a
    # release whose admin did not build must never be marked ready.
    script = "\n".join([
        "set -e",
        f"trap 'rm -f {upload}' EXIT",
        f"if [ -e {ready_file} ]; then exit 0; fi",
        f"rm -rf {target}",
        f"mkdir -p {target}",
        f"tar -xzf {upload} -C {target} --no-same-owner",
        f"cd {target}",
        "python3 -m venv venv",
        "venv/bin/pip install --quiet --disable-pip-version-check --no-input "
        "--require-hashes -r requirements.txt",
        "cd modern-admin",
        "npm ci --no-audit --no-fund --loglevel=error",
        "npm run build --silent",
        "test -f dist/index.html",
        "rm -rf node_modules",
        f"echo {release_id} > {ready_file}",
    ])
    yield StringCommand("flock", f"{releases}/.build.lock", "sh", "-c", QuoteString(script))


# The preflight instance runs as a transient systemd unit: stopping the unit kills every
# process it started, so no instance survives an interrupted or failed attempt to hold the
# preflight port against the next one (the first command of every attempt stops it again).
PREFLIGHT_UNIT = "orchestra-preflight"


def _preflight_script(config, release_id: str) -> str:
    target = f"{releases_dir(config)}/{release_id}"
    url = f"http://127.0.0.1:{config.app_preflight_port}/api/health/"
    log = f"{config.log_root}/preflight-{release_id}.log"
    stop = (f"systemctl stop {PREFLIGHT_UNIT} 2>/dev/null; "
            f"systemctl reset-failed {PREFLIGHT_UNIT} 2>/dev/null")
    return "\n".join([
        stop,
        f"trap '{stop}' EXIT",
        f"systemd-run --quiet --collect --unit={PREFLIGHT_UNIT} --uid={config.service_user} "
        f"--gid={config.service_user} --working-directory={target} "
        f"--property=StandardOutput=append:{log} --property=StandardError=append:{log} "
        f"{launcher(config)} {env_file(config, 'api')} "
        f"{target}/venv/bin/python -m api --host 127.0.0.1 --port {config.app_preflight_port}",
        "healthy=",
        f"for i in $(seq {config.app_health_timeout}); do",
        f"  if curl -fsS -o /dev/null {url}; then healthy=1; break; fi",
        f"  systemctl is-active --quiet {PREFLIGHT_UNIT} || break",
        "  sleep 1",
        "done",
        "if [ -z \"$healthy\" ]; then",
        f"  echo 'release {release_id} failed its health check at {url}; "
        f"{current_link(config)} still points at the previous release. Last log lines:' >&2",
        f"  tail -n 30 {log} >&2",
        "  exit 1",
        "fi",
    ])


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
    yield StringCommand("ln", "-sfn", f"{releases}/{release_id}", f"{current}.new")
    yield StringCommand("mv", "-T", f"{current}.new", current)
    prune = (f"ls -1dt {releases}/*/ | sed 's#/$##' | grep -vx {releases}/{release_id} | "
             f"tail -n +{config.app_releases_keep} | xargs -r rm -rf; "
             # one preflight log per release: keep as many as releases
             f"ls -1t {config.log_root}/preflight-*.log 2>/dev/null | "
             f"tail -n +{config.app_releases_keep + 1} | xargs -r rm -f")
    yield StringCommand("sh", "-c", QuoteString(prune))
