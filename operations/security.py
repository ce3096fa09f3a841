"""Security: sshd hardening, inbound firewall, kernel settings."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import DeployError, deploy
from pyinfra.operations import server

from operations import render, system
from operations.facts import ContainerType

FIREWALL_RULES = "/etc/nftables.d/orchestra.nft"
SYSCTL_FILE = "/etc/sysctl.d/60-orchestra.conf"


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
    _sysctl(config)


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
        context={"config": config, "ports": config.public_tcp_ports()},
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
    )


def _sysctl(config):
    container = host.get_fact(ContainerType)
    settings = config.sysctl_settings
    skipped = []
    if container:
        # Inside a container only the network namespace's own settings can be written.
        skipped = sorted(key for key in settings if not key.startswith("net."))
        settings = {k: v for k, v in settings.items() if k.startswith("net.")}
    conf = render.template(
        name="Set kernel parameters",
        src="security/etc/sysctl.d/60-orchestra.conf.j2",
        dest=SYSCTL_FILE,
        context={"settings": settings, "skipped": skipped, "container": container},
    )
    server.shell(name="Apply kernel parameters", commands=[f"sysctl -p {SYSCTL_FILE}"],
                 _if=conf.did_change)
