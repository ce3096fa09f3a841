"""The error every configuration and secrets check raises.

It lives alone so that the schema, the secrets, the loader and the app source can all
raise it without importing each other.
"""

from __future__ import annotations


class ConfigError(Exception):
    """Raised with one line per problem, each starting with the key path."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))
