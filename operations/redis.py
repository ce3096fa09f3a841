"""Redis: loopback only, ACL users instead of a shared password, bounded memory, AOF."""

from __future__ import annotations

from pyinfra.api import deploy

from operations import render, system

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
        context={"config": config},
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
