"""Load an environment's data the way ``pyinfra inventories/ENV.py`` does, and validate it."""

from __future__ import annotations

import ast
import json
import runpy
from pathlib import Path
from typing import Any

from . import schema, secrets
from .errors import ConfigError
from .paths import project_root

# The two helpers below mirror pyinfra_cli's (inventory._get_imported_names and
# util.parse_cli_arg, pyinfra 3.10) so that `check` reads data exactly as `pyinfra`
# does. They are not imported: importing pyinfra_cli runs gevent's monkey.patch_all(),
# which would change threading for everything else in this process.


def _imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name != "*":
                    names.add(alias.asname or alias.name.split(".")[0])
    return names


def parse_cli_arg(value: str) -> Any:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return json.loads(value)
    except ValueError:
        return value


def environments(root: Path | None = None) -> list[str]:
    """Environments are the inventories that have a group_data file of the same name."""
    root = root or project_root()
    inventories = {p.stem for p in (root / "inventories").glob("*.py")}
    data = {p.stem for p in (root / "group_data").glob("*.py")}
    return sorted(inventories & data)


def read_group_data(path: Path) -> dict[str, Any]:
    """A group data file's values, as pyinfra's CLI reads them: its ``__all__``, or else
    every name but the imported ones; never a dunder."""
    names = runpy.run_path(str(path))
    if "__all__" in names:
        keys = set(names["__all__"])
    else:
        imported = _imported_names(path)
        keys = {k for k in names if k not in imported}
    return {k: v for k, v in names.items() if k in keys and not k.startswith("__")}


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs, with values parsed exactly as ``pyinfra --data`` parses them."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError([f"--data {pair!r}: expected key=value"])
        overrides[key] = parse_cli_arg(value)
    return overrides


def environment_data(env: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """group_data/all.py, then group_data/ENV.py, then the overrides."""
    root = project_root()
    known = environments(root)
    if env not in known:
        raise ConfigError(
            [f"environment: unknown environment {env!r} (known: {', '.join(known)})"]
        )
    data = read_group_data(root / "group_data" / "all.py")
    data.update(read_group_data(root / "group_data" / f"{env}.py"))
    data.update(overrides or {})
    return data


def check(env: str, overrides: dict[str, Any] | None = None):
    """Validate an environment's data and secrets; raise ConfigError with every problem."""
    problems: list[str] = []
    config = None
    try:
        config = schema.validate(environment_data(env, overrides), secrets.NAMES)
    except ConfigError as e:
        problems.extend(e.problems)
        if e.problems[0].startswith("environment: unknown"):
            raise
    try:
        loaded = secrets.load(env)
    except ConfigError as e:
        problems.extend(e.problems)
        loaded = None
    if problems:
        raise ConfigError(problems)
    return config, loaded
