"""Base system: trust store, packages, time zone, locale, updates, service user, journald."""

from __future__ import annotations

import posixpath
from pathlib import Path

from pyinfra import host, logger
from pyinfra.api import DeployError, QuoteString, StringCommand, deploy, operation
from pyinfra.facts.files import FileContents
from pyinfra.facts.server import Which
from pyinfra.operations import apt, files, server
from pyinfra.operations.util import any_changed

from operations import render, snapshot, system
from operations.facts import APT_LOCKS, AptLockHolders, GpuInfo
from orchestra_infra import preflight

CA_DIR = "/usr/local/share/ca-certificates/orchestra"
# What pyinfra's apt.update reads (and touches) to honour cache_time.
APT_UPDATE_STAMP = "/var/lib/apt/periodic/update-success-stamp"
# The deploy's apt runs: needrestart (Ubuntu server images) must neither prompt nor restart
# services (sshd among them) in the middle of a deploy; the deploy restarts what it changes.
APT_ENV = {"NEEDRESTART_SUSPEND": "1", "NEEDRESTART_MODE": "l"}


def environment_record(config) -> str:
    """Where a host records the environment it serves (written by every deploy)."""
    return preflight.environment_record(config.state_root)


def check_environment(config) -> None:
    """Stop before any change when the host serves another environment: a prod address
    left in hosts/staging must never get staging's data, secrets or restore. A host with
    no record (new, or deployed before records existed) takes this one."""
    path = environment_record(config)
    problem = preflight.recorded_environment_problem(
        host.name, path, config.environment, host.get_fact(FileContents, path=path) or [])
    if problem:
        raise DeployError(problem)


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


@deploy("Prepare apt")
def prepare(config):
    """What must hold before any apt source is added or package installed: the extra CAs
    trusted (a TLS-inspecting proxy), apt free (a fresh instance's first-boot upgrades), and
    the tools that fetch a repository's key."""
    _trust_extra_cas(config)
    wait_for_apt(name="Wait for apt and dpkg to be free", timeout=config.apt_lock_timeout)
    # Cloud images have curl; a minimal host gets it here, at the cost of one more update.
    if not host.get_fact(Which, command="curl"):
        apt.packages(name="Install the tools that add apt repositories",
                     packages=["ca-certificates", "curl"], update=True,
                     cache_time=config.apt_cache_time, _env=APT_ENV)


@operation()
def wait_for_apt(timeout: int):
    """
    Wait, bounded, until no process holds apt's or dpkg's locks; never kill the holder.

    + timeout: seconds to wait before stopping with the holder's name and command line
    """
    holders = host.get_fact(AptLockHolders)
    if not holders:
        host.noop("apt and dpkg are free")
        return
    who = ", ".join(sorted({f"{h['command']} (pid {h['pid']})" for h in holders}))
    logger.warning(f"[{host.name}] apt/dpkg locks held by {who}: waiting up to {timeout} s")
    yield StringCommand("sh", "-c", QuoteString(wait_for_apt_script(timeout)))


def wait_for_apt_script(timeout: int, interval: int = 5) -> str:
    return render.script("base/scripts/wait-for-apt.sh.j2", locks=APT_LOCKS, timeout=timeout,
                         interval=interval)


@deploy("Install")
def install(config, packages: list[str], new_sources: bool = False):
    """Every package of every component in one apt transaction: one dependency solve and
    one download pass on a bare host, one `dpkg -l` on a converged one. A source added in
    this run (``new_sources``) forces an `apt-get update` whatever its age."""
    if new_sources:
        # Forget the last update rather than skip the age check: pyinfra records an update
        # (touches the stamp) only when it checks the age, and Ubuntu without
        # update-notifier-common never does, so a forced update was redone on the next run.
        files.file(name="Expire the package lists (an apt source was added)",
                   path=APT_UPDATE_STAMP, present=False)
    apt.packages(
        name="Install packages",
        packages=sorted(set(packages)),
        update=True,
        cache_time=config.apt_cache_time,
        _env=APT_ENV,
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
    # pip, npm and uv ship their own CA lists; point them at the system store (npm: see
    # pm2.use_global_npmrc).
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
    # install_root, its home, is root-owned: see the directories below.
    system.service_account(name=f"Create service user {user}", user=user,
                           home=config.install_root)
    for path, owner, group, mode in (
        (config.install_root, "root", user, "755"),
        (config.config_root, "root", user, "750"),
        (config.log_root, user, user, "750"),
        (config.state_root, "root", "root", "755"),
    ):
        system.directory(name=f"Create {path}", path=path, user=owner, group=group, mode=mode)
    render.template(name=f"Record the environment this host serves ({config.environment})",
                    src=None, text=config.environment + "\n", dest=environment_record(config))


def _journald(config):
    conf = render.template(
        name="Cap journald size and age",
        src="base/etc/systemd/journald.conf.d/00-orchestra.conf.j2",
        dest="/etc/systemd/journald.conf.d/00-orchestra.conf",
        context={"config": config},
    )
    # Once more after a failed restart: systemd may fail to spawn journald into its cgroup
    # when a package's postinst has restarted it a moment before ("Failed at step CGROUP").
    system.service(name="Run journald", unit="systemd-journald", restart_when=[conf],
                   _retries=2, _retry_delay=3)

