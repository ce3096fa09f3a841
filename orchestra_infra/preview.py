"""Preview, then confirm, then run: how ``rollback``, ``restore`` and ``backup`` run pyinfra.

    orchestra-infra rollback prod             # the plan (pyinfra's preview), a question, the run
    orchestra-infra rollback prod --dry       # the plan only: nothing changes, no lock taken
    orchestra-infra rollback prod -y --json   # no question; pyinfra's JSON on stdout
    orchestra-infra rollback prod --limit 203.0.113.10 -v

The plan is pyinfra's own change detection (``--dry`` without ``-y``): every operation that
would run, on which host, with what the deploy files log while planning (restore.py: the
snapshot's id and date and the data it replaces; rollback.py: the release made live). The
run itself is ``pyinfra -y``, which takes the run lock (operations/runlock.py):
``--force-unlock`` breaks a lock left by a dead run.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping

import click

from .pyinfra_run import run_pyinfra
from .runlock import COMMAND_ENV, FORCE_ENV


def options(command: Callable) -> Callable:
    """The flags every previewed command takes, pyinfra's among them."""
    for decorator in reversed((
        click.option("--dry", is_flag=True, help="Show the plan and stop: nothing changes."),
        click.option("--limit", "limits", multiple=True, metavar="HOST|GROUP",
                     help="Only these hosts or groups (pyinfra's --limit)."),
        click.option("-v", "verbose", count=True, help="More of pyinfra's output (-vv, -vvv)."),
        click.option("--json", "as_json", is_flag=True,
                     help="pyinfra's JSON results on stdout (needs -y or --dry)."),
        click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation."),
        click.option("--force-unlock", is_flag=True,
                     help="Break a run lock another run left (named in the refusal)."),
    )):
        command = decorator(command)
    return command


def pyinfra_flags(limits: tuple[str, ...], verbose: int, as_json: bool) -> list[str]:
    flags = [arg for limit in limits for arg in ("--limit", limit)]
    if verbose:
        flags.append("-" + "v" * min(verbose, 3))
    if as_json:
        flags.append("--json")
    return flags


def run(env: str, deploy_args: list[str], question: str, command: str, *, dry: bool,
        limits: tuple[str, ...], verbose: int, as_json: bool, yes: bool, force_unlock: bool,
        extra_env: Mapping[str, str] | None = None,
        confirm: Callable[[str], object] | None = None) -> int:
    """Show the plan, ask ``question`` (unless ``yes``), run; the run's exit status.

    ``deploy_args``: what follows the inventory and the flags (``restore.py``, or
    ``exec -- COMMAND``); ``command``: what the history calls the run."""
    if as_json and not (yes or dry):
        raise click.UsageError("--json needs -y (or --dry): there is no one to answer")
    env_vars = {**(extra_env or {}), COMMAND_ENV: command}
    if force_unlock:
        env_vars[FORCE_ENV] = "1"
    flags = pyinfra_flags(limits, verbose, as_json)
    if dry or not yes:
        plan = run_pyinfra(env, *flags, "--dry", *deploy_args, yes=False, extra_env=env_vars,
                           stdin=subprocess.DEVNULL)
        if dry or plan.returncode != 0:
            return plan.returncode
        (confirm or (lambda q: click.confirm(q, abort=True)))(question)
    return run_pyinfra(env, *flags, *deploy_args, extra_env=env_vars).returncode
