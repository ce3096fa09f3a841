"""Redis: loopback only, ACL users instead of a shared password, bounded memory, AOF."""

from __future__ import annotations

import re

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.server import LinuxDistribution

from operations import facts, render, system
from operations.facts import AptCandidate, LocalAddresses


def packages(config, groups) -> list[str]:
    return ["redis-server"]


@deploy("Redis")
def configure(config):
    restart_policy = system.restart_always_dropin(
        "redis-server", name="Restart Redis when it dies",
        why="the distro unit restarts after 100 ms, so five kills in a\n"
            "row end in start-limit-hit; a few seconds apart they never do.",
    )
    conf = render.template(
        name="Configure Redis",
        src="redis/etc/redis/redis.conf.j2",
        dest="/etc/redis/redis.conf",
        context={"config": config, "bind": bind_addresses(config.redis_bind, version(),
                                                          host.get_fact(LocalAddresses))},
        group="redis", mode="640",
    )
    users = render.template(
        name="Define Redis ACL users",
        src="redis/etc/redis/users.acl.j2",
        dest="/etc/redis/users.acl",
        context={"config": config, "channel_acls": channel_acls(),
                 "hello_before_auth": version() < (6, 2)},
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


def version() -> tuple[int, int]:
    """Redis's (major, minor) the host installs: apt's candidate, or, before the package lists
    exist, the distro's (Ubuntu 22.04 ships 6.0; Debian 12 ships 7.0)."""
    candidate = facts.planned(AptCandidate, package="redis-server")
    if candidate:
        major, minor = (int(part) for part in re.findall(r"\d+", candidate.split(":")[-1])[:2])
        return major, minor
    distro = facts.planned(LinuxDistribution)
    return (6, 0) if distro["name"] == "Ubuntu" and distro["major"] <= 22 else (7, 0)


def channel_acls() -> bool:
    """Whether Redis takes ACL channel rules (``&*``): 6.2 and later. Ubuntu 22.04 ships
    6.0, which rejects them (and allows every channel anyway)."""
    return version() >= (6, 2)


def bind_addresses(wanted: list[str], redis_version: tuple[int, int],
                   local: list[str]) -> list[str]:
    """The ``bind`` list for this Redis. An address with a leading "-" is optional: 6.2 and
    later skip it when the host lacks it; 6.0 does not know the prefix (it fails to start on
    "-::1"), so there it is written bare where the host has the address, and left out where
    it does not."""
    if redis_version >= (6, 2):
        return list(wanted)
    return [a.removeprefix("-") for a in wanted if not a.startswith("-") or a[1:] in local]
