"""`orchestra-infra lambda ...`: a GPU instance on Lambda Cloud, from capacity to hosts file.

The steps an operator replacing a lost instance takes: see which types have capacity where,
launch one (with the persistent file system the backups live on), wait until it is active,
record its address in ``hosts/ENV`` (which ``inventories/ENV.py`` reads), open 80/443 in the
account's firewall, then run the deploy. The API key is the ``lambda_api_key`` secret of the
environment named (or ``ORCHESTRA_SECRET_LAMBDA_API_KEY``); ``ORCHESTRA_LAMBDA_API_URL``
points the commands at another API, such as ``standins.lambda_cloud``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Iterator

import click

from . import config as config_module
from . import hosts
from . import lambda_cloud as lc
from .errors import ConfigError

env_option = click.option("--env", default="prod", show_default=True,
                          help="Environment whose lambda_api_key secret is used.")


@contextlib.contextmanager
def _clean_errors(session: dict) -> Iterator[None]:
    """An API or configuration failure is a message and exit status 1, not a traceback."""
    try:
        yield
    except lc.LambdaError as e:
        message = f"Lambda Cloud: {e}"
        if e.code == lc.INVALID_API_KEY and session.get("source"):
            message += f" (the key used came from {session['source']})"
        raise click.ClickException(message) from None
    except ConfigError as e:
        raise click.ClickException("\n".join(e.problems)) from None
    except hosts.HostsError as e:
        raise click.ClickException(str(e)) from None


def _client(env: str, session: dict) -> lc.Client:
    key, session["source"] = lc.api_key(env)
    # Tests hand in a fake clock and sleep through click's context object.
    options = click.get_current_context().obj or {}
    return lc.Client(key, lc.base_url(), notice=lambda m: click.echo(m, err=True), **options)


@click.group("lambda")
def lambda_group() -> None:
    """Lambda Cloud GPU instances: capacity, launch, wait, terminate, firewall."""


json_option = click.option("--json", "as_json", is_flag=True,
                           help="A list of objects (the API's fields), for scripts.")


def _echo_json(items) -> None:
    click.echo(json.dumps([dataclasses.asdict(i) for i in items], indent=2))


@lambda_group.command("types")
@env_option
@click.option("--available", is_flag=True, help="Only the types with capacity somewhere.")
@json_option
def types_command(env: str, available: bool, as_json: bool) -> None:
    """Instance types, their price, and the regions that have capacity now."""
    session: dict = {}
    with _clean_errors(session):
        found = _client(env, session).instance_types()
    if as_json:
        return _echo_json([t for t in found if t.regions_with_capacity or not available])
    rows = [(t.name, str(t.gpus), str(t.vcpus), str(t.memory_gib),
             f"{t.price_cents_per_hour / 100:.2f}",
             ", ".join(r.name for r in t.regions_with_capacity) or "-")
            for t in found if t.regions_with_capacity or not available]
    _table(("TYPE", "GPUS", "VCPUS", "RAM_GIB", "USD/H", "REGIONS WITH CAPACITY"), rows)


@lambda_group.command("instances")
@env_option
@json_option
def instances_command(env: str, as_json: bool) -> None:
    """The account's instances: id, name, status, address, type, region, file system."""
    session: dict = {}
    with _clean_errors(session):
        found = _client(env, session).instances()
    if as_json:
        return _echo_json(found)
    _table(("ID", "NAME", "STATUS", "IP", "TYPE", "REGION", "FILESYSTEM"),
           [(i.id, i.name or "-", i.status, i.ip or "-", i.instance_type, i.region,
             ",".join(i.file_system_names) or "-") for i in found])


@lambda_group.command("launch")
@click.argument("env")
@click.option("--type", "instance_type", required=True, help="Instance type, e.g. gpu_1x_a10.")
@click.option("--region", required=True, help="Region with capacity (see `lambda types`).")
@click.option("--ssh-key", required=True, help="Name of an SSH key registered with Lambda.")
@click.option("--filesystem", help="Persistent file system to attach (same region); "
                                   "the backups belong on it.")
@click.option("--name", help="Instance name [default: orchestra-ENV].")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait until active and record the address in hosts/ENV.")
@click.option("--timeout", default=900.0, show_default=True, help="Seconds to wait.")
@click.option("--poll-interval", default=10.0, show_default=True, help="Seconds between polls.")
@click.option("--groups", default="", help="Groups for the hosts line, e.g. app,data "
                                           "[default: all].")
@click.option("--replace", is_flag=True,
              help="The new instance replaces every host in hosts/ENV (old lines kept as "
                   "comments).")
