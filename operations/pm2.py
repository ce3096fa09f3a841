"""Node.js and PM2 for the React admin: pinned pm2, a systemd unit, reloads without drops."""

from __future__ import annotations

import json
import re
import shlex

from pyinfra import host
from pyinfra.api import DeployError, StringCommand, deploy, operation
from pyinfra.facts.deb import DebPackage
from pyinfra.facts.files import FileContents
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import server
from pyinfra.operations.util import any_changed

from operations import admin_status, app, facts, prometheus, render, system, wireguard
from operations.facts import AptCandidate
from orchestra_infra import catalog

PM2 = catalog.PM2
ADMIN = "orchestra-admin"  # the app's name in ecosystem.config.js
KEYRING = "/etc/apt/keyrings/nodesource.asc"
SOURCES = "/etc/apt/sources.list.d/nodesource.list"
NODESOURCE = "https://deb.nodesource.com"
# The admin's build tools and server need this at least.
NODE_MIN_MAJOR = 18
# The distributions' own Node.js, for a decision made before their package lists exist.
DISTRO_NODE_MAJOR = {("Ubuntu", 22): 12, ("Ubuntu", 24): 18, ("Debian", 12): 18}


def repository_url(config) -> str:
    return config.node_apt_repository or f"{NODESOURCE}/node_{config.node_major}.x"


def key_url(config) -> str:
    return config.node_apt_key_url or f"{NODESOURCE}/gpgkey/nodesource-repo.gpg.key"


def packages(config, groups) -> list[str]:
    # NodeSource's nodejs bundles npm; the distro splits them.
    return ["nodejs"] if config.node_source == "nodesource" else ["nodejs", "npm"]


def check_node(config) -> None:
    """Stop before any change when node_source is "distro" and the distro's Node is too old."""
    if config.node_source != "distro":
        return
    distro = facts.planned(LinuxDistribution)
    major = DISTRO_NODE_MAJOR.get((distro["name"], distro["major"]))
    if major is None:
        candidate = facts.planned(AptCandidate, package="nodejs")
        found = re.match(r"(?:\d+:)?(\d+)", candidate or "")
        major = int(found.group(1)) if found else None
    if major is not None and major < NODE_MIN_MAJOR:
        raise DeployError(
            f"{host.name}: node_source is \"distro\", but {distro['name']} {distro['major']} "
            f"ships Node.js {major}, older than the {NODE_MIN_MAJOR} the admin needs: set "
            f"node_source = \"nodesource\" (Node.js node_major from NodeSource's repository)"
        )


def add_repository(config):
    """NodeSource's repository (or a mirror of it), before any install."""
    if config.node_source != "nodesource":
        return None
    # NodeSource serves one suite, "nodistro", to every distribution.
    return system.apt_repository(
        name=f"Add the NodeSource apt repository (Node.js {config.node_major})",
        url=repository_url(config), suite="nodistro", key_url=key_url(config),
        keyring=KEYRING, sources=SOURCES)


@deploy("Node.js")
def install(config):
    """After the packages: NodeSource's Node.js at the pinned major, and its npm reading
    /etc/npmrc like the distros' npm does."""
    if config.node_source != "nodesource":
        return
    node_major(name=f"Upgrade Node.js to {config.node_major} when an older one is installed",
               major=config.node_major)
    # npm reads its global config from PREFIX/etc/npmrc, and PREFIX moves with --prefix (pm2
    # installs modules that way), so the CA setting would be lost; Debian's and Ubuntu's npm
    # pin it to /etc/npmrc in this builtin file, NodeSource's ships none.
    render.template(name="Make npm read /etc/npmrc whatever its prefix",
                    src="pm2/usr/lib/node_modules/npm/npmrc.j2",
                    dest="/usr/lib/node_modules/npm/npmrc")


@operation()
def node_major(major: int):
    """
    Upgrade an installed ``nodejs`` of another major version (the distro's, or an older
    pin) to the one the added repository offers; a fresh install is apt.packages's job.

    + major: the Node.js major version wanted
    """
    installed = host.get_fact(DebPackage, package="nodejs")
    version = (installed or {}).get("version", "")
    found = re.match(r"(?:\d+:)?(\d+)\.", version)
    if not found or int(found.group(1)) == major:
        host.noop(f"nodejs {version or 'absent'}: nothing to upgrade")
        return
    yield ("DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get install -y "
           "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold nodejs")


def ecosystem_file(config) -> str:
    return f"{config.config_root}/ecosystem.config.js"


pm2_home = catalog.pm2_home


