"""The components of the stack a host gets, from the service catalogue, and their packages.

Every component module (``operations/<component>.py``) has ``packages(config, groups)``;
the catalogue decides which components a host of some groups gets.
"""

from __future__ import annotations

from operations import (
    app,
    backup,
    monit,
    nginx,
    pgarchive,
    pm2,
    postgres,
    prometheus,
    redis,
    security,
    supervisor,
    weaviate,
)
from orchestra_infra import catalog

MODULES = {module.__name__.rsplit(".", 1)[1]: module for module in (
    postgres, redis, weaviate, backup, pgarchive, supervisor, app, pm2, nginx, monit, prometheus)}


def packages(config, groups, postgres_packages: list[str] | None = None) -> list[str]:
    """Every package a host of these groups installs, in one list (one apt transaction).

    ``postgres_packages``: the PostgreSQL packages when known without the host (the
    benchmark's floor); otherwise read from the host's distro and apt sources.
    """
    names = list(config.base_packages) + security.packages(config)
    for component in catalog.components(config, groups):
        if component == "postgres" and postgres_packages is not None:
            names += postgres_packages
        else:
            names += MODULES[component].packages(config, groups)
    return names