def launch_command(env: str, instance_type: str, region: str, ssh_key: str,
                   filesystem: str | None, name: str | None, wait: bool, timeout: float,
                   poll_interval: float, groups: str, replace: bool) -> None:
    """Launch one instance for ENV, wait until it is active, add it to hosts/ENV."""
    _check_environment(env)
    group_list = _groups(groups)
    if not filesystem:
        click.echo("warning: no --filesystem: nothing on this instance outlives it, "
                   "backups included", err=True)
    session: dict = {}
    with _clean_errors(session):
        client = _client(env, session)
        try:
            instance_id = client.launch(instance_type, region, ssh_key, filesystem,
                                        name or f"orchestra-{env}")
        except lc.LambdaError as e:
            if e.code == lc.INSUFFICIENT_CAPACITY:
                e.suggestion = _capacity_hint(client, instance_type) or e.suggestion
            elif e.code in (lc.UNREACHABLE, "orchestra/server-error"):
                e.suggestion = ("the launch may have gone through: check `orchestra-infra "
                                "lambda instances` before launching again")
            raise
        click.echo(f"Launched {name or f'orchestra-{env}'}: instance {instance_id} "
                   f"({instance_type} in {region}); it bills until terminated.")
        if not wait:
            click.echo(f"Record its address once active: orchestra-infra lambda wait {env} "
                       f"{instance_id}")
            return
        _wait_and_record(client, env, instance_id, timeout, poll_interval, group_list,
                         replace)


@lambda_group.command("wait")
@click.argument("env")
@click.argument("instance_id")
@click.option("--timeout", default=900.0, show_default=True, help="Seconds to wait.")
@click.option("--poll-interval", default=10.0, show_default=True, help="Seconds between polls.")
@click.option("--groups", default="", help="Groups for the hosts line [default: all].")
@click.option("--replace", is_flag=True, help="Replace every other host in hosts/ENV.")
def wait_command(env: str, instance_id: str, timeout: float, poll_interval: float,
                 groups: str, replace: bool) -> None:
    """Wait until INSTANCE_ID is active, then add its address to hosts/ENV."""
    _check_environment(env)
    group_list = _groups(groups)
    session: dict = {}
    with _clean_errors(session):
        _wait_and_record(_client(env, session), env, instance_id, timeout, poll_interval,
                         group_list, replace)


@lambda_group.command("terminate")
@click.argument("instance_ids", metavar="ID...", nargs=-1, required=True)
@env_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True,
              help="Terminate even an instance whose address a hosts/* file lists.")
def terminate_command(instance_ids: tuple[str, ...], env: str, yes: bool, force: bool) -> None:
    """Terminate instances: their local disks are lost, attached file systems are kept.

    An instance whose address any ``hosts/*`` file lists is serving an environment: it is
    refused unless ``--force`` is given (a stale line is better removed first).
    """
    session: dict = {}
    with _clean_errors(session):
        client = _client(env, session)
        found = [client.instance(i) for i in instance_ids]
        for i in found:
            click.echo(f"{i.id}  {i.name or '-'}  {i.status}  {i.ip or '-'}  "
                       f"{i.instance_type}  {i.region}")
        in_use = _in_use(found)
        if in_use and not force:
            raise click.ClickException("refusing to terminate " + "; ".join(in_use)
                                       + ". Pass --force to terminate anyway")
        for line in in_use:
            click.echo(f"warning (--force): {line}", err=True)
        if not yes:
            click.confirm(f"Terminate {len(found)} instance(s)? Local disks are lost",
                          abort=True)
        for i in client.terminate(instance_ids):
            click.echo(f"Terminated {i.id} ({i.name or '-'}, {i.ip or 'no address'}).")
        listed = _listed_addresses(env)
        for i in found:
            if i.ip and i.ip in listed:
                click.echo(f"{hosts.hosts_path(env)} still lists {i.ip}: remove it, or "
                           "launch its successor with --replace.")


@lambda_group.command("open-web-ports")
@env_option
@click.option("--source", default="0.0.0.0/0", show_default=True,
              help="Network (CIDR) allowed in.")
def open_web_ports_command(env: str, source: str) -> None:
    """Allow tcp 80 and 443 in the account's firewall, keeping every existing rule.

    Lambda's firewall rules are account-wide (a new account allows only 22) and do not
    apply in us-south-1. Running it again changes nothing.
    """
    session: dict = {}
    with _clean_errors(session):
        added = _client(env, session).open_ports((80, 443), source)
    if added:
        click.echo("Opened " + ", ".join(f"{r.protocol} {r.port_range[0]}" for r in added)
                   + f" from {source}; existing rules kept.")
    else:
        click.echo(f"The firewall already allows tcp 80 and 443 from {source}: no change.")


