"""Redis: loopback only, ACL users instead of a shared password, bounded memory, AOF."""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.operations import apt, systemd

from operations import render


@deploy("Redis")
def configure(config):
    apt.packages(name="Install Redis", packages=["redis-server"],
                 update=True, cache_time=config.apt_cache_time)
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
    systemd.service(
        name="Run Redis",
        service="redis-server",
        running=True,
        enabled=True,
        restarted=conf.will_change or users.will_change,
        daemon_reload=restart_policy.will_change,
    )
