"""What deploy.py does before any operation: validate the data and load the secrets."""

from __future__ import annotations

import posixpath

from pyinfra.api import DeployError

from . import schema, secrets
from .errors import ConfigError
from .schema import Config

_loaded: dict[str, secrets.Secrets] = {}


def environment_record(state_root: str) -> str:
    """Where a host records the environment it serves: written by every deploy
    (operations/base.py), read before a deploy, restore or reprovision changes anything."""
    return posixpath.join(state_root, "environment")


def recorded_environment_problem(host_name: str, record: str, wanted: str,
                                 lines: list[str]) -> str | None:
    """Why ``wanted`` may not be deployed onto a host whose record reads ``lines``; None
    when the record is absent (a new host) or names ``wanted``."""
    lines = [line.strip() for line in lines if line.strip()]
    if not lines or lines == [wanted]:
        return None
    recorded = " / ".join(lines)
    return (f"{host_name} serves environment {recorded!r} (recorded in {record}), not "
            f"{wanted!r}: nothing was changed. If the host really changes environment, empty "
            f"it and remove {record} first")


def validate_host(host) -> tuple[Config, secrets.Secrets]:
    """Validate a host's data and its environment's secrets, or stop the whole run.

    pyinfra plans every host before it executes anything, so raising here means no
    host has been changed.
    """
    try:
        config = schema.validate(host.data.dict(), secrets.NAMES)
        env = config.environment
        if env not in _loaded:
            _loaded[env] = secrets.load(env)
    except ConfigError as e:
        raise DeployError(
            f"invalid configuration for {host.name}, nothing was changed:\n  "
            + "\n  ".join(e.problems)
        ) from None
    return config, _loaded[env]