@lambda_group.command("open-mesh-port")
@click.argument("env")
def open_mesh_port_command(env: str) -> None:
    """Allow WireGuard's udp port between ENV's instances (each address in hosts/ENV), keeping
    every existing rule. Run it again after adding a host; nothing changes otherwise."""
    found = hosts.read(env)
    if found is None:
        raise click.ClickException(f"no hosts for {env}: write hosts/{env}")
    addresses = [address for _, address, _ in hosts.entries(*found)]
    port = config_module.environment_data(env)["wireguard_port"]
    session: dict = {}
    with _clean_errors(session):
        added = _client(env, session).open_mesh_port(port, addresses)
    if added:
        click.echo("Opened " + ", ".join(f"udp {r.port_range[0]} from {r.source_network}"
                                         for r in added) + "; existing rules kept.")
    else:
        click.echo(f"The firewall already allows udp {port} between "
                   f"{env}'s hosts: no change.")


# --- helpers ----------------------------------------------------------------------------------


def _check_environment(env: str) -> None:
    """Before launching anything: ENV exists and its inventory reads hosts/ENV."""
    known = config_module.environments()
    if env not in known:
        raise click.ClickException(f"unknown environment {env!r} (known: {', '.join(known)})")
    inventory = config_module.project_root() / "inventories" / f"{env}.py"
    if "orchestra_infra.hosts" not in inventory.read_text():
        raise click.ClickException(f"inventories/{env}.py does not read hosts/{env}: a launched "
                                   "instance could not join it")


def _groups(value: str) -> list[str]:
    groups = [g for g in value.split(",") if g]
    unknown = [g for g in groups if g not in hosts.GROUPS]
    if unknown:
        raise click.BadParameter(f"unknown group {', '.join(unknown)} (expected some of "
                                 f"{','.join(hosts.GROUPS)})", param_hint="--groups")
    return groups


def _wait_and_record(client: lc.Client, env: str, instance_id: str, timeout: float,
                     interval: float, groups: list[str], replace: bool) -> None:
    seen: list[str] = []

    def progress(instance: lc.Instance) -> None:
        if not seen or seen[-1] != instance.status:
            seen.append(instance.status)
            click.echo(f"  {instance.id}: {instance.status}")

    instance = client.wait_active(instance_id, timeout, interval, progress)
    changed = hosts.record(env, instance.ip, groups, replace)
    path = hosts.hosts_path(env)
    click.echo(f"{path}: {'added' if changed else 'already lists'} {instance.ip}")
    if os.environ.get(hosts.env_var(env)):
        click.echo(f"warning: {hosts.env_var(env)} is set and wins over {path}", err=True)
    click.echo(f"Next: orchestra-infra lambda open-web-ports --env {env}, then "
               f"pyinfra -y inventories/{env}.py deploy.py")


def _capacity_hint(client: lc.Client, instance_type: str) -> str | None:
    try:
        types = {t.name: t for t in client.instance_types()}
    except lc.LambdaError:
        return None
    if instance_type not in types:
        return f"there is no instance type {instance_type!r}; see `orchestra-infra lambda types`"
    regions = [r.name for r in types[instance_type].regions_with_capacity]
    if regions:
        return f"{instance_type} has capacity now in: {', '.join(regions)}"
    others = [t.name for t in types.values() if t.regions_with_capacity]
    return (f"{instance_type} has no capacity in any region now; types that have some: "
            f"{', '.join(others) or 'none'}")


def _in_use(instances: list[lc.Instance]) -> list[str]:
    """What speaks against terminating these: every hosts/* file listing one of their
    addresses, and any hosts file that cannot be read (it might)."""
    directory = config_module.project_root() / "hosts"
    listed: dict[str, list[str]] = {}
    unreadable = []
    for path in sorted(directory.glob("*")) if directory.is_dir() else []:
        if not path.is_file() or path.name.startswith(".") or path.name == "README.md":
            continue
        try:
            groups = hosts.parse(path.read_text(), str(path))
        except (OSError, UnicodeDecodeError, hosts.HostsError) as e:
            unreadable.append(f"{path} cannot be read ({e}), it may list them")
            continue
        for address in {a for group in groups.values() for a in group}:
            listed.setdefault(address, []).append(f"hosts/{path.name}")
    reasons = [f"{i.id} ({i.ip}): listed in {', '.join(listed[i.ip])}"
               for i in instances if i.ip and i.ip in listed]
    return reasons + unreadable


def _listed_addresses(env: str) -> set[str]:
    path = hosts.hosts_path(env)
    if not path.exists():
        return set()
    try:
        return {a for group in hosts.parse(path.read_text(), str(path)).values() for a in group}
    except hosts.HostsError:
        return set()


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