@deploy("PM2")
def configure(config, restart_when: list):
    user, home = config.service_user, pm2_home(config)
    npm_global(name=f"Install pm2 {config.pm2_version}", package="pm2",
               version=config.pm2_version)
    system.directory(name=f"Create {home}", path=home, user=user, group=user, mode="750")
    unit = render.template(
        name="Install the pm2-orchestra unit",
        src="pm2/etc/systemd/system/pm2-orchestra.service.j2",
        dest="/etc/systemd/system/pm2-orchestra.service",
        context={"user": user, "pm2_home": home, "pm2": PM2, "log_root": config.log_root},
    )
    ecosystem = render.template(
        name="Describe the admin to PM2 (ecosystem.config.js)",
        src="pm2/etc/orchestra/ecosystem.config.js.j2",
        dest=ecosystem_file(config),
        context={"config": config, "current": app.current_link(config),
                 "status_file": admin_status.OUTPUT,
                 "status_peers": admin_status.peers(config),
                 "prometheus_url": prometheus.prometheus_url(config),
                 "alertmanager_url": prometheus.alertmanager_url(config),
                 "listen_also": wireguard.listen_also(config)},
        group=user, mode="640",
    )
    # A changed unit (its sandbox) applies only to a PM2 daemon started under it.
    system.service(name="Run PM2", unit="pm2-orchestra", daemon_reload_when=[unit],
                   restart_when=[unit])
    reload_admin(config, when=[ecosystem, unit, *restart_when])
    pm2_module(name=f"Rotate PM2 logs (pm2-logrotate {config.pm2_logrotate_version})",
               module="pm2-logrotate", version=config.pm2_logrotate_version, user=user,
               pm2_home=home)


def reload_admin(config, when: list) -> None:
    """startOrReload replaces processes one at a time (cluster mode: no dropped requests);
    save is what `pm2 resurrect` brings back at boot. Never `pm2 delete all`.

    Also when the saved list lacks the admin: a run that failed before the save (or a list
    lost) must not leave it out for good, as a change-triggered reload alone would."""
    user, home = config.service_user, pm2_home(config)
    dump = host.get_fact(FileContents, path=f"{home}/dump.pm2")
    saved = dump is not None and f'"name":"{ADMIN}"' in "".join(dump).replace(" ", "")
    as_user = _as_user(user, home)
    changed = any_changed(*when)
    server.shell(
        name="Start or reload the admin, and save the process list",
        commands=[f"{as_user} startOrReload {shlex.quote(ecosystem_file(config))} "
                  "--update-env >/dev/null && "
                  f"{as_user} save --force >/dev/null"],
        _if=lambda: not saved or changed(),
        _serial=wireguard.enabled(),
    )


def _as_user(user: str, pm2_home: str) -> str:
    """pm2 as the service user, every value one shell word."""
    return (f"runuser -u {shlex.quote(user)} -- env {shlex.quote(f'HOME=/var/lib/{user}')} "
            f"{shlex.quote(f'PM2_HOME={pm2_home}')} {PM2}")


def _installed_version(package_json: list[str] | None) -> str | None:
    if not package_json:
        return None
    try:
        return json.loads("\n".join(package_json)).get("version")
    except ValueError:
        return None


@operation()
def npm_global(package: str, version: str):
    """
    Install a global npm package at an exact version.

    Reads the installed package.json instead of ``npm ls -g`` (2.7 s per check).

    + package: npm package name
    + version: exact version
    """
    installed = _installed_version(host.get_fact(
        FileContents, path=f"/usr/local/lib/node_modules/{package}/package.json"))
    if installed == version:
        host.noop(f"{package} {version} is installed")
        return
    yield StringCommand("npm", "install", "--global", "--no-audit", "--no-fund",
                        "--loglevel=error", f"{package}@{version}")


@operation()
def pm2_module(module: str, version: str, user: str, pm2_home: str):
    """
    Install a PM2 module at an exact version and keep its logs bounded.

    + module: the module (``pm2-logrotate``)
    + version: exact version
    + user, pm2_home: whose PM2 and where its home is
    """
    installed = _installed_version(host.get_fact(
        FileContents, path=f"{pm2_home}/modules/{module}/node_modules/{module}/package.json"))
    if installed == version:
        host.noop(f"{module} {version} is installed")
        return
    # HOME: npm (which pm2 runs) writes its cache there; the user's own is root-owned.
    as_user = _as_user(user, pm2_home)
    yield StringCommand(f"{as_user} install {shlex.quote(f'{module}@{version}')} >/dev/null")
    for key, value in (("max_size", "50M"), ("retain", "10"), ("compress", "true")):
        yield StringCommand(f"{as_user} set {module}:{key} {value} >/dev/null")
