"""Redis: loopback only, ACL users instead of a shared password, bounded memory, AOF."""

from __future__ import annotations

import re

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.server import LinuxDistribution

from operations import render, system
from operations.facts import AptCandidate

PACKAGES = ["redis-server"]


@deploy("Redis")
def configure(config):
    restart_policy = render.template(
        name="Restart Redis when it dies",
        src="redis/etc/systemd/system/redis-server.service.d/10-orchestra.conf.j2",
        dest="/etc/systemd/system/redis-server.service.d/10-orchestra.conf",
    )
    conf = render.template(
        name="Configure Redis",
        src="redis/etc/redis/redis.conf.j2",
        dest="/etc/redis/redis.conf",
        context={"config": config},
        group="redis", mode="640",
    )
    users = render.template(
        name="Define Redis ACL users",
        src="redis/etc/redis/users.acl.j2",
        dest="/etc/redis/users.acl",
        context={"config": config, "channel_acls": channel_acls()},
        group="redis", mode="640",
        secret=True,
    )
    system.service(
        name="Run Redis",
        unit="redis-server",
        running=True,
        enabled=True,
        restart_when=[conf, users],
        daemon_reload_when=[restart_policy],
    )


def channel_acls() -> bool:
    """Whether Redis takes ACL channel rules (``&*``): 6.2 and later. Ubuntu 22.04 ships
    6.0, which rejects them (and allows every channel anyway)."""
    candidate = host.get_fact(AptCandidate, package="redis-server")
    if candidate:
        major, minor = (int(part) for part in re.findall(r"\d+", candidate.split(":")[-1])[:2])
        return (major, minor) >= (6, 2)
    distro = host.get_fact(LinuxDistribution)
    return not (distro["name"] == "Ubuntu" and distro["major"] <= 22)
