"""`orchestra-infra sandbox ...`: local sandbox hosts that behave like a bare cloud instance."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator

import click

from . import sandbox as sb


@contextlib.contextmanager
def _clean_errors() -> Iterator[None]:
    """A failed sandbox operation is a one-line message and a non-zero exit, not a traceback."""
    try:
        yield
    except sb.SandboxError as e:
        raise click.ClickException(str(e)) from None


@click.group()
def sandbox() -> None:
    """Local disposable hosts (systemd-nspawn + network namespaces) for trying deploys."""


@sandbox.command()
@click.option("--hosts", "count", default=1, show_default=True, help="How many hosts.")
@click.option(
    "--image",
    type=click.Choice(sorted(sb.IMAGE_SUITES)),
    default=sb.DEFAULT_IMAGE,
    show_default=True,
    help="Ubuntu 22.04 (a Lambda instance) or Debian 12. SANDBOX_MIRROR: another Ubuntu archive.",
)
def up(count: int, image: str) -> None:
    """Start hosts orch-1..orch-N (running ones are left alone)."""
    with _clean_errors():
        sb.require_root()
        sb.check_tools()
        if not sb.image_tarball(image).exists():
            click.echo(f"Building the {image} root file system (once; about a minute)...")
        started = time.monotonic()
        hosts = sb.up(count=count, image=image)
    for host in hosts:
        click.echo(f"{host.name}  {host.address}  {host.image}  user {host.user}")
    click.echo(f"{len(hosts)} sandbox host(s) up in {time.monotonic() - started:.0f} s.")
    click.echo("Log in with: orchestra-infra sandbox ssh NAME")


@sandbox.command()
@click.argument("names", nargs=-1)
def down(names: tuple[str, ...]) -> None:
    """Stop and delete hosts (all of them when no NAME is given)."""
    with _clean_errors():
        sb.down(list(names) or None)
    click.echo(f"Removed {', '.join(names) if names else 'all sandbox hosts'}.")


@sandbox.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(as_json: bool) -> None:
    """List hosts, their addresses and whether they run."""
    with _clean_errors():
        hosts = sb.status()
    if as_json:
        click.echo(json.dumps(hosts, indent=2))
    elif not hosts:
        click.echo("No sandbox hosts (start some with: orchestra-infra sandbox up).")
    else:
        for h in hosts:
            state = "running" if h["running"] else "stopped"
            click.echo(f"{h['name']:<16} {h['address']:<15} {h['image']:<11} {state}")


@sandbox.command(context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def ssh(name: str, command: tuple[str, ...]) -> None:
    """Log in to NAME as ubuntu, or run COMMAND there (after --)."""
    with _clean_errors():
        argv = sb.ssh_command(name) + list(command)
    os.execvp(argv[0], argv)


@sandbox.command()
@click.argument("name")
def reboot(name: str) -> None:
    """Restart NAME from the same disk and wait for SSH."""
    started = time.monotonic()
    with _clean_errors():
        sb.reboot(name)
    click.echo(f"{name} rebooted in {time.monotonic() - started:.0f} s.")
