"""The ``orchestra-infra`` command line."""

from __future__ import annotations

import os
import sys

import click

from . import config as config_module
from . import hosts
from . import secrets as secrets_module
from .backup_cli import backup, restore
from .errors import ConfigError
from .lambda_cli import lambda_group
from .pyinfra_run import run_pyinfra
from .sandbox_cli import sandbox

EXIT_INVALID = 2


@click.group()
def main():
    """Provision and operate the Orchestra AI platform (pyinfra deploys in deploy.py)."""


@click.command()
@click.argument("env")
@click.option("--data", "pairs", multiple=True, metavar="KEY=VALUE",
              help="Override a data value, exactly as `pyinfra --data` would.")
def check(env: str, pairs: tuple[str, ...]):
    """Validate ENV's data and secrets without connecting to any host."""
    try:
        config, loaded = config_module.check(env, config_module.parse_overrides(list(pairs)))
    except ConfigError as e:
        for problem in e.problems:
            click.echo(problem, err=True)
        sys.exit(EXIT_INVALID)
    layout = hosts.check(env, config.mesh_network, set(loaded))
    for problem in layout:
        click.echo(problem, err=True)
    if layout:
        sys.exit(EXIT_INVALID)
    ports = config.port_table()
    click.echo(f"{env}: valid ({len(type(config).model_fields)} settings, {len(ports)} ports, "
               f"{len(loaded)} secrets)")


@click.group()
def secrets():
    """Per-environment secrets, kept outside git (secrets/ENV.yaml, mode 0600)."""


@secrets.command("init")
@click.argument("env")
@click.option("--rotate", multiple=True, metavar="NAME", help="Generate NAME anew.")
def secrets_init(env: str, rotate: tuple[str, ...]):
    """Create ENV's secrets file, or add what it lacks; existing values are kept."""
    try:
        path, written = secrets_module.init(env, rotate)
    except ConfigError as e:
        raise click.ClickException("\n".join(e.problems)) from None
    what = ", ".join(written) if written else "nothing new"
    click.echo(f"{path}: generated {what}")


@secrets.command("list")
@click.argument("env")
def secrets_list(env: str):
    """Show which secrets ENV has and where each comes from (never the values)."""
    try:
        loaded = secrets_module.load(env)
    except ConfigError as e:
        raise click.ClickException("\n".join(e.problems)) from None
    for spec in secrets_module.SPECS:
        if secrets_module.env_var(spec.name) in os.environ:
            source = secrets_module.env_var(spec.name)
        elif spec.name in loaded:
            source = "file"
        else:
            source = "unset"
        click.echo(f"{spec.name:24} {source:32} {spec.description}")


@click.command()
@click.option("--keep", is_flag=True, help="Leave the two benchmark hosts running.")
@click.option("--image", type=click.Choice(["ubuntu2204", "debian12"]), default="ubuntu2204",
              show_default=True, help="The sandbox hosts' system (Lambda: Ubuntu 22.04).")
@click.option("--layout", is_flag=True,
              help="One host against a multi-host layout (edge,app; app...; data): first and "
                   "no-op runs (Ubuntu 22.04).")
@click.option("--hosts", "count", default=4, show_default=True,
              help="Hosts of the --layout (never more run at a time).")
def bench(keep: bool, image: str, layout: bool, count: int):
    """Time a bare-host first run against a plain install script, then a no-op run."""
    # The benchmark is not shipped with the package: it lives beside it, in the checkout.
    from benchmarks import layout as layout_bench
    from benchmarks import provision

    try:
        figures = layout_bench.run(keep=keep, count=count) if layout else provision.run(keep=keep,
                                                                          image=image)
    except (RuntimeError, ConfigError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(figures.report())


@click.command()
@click.argument("env")
def rollback(env: str):
    """Make the release before the live one live again on ENV's app hosts."""
    sys.exit(run_pyinfra(env, "rollback.py").returncode)


@click.command()
@click.argument("env")
@click.option("--json", "as_json", is_flag=True, help="A list of objects, for scripts.")
@click.option("--data", "pairs", multiple=True, metavar="KEY=VALUE",
              help="Override a data value, as the deploy was given it.")
def status(env: str, as_json: bool, pairs: tuple[str, ...]):
    """Every service on ENV's hosts in one table; exit 1 when anything is unhealthy."""
    from . import status as status_module

    try:
        overrides = config_module.parse_overrides(list(pairs))
        sys.exit(status_module.run(env, as_json, echo=click.echo, overrides=overrides))
    except ConfigError as e:
        for problem in e.problems:
            click.echo(problem, err=True)
        sys.exit(EXIT_INVALID)


@click.command()
@click.argument("env")
@click.option("--address", help="The new instance's address (made by hand or elsewhere).")
@click.option("--launch", "instance_type", metavar="TYPE",
              help="Launch an instance of TYPE on Lambda Cloud instead (e.g. gpu_1x_a10).")
@click.option("--region", help="With --launch: a region with capacity.")
@click.option("--ssh-key", help="With --launch: the SSH key's name at Lambda.")
@click.option("--filesystem", help="With --launch: the persistent file system (backups).")
@click.option("--snapshot", default="latest", show_default=True, help="Backup to restore.")
@click.option("--data", "pairs", multiple=True, metavar="KEY=VALUE",
              help="Override a data value for the deploy and restore (as `pyinfra --data`).")
def reprovision(env: str, address: str | None, instance_type: str | None, region: str | None,
                ssh_key: str | None, filesystem: str | None, snapshot: str,
                pairs: tuple[str, ...]):
    """Replace ENV's lost instance: new instance -> deploy -> restore -> status, timed."""
    from . import lambda_cloud
    from . import reprovision as reprovision_module

    launch = None
    if instance_type:
        if not (region and ssh_key):
            raise click.UsageError("--launch needs --region and --ssh-key")
        launch = reprovision_module.Launch(instance_type, region, ssh_key, filesystem)
    try:
        code = reprovision_module.run(env, address, launch, snapshot, pairs, echo=click.echo)
    except ConfigError as e:
        for problem in e.problems:
            click.echo(problem, err=True)
        sys.exit(EXIT_INVALID)
    except (reprovision_module.StageFailed, lambda_cloud.LambdaError) as e:
        raise click.ClickException(str(e)) from None
    sys.exit(code)


# Every command is a click command or group of its own, defined above or in a module named
# for it, and joins main here and nowhere else (a group's subcommands join that group with its
# decorator, as `secrets init` does).
for command in (check, secrets, status, rollback, backup, restore, reprovision, bench, sandbox,
                lambda_group):
    main.add_command(command)
