"""``pyinfra -y inventories/ENV.py ...``: how every command that acts on hosts runs pyinfra.

rollback, restore, backup, reprovision and bench all run the real pyinfra CLI, as an operator
would type it, rather than pyinfra's API: the same inventory, group data, validation and
output. In a process of its own, too: pyinfra's CLI patches the interpreter with gevent.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import click

from . import config as config_module


class UnknownEnvironment(click.ClickException):
    """ENV has no inventory with group data (the CLI shows ``Error: unknown environment``)."""


def run_pyinfra(env: str, *args: str, extra_env: Mapping[str, str] | None = None,
                yes: bool = True, **options: Any) -> subprocess.CompletedProcess:
    """Run ``pyinfra -y inventories/ENV.py ARGS...`` from the project root; never raise on its
    exit status.

    + env: the environment, whose inventory pyinfra reads
    + args: the rest of pyinfra's command line (a deploy file, options, ``exec -- COMMAND``)
    + extra_env: variables added to this process's environment (a narrower host list, what
      restore.py reads)
    + yes: ``-y``, because nothing is there to answer pyinfra's "apply these changes?";
      False for a preview (``--dry``), whose change detection ``-y`` would skip
    + options: passed to ``subprocess.run`` (``capture_output``, ``stdin``, ...)
    """
    if env not in config_module.environments():
        raise UnknownEnvironment(f"unknown environment {env!r}")
    return subprocess.run(
        [sys.executable, "-m", "pyinfra", *(["-y"] if yes else []), f"inventories/{env}.py",
         *args],
        cwd=config_module.project_root(), env={**os.environ, **(extra_env or {})}, check=False,
        **options,
    )
