"""The ``orchestra-infra`` command line."""

from __future__ import annotations

import json
import sys

import click

from . import cli_help, hosts, preview, runlock
from . import config as config_module
from . import secrets as secrets_module
from .backup_cli import backup, restore
from .chaos_cli import chaos
from .errors import ConfigError
from .lambda_cli import lambda_group
from .operator_cli import drift, history
from .sandbox_cli import sandbox

EXIT_INVALID = 2


@click.group(cls=cli_help.Main, context_settings={"help_option_names": ["-h", "--help"]},
             epilog="ENV is one of: {environments} (inventories/ENV.py with "
                    "group_data/ENV.py). Shell completion: "
                    "eval \"$(_ORCHESTRA_INFRA_COMPLETE=bash_source orchestra-infra)\" "
                    "(zsh_source, fish_source for the other shells; README.md, Install).")
@click.version_option(package_name="orchestra-infra", prog_name="orchestra-infra")
def main():
    """Provision and operate the Orchestra AI platform (pyinfra deploys in deploy.py)."""


@click.command()
@click.argument("env")
@click.option("--data", "pairs", multiple=True, metavar="KEY=VALUE",
              help="Override a data value, exactly as `pyinfra --data` would.")
@click.option("--json", "as_json", is_flag=True,
              help="One object on stdout: valid, problems, counts (for scripts and CI).")
def check(env: str, pairs: tuple[str, ...], as_json: bool):
    """Validate ENV's data and secrets without connecting to any host."""
    try:
        config, loaded = config_module.check(env, config_module.parse_overrides(list(pairs)))
    except ConfigError as e:
        if as_json:
            click.echo(json.dumps({"environment": env, "valid": False, "problems": e.problems}))
        else:
            for problem in e.problems:
                click.echo(problem, err=True)
        sys.exit(EXIT_INVALID)
    layout = hosts.check(env, config.mesh_network, set(loaded))
    if layout:
        if as_json:
            click.echo(json.dumps({"environment": env, "valid": False, "problems": layout}))
        else:
            for problem in layout:
                click.echo(problem, err=True)
        sys.exit(EXIT_INVALID)
    counts = {"settings": len(type(config).model_fields), "ports": len(config.port_table()),
              "secrets": len(loaded)}
    if as_json:
        click.echo(json.dumps({"environment": env, "valid": True, "problems": [], **counts}))
        return
    click.echo(f"{env}: valid ({counts['settings']} settings, {counts['ports']} ports, "
               f"{counts['secrets']} secrets)")


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
@click.option("--json", "as_json", is_flag=True,
              help="A list of objects (name, source, required, description), for scripts.")
def secrets_list(env: str, as_json: bool):
    """Show which secrets ENV has and where each comes from (never the values).

    A secret the file lacks is listed as unset (a required one also as missing); `check`
    says what else is wrong with the values.
    """
    try:
        rows = secrets_module.sources(env)
    except ConfigError as e:
        raise click.ClickException("\n".join(e.problems)) from None
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = [("NAME", "SOURCE", "DESCRIPTION")] + [
        (r["name"], r["source"] + (" (missing)" if r["required"] and r["source"] == "unset"
                                   else ""), r["description"]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(2)]
    for name, source, description in table:
        click.echo(f"{name:{widths[0]}}  {source:{widths[1]}}  {description}")


@click.command()
@click.option("--keep", is_flag=True, help="Leave the benchmark hosts running.")
@click.option("--image", "images", type=click.Choice(["ubuntu2204", "debian12"]),
              multiple=True, default=("ubuntu2204", "debian12"), show_default=True,
              help="The sandbox hosts' system, one after the other (Lambda: Ubuntu 22.04).")
@click.option("--layout", is_flag=True,
              help="One host against a multi-host layout (edge,app; app...; data): first and "
                   "no-op runs (Ubuntu 22.04).")
@click.option("--hosts", "count", default=4, show_default=True,
              help="Hosts of the --layout (never more run at a time).")
def bench(keep: bool, images: tuple[str, ...], layout: bool, count: int):
    """Time a bare-host first run against a plain script doing the same installs and builds,
    then no-op runs and previews of the converged host, on each --image in turn."""
    # The benchmark is not shipped with the package: it lives beside it, in the checkout.
    from benchmarks import layout as layout_bench
    from benchmarks import provision

    try:
        if layout:
            click.echo(layout_bench.run(keep=keep, count=count).report())
            return
        for image in dict.fromkeys(images):
            click.echo(provision.run(keep=keep, image=image).report())
    except (RuntimeError, ConfigError) as e:
        raise click.ClickException(str(e)) from None


@click.command()
@click.argument("env")
@preview.options
def rollback(env: str, dry: bool, limits: tuple[str, ...], verbose: int, as_json: bool,
             yes: bool, force_unlock: bool):
    """Make the release before the live one live again on ENV's app hosts.

    Shows the plan first (the release each host goes back to) and asks; -y does not ask.
    """
    sys.exit(preview.run(env, ["rollback.py"], f"Roll {env}'s app hosts back as shown above?",
                         f"orchestra-infra rollback {env}", dry=dry, limits=limits,
                         verbose=verbose, as_json=as_json, yes=yes, force_unlock=force_unlock))


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
@click.option("--dry", is_flag=True, help="Show the plan and stop: nothing is launched.")
@click.option("-v", "verbose", count=True, help="More of pyinfra's output (-vv, -vvv).")
@click.option("--json", "as_json", is_flag=True,
              help="pyinfra's JSON results of the deploy and restore (needs -y or --dry).")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force-unlock", is_flag=True,
              help="Break a run lock another run left on the new host.")
def reprovision(env: str, address: str | None, instance_type: str | None, region: str | None,
                ssh_key: str | None, filesystem: str | None, snapshot: str,
                pairs: tuple[str, ...], dry: bool, verbose: int, as_json: bool, yes: bool,
                force_unlock: bool):
    """Replace ENV's lost instance: new instance -> deploy -> restore -> status, timed.

    Shows the plan first (which instance is launched and billed, which snapshot comes
    back) and asks; -y does not ask. No --limit: the new host is the only one it touches.
    """
    from . import lambda_cloud
    from . import reprovision as reprovision_module

    launch = None
    if instance_type:
        if not (region and ssh_key):
            raise click.UsageError("--launch needs --region and --ssh-key")
        launch = reprovision_module.Launch(instance_type, region, ssh_key, filesystem)
    if as_json and not (yes or dry):
        raise click.UsageError("--json needs -y (or --dry): there is no one to answer")
    if launch is not None or address is not None:
        price = reprovision_module.price_cents(env, launch.instance_type) if launch else None
        for line in reprovision_module.plan(env, address, launch, snapshot, price):
            click.echo(line, err=as_json)
    if dry:
        sys.exit(0)
    if not yes:
        click.confirm("Go ahead?", abort=True)
    try:
        code = reprovision_module.run(
            env, address, launch, snapshot, pairs, echo=click.echo,
            flags=tuple(preview.pyinfra_flags((), verbose, as_json)),
            extra_env={runlock.FORCE_ENV: "1"} if force_unlock else None)
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
for command in (check, secrets, status, rollback, backup, restore, reprovision, bench, chaos,
                sandbox, lambda_group, drift, history):
    main.add_command(command)
cli_help.finish(main)
