"""Base system: trust store, packages, time zone, locale, updates, service user, journald."""

from __future__ import annotations

import posixpath
from pathlib import Path

from pyinfra import host, logger
from pyinfra.api import DeployError, deploy
from pyinfra.operations import apt, files, server
from pyinfra.operations.util import any_changed

from operations import render, snapshot, system
from operations.facts import GpuInfo

CA_DIR = "/usr/local/share/ca-certificates/orchestra"


def check_gpu(config) -> list[dict]:
    """Read the GPUs; stop before any change when one is required and none is there."""
    gpus = host.get_fact(GpuInfo)
    if gpus:
        for gpu in gpus:
            host.log(f"GPU: {gpu['model']}, driver {gpu['driver']}, {gpu['memory_mib']} MiB",
                     logger.info)
    elif config.require_gpu:
        raise DeployError(f"{host.name}: require_gpu is true but nvidia-smi reports no NVIDIA GPU")
    else:
        host.log("No NVIDIA GPU found (require_gpu is false): continuing without one",
                 logger.info)
    return gpus


@deploy("Install")
def install(config, packages: list[str], new_sources: bool = False):
    """Every package of every component in one apt transaction: one dependency solve and
    one download pass on a bare host, one `dpkg -l` on a converged one. A source added in
    this run (``new_sources``) forces an `apt-get update` whatever its age."""
    _trust_extra_cas(config)
    apt.packages(
        name="Install packages",
        packages=sorted(set(packages)),
        update=True,
        cache_time=None if new_sources else config.apt_cache_time,
    )
    # Packages bring files and units: what was read before the install is stale after it.
    snapshot.new_generation()


@deploy("Base system")
def configure(config, gpus: list[dict]):
    _time_and_locale(config)
    _unattended_upgrades(config)
    _service_user_and_directories(config)
    _journald(config)
    render.template(
        name="Record GPU inventory",
        src="base/var/lib/orchestra-infra/gpu.json.j2",
        dest=posixpath.join(config.state_root, "gpu.json"),
        context={"gpus": gpus},
    )


def _trust_extra_cas(config):
    # Before any download: a TLS-inspecting proxy breaks apt/pip/npm over HTTPS until
    # its CA is trusted. pip, npm and uv are later pointed at this same system store.
    system.directory(name="Create extra CA directory", path=CA_DIR, mode="755")
    installed = [
        render.template(
            name=f"Install CA certificate {Path(path).name}",
            src=None,
            text=Path(path).read_text(),
            dest=posixpath.join(CA_DIR, Path(path).stem + ".crt"),
        )
        for path in config.extra_ca_certificates
    ]
    if installed:
        server.shell(
            name="Update the CA trust store",
            commands=["update-ca-certificates"],
            _if=any_changed(*installed),
        )
    # pip, npm and uv ship their own CA lists; point them at the system store.
    for src, dest in (("pip.conf", "/etc/pip.conf"), ("npmrc", "/etc/npmrc"),
                      ("uv/uv.toml", "/etc/uv/uv.toml")):
        render.template(name=f"Point {dest} at the system trust store",
                        src=f"base/etc/{src}.j2", dest=dest)


def _time_and_locale(config):
    files.link(
        name=f"Set time zone {config.timezone}",
        path="/etc/localtime",
        target=f"/usr/share/zoneinfo/{config.timezone}",
    )
    render.template(name="Write /etc/timezone", src=None, text=config.timezone + "\n",
                    dest="/etc/timezone")
    if config.locale != "C.UTF-8":
        locale_gen = files.line(
            name=f"Enable locale {config.locale}",
            path="/etc/locale.gen",
            line=rf"^#?\s*{config.locale.replace('.', '[.]')} UTF-8",
            replace=f"{config.locale} UTF-8",
        )
        server.shell(name="Generate locales", commands=["locale-gen"],
                     _if=locale_gen.did_change)
    render.template(
        name="Set the default locale",
        src="base/etc/default/locale.j2",
        dest="/etc/default/locale",
        context={"config": config},
    )


def _unattended_upgrades(config):
    for name in ("20auto-upgrades", "52orchestra-unattended-upgrades"):
        render.template(
            name=f"Configure unattended-upgrades ({name})",
            src=f"base/etc/apt/apt.conf.d/{name}.j2",
            dest=f"/etc/apt/apt.conf.d/{name}",
            context={"config": config},
        )


def _service_user_and_directories(config):
    user = config.service_user
    server.group(name=f"Create group {user}", group=user, system=True)
    server.user(
        name=f"Create service user {user}",
        user=user,
        group=user,
        system=True,
        shell="/usr/sbin/nologin",
        home=config.install_root,
        create_home=False,
        ensure_home=False,  # /opt/orchestra is root-owned; see the directories below
    )
    for path, owner, group, mode in (
        (config.install_root, "root", user, "755"),
        (config.config_root, "root", user, "750"),
        (config.log_root, user, user, "750"),
        (config.state_root, "root", "root", "755"),
    ):
        system.directory(name=f"Create {path}", path=path, user=owner, group=group, mode=mode)


def _journald(config):
    conf = render.template(
        name="Cap journald size and age",
        src="base/etc/systemd/journald.conf.d/00-orchestra.conf.j2",
        dest="/etc/systemd/journald.conf.d/00-orchestra.conf",
        context={"config": config},
    )
    system.service(name="Run journald", unit="systemd-journald", restart_when=[conf])

