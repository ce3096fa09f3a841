"""Security: sshd hardening, inbound firewall, kernel settings, and the host hardening a
Lynis audit asks for (banner, modules, core dumps, login.defs, auditd, accounting, fail2ban)."""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import DeployError, deploy
from pyinfra.operations import apt, files, server

from operations import base, render, system, wireguard
from operations.facts import ContainerType

FIREWALL_RULES = "/etc/nftables.d/orchestra.nft"
SYSCTL_FILE = "/etc/sysctl.d/60-orchestra.conf"
BANNER_FILES = ("/etc/issue", "/etc/issue.net")
AUDIT_RULES = "/etc/audit/rules.d/60-orchestra.rules"
LOGIN_DEFS = "/etc/login.defs"
# net.* keys that live in the initial network namespace only: a container cannot set them.
NOT_NAMESPACED = frozenset({"net.core.bpf_jit_harden"})


def packages(config) -> list[str]:
    """What the hardening installs with everything else (auditd is installed apart, and
    only outside containers)."""
    names = list(config.hardening_packages)
    if config.process_accounting:
        names.append("acct")
    if config.fail2ban_enabled:
        # python3-systemd: the sshd jail reads the journal (minimal images have no auth.log).
        names += ["fail2ban", "python3-systemd"]
    return names


def check_ssh_access(config, ssh_user: str | None) -> None:
    """Refuse a configuration that would lock the deploying user out."""
    if config.sshd_allow_users and ssh_user and ssh_user not in config.sshd_allow_users:
        raise DeployError(
            f"sshd_allow_users: {ssh_user!r}, the user this deploy connects as, is not listed; "
            "applying it would lock you out"
        )


@deploy("Security")
def configure(config):
    _sshd(config)
    _firewall(config)
    # Read once: the container's host keeps what a container may not change.
    container = host.get_fact(ContainerType)
    _sysctl(config, container)
    _banner(config)
    _kernel_modules(config)
    _core_dumps(config)
    _login_defs(config)
    _auditd(config, container)
    _accounting(config, container)
    _fail2ban(config)


def _sshd(config):
    dropin = render.template(
        name="Harden sshd (drop-in read before cloud-init's)",
        src="security/etc/ssh/sshd_config.d/00-orchestra.conf.j2",
        dest="/etc/ssh/sshd_config.d/00-orchestra.conf",
        context={"config": config},
        validate="sshd -t",
    )
    # Reload, never restart: open sessions (this one included) survive.
    system.service(name="Run sshd", unit="ssh", reload_when=[dropin])


def _firewall(config):
    rules = render.template(
        name="Render firewall rules",
        src="security/etc/nftables.d/orchestra.nft.j2",
        dest=FIREWALL_RULES,
        context={"config": config, "ports": config.public_tcp_ports(),
                 "mesh": wireguard.firewall(config, host.groups)},
        mode="600",
        validate=f"nft -c -f {FIREWALL_RULES}",
    )
    unit = render.template(
        name="Install firewall unit",
        src="security/etc/systemd/system/orchestra-firewall.service.j2",
        dest="/etc/systemd/system/orchestra-firewall.service",
        context={"rules": FIREWALL_RULES},
    )
    enabled = config.firewall_enabled
    system.service(
        name="Enable firewall" if enabled else "Disable firewall",
        unit="orchestra-firewall",
        running=enabled,
        enabled=enabled,
        reload_when=[rules] if enabled else [],
        daemon_reload_when=[unit],
        # A reload can fail for a moment with 219/CGROUP in a container on a cgroup v1 host
        # (measured on the sandbox); several hosts' peers change the rules more often.
        _retries=2,
        _retry_delay=2,
    )


def _sysctl(config, container):
    settings = config.sysctl_settings
    skipped = []
    if container:
        # Inside a container only the network namespace's own settings can be written.
        skipped = sorted(key for key in settings
                         if not key.startswith("net.") or key in NOT_NAMESPACED)
        settings = {k: v for k, v in settings.items() if k not in skipped}
    conf = render.template(
        name="Set kernel parameters",
        src="security/etc/sysctl.d/60-orchestra.conf.j2",
        dest=SYSCTL_FILE,
        context={"settings": settings, "skipped": skipped, "container": container},
    )
    server.shell(name="Apply kernel parameters", commands=[f"sysctl -p {SYSCTL_FILE}"],
                 _if=conf.did_change)


def _banner(config):
    for path in BANNER_FILES:
        render.template(
            name=f"Write the login banner ({path})",
            src="security/etc/issue.j2",
            dest=path,
            context={"config": config},
        )


