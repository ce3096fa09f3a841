"""What deploy.py does before any operation: validate the data and load the secrets."""

from __future__ import annotations

from pyinfra.api import DeployError

from . import schema, secrets
from .errors import ConfigError
from .schema import Config

_loaded: dict[str, secrets.Secrets] = {}


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