def _kernel_modules(config):
    render.template(
        name="Keep uncommon protocols and USB/FireWire storage modules unloaded",
        src="security/etc/modprobe.d/orchestra-hardening.conf.j2",
        dest="/etc/modprobe.d/orchestra-hardening.conf",
        context={"config": config},
    )


def _core_dumps(config):
    render.template(
        name="Limit core dumps (limits.d)",
        src="security/etc/security/limits.d/60-orchestra-core.conf.j2",
        dest="/etc/security/limits.d/60-orchestra-core.conf",
        context={"config": config},
    )
    render.template(
        name="Limit core dumps (systemd-coredump)",
        src="security/etc/systemd/coredump.conf.d/60-orchestra.conf.j2",
        dest="/etc/systemd/coredump.conf.d/60-orchestra.conf",
        context={"config": config},
    )
    profile = "/etc/profile.d/orchestra-core-dumps.sh"
    if config.core_dumps:
        system.absent(name="Allow core dumps in login shells", path=profile)
    else:
        render.template(
            name="Limit core dumps (login shells)",
            src="security/etc/profile.d/orchestra-core-dumps.sh.j2",
            dest=profile,
            context={"config": config},
        )


def login_defs(config) -> dict[str, str]:
    """The login.defs keys the deploy sets, in file order."""
    return {
        "PASS_MAX_DAYS": str(config.password_max_days),
        "PASS_MIN_DAYS": str(config.password_min_days),
        "PASS_WARN_AGE": str(config.password_warn_days),
        "UMASK": config.login_umask,
        "SHA_CRYPT_MIN_ROUNDS": str(config.password_hash_rounds),
        "SHA_CRYPT_MAX_ROUNDS": str(config.password_hash_rounds),
    }


def _login_defs(config):
    for key, value in login_defs(config).items():
        files.line(
            name=f"Set {key} in login.defs",
            path=LOGIN_DEFS,
            # The uncommented setting; one that is only commented out (SHA_CRYPT_*) is added
            # at the end. grep reads the pattern as a basic regular expression.
            line=rf"^{key}\s",
            replace=f"{key}\t{value}",
        )
    # pam_umask gives login sessions login.defs' UMASK, and sudo keeps the larger of the
    # user's umask and its own: the deploy's commands (root, through sudo) would write
    # files other users cannot read. sudo sets 022 for them, as before.
    render.template(
        name="Keep sudo's umask at 022 for the deploy",
        src="security/etc/sudoers.d/orchestra-umask.j2",
        dest="/etc/sudoers.d/orchestra-umask",
        mode="440",
        validate="visudo -cf /etc/sudoers.d/orchestra-umask",
    )


def _auditd(config, container):
    if not config.auditd_enabled:
        return
    if container:
        host.log(f"auditd skipped: the kernel's audit system belongs to the {container} "
                 "container's host (it refuses audit requests from a container)", logger.info)
        return
    apt.packages(name="Install auditd", packages=["auditd"], _env=base.APT_ENV)
    rules = render.template(
        name="Write the audit rules",
        src="security/etc/audit/rules.d/60-orchestra.rules.j2",
        dest=AUDIT_RULES,
        context={"config": config},
        mode="640",
    )
    server.shell(name="Load the audit rules", commands=["augenrules --load"],
                 _if=rules.did_change)
    system.service(name="Run auditd", unit="auditd")


def _accounting(config, container):
    if config.process_accounting:
        if container:
            # accton needs CAP_SYS_PACCT, which a container does not get.
            host.log(f"Process accounting left off: a {container} container lacks "
                     "CAP_SYS_PACCT", logger.info)
            system.service(name="Leave process accounting off", unit="acct",
                           running=False, enabled=False)
        else:
            system.service(name="Run process accounting", unit="acct")
    if "sysstat" in config.hardening_packages:
        enabled = files.line(
            name="Let sysstat collect", path="/etc/default/sysstat",
            line=r"^ENABLED=", replace='ENABLED="true"',
        )
        system.service(name="Run sysstat", unit="sysstat", restart_when=[enabled])


def _fail2ban(config):
    if not config.fail2ban_enabled:
        return
    # jail.local, fail2ban's own place for local settings (the package never changes it);
    # releases before 2026-11-30 wrote jail.d/orchestra.local.
    jail = render.template(
        name="Configure fail2ban's sshd jail",
        src="security/etc/fail2ban/jail.local.j2",
        dest="/etc/fail2ban/jail.local",
        context={"config": config},
    )
    old = system.absent(name="Remove the old fail2ban jail file",
                        path="/etc/fail2ban/jail.d/orchestra.local")
    system.service(name="Run fail2ban", unit="fail2ban", restart_when=[jail, old])
