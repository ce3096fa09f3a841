"""``orchestra-infra drift ENV`` and ``orchestra-infra history ENV``: whether the hosts still
match the repository, and what ran on them (orchestra_infra/drift.py, history.py)."""

from __future__ import annotations

import json
import socket
import sys

import click

from . import config as config_module
from .errors import ConfigError

EXIT_INVALID = 2


@click.command()
@click.argument("env")
@click.option("--json", "as_json", is_flag=True, help="One object, for scripts.")
@click.option("--alert", is_flag=True,
              help="Send the summary to Monit's webhook and e-mail, once per new drift or "
                   "failure of the check.")
@click.option("--data", "pairs", multiple=True, metavar="KEY=VALUE",
              help="Override a data value, as the deploy was given it.")
def drift(env: str, as_json: bool, alert: bool, pairs: tuple[str, ...]):
    """Preview a deploy on every host of ENV and report what would change.

    Exit 0: every host matches the repository; 1: drift; 2: the preview failed.
    """
    from . import drift as drift_module

    try:
        config, secrets = config_module.check(env, config_module.parse_overrides(list(pairs)))
    except ConfigError as e:
        for problem in e.problems:
            click.echo(problem, err=True)
        sys.exit(EXIT_INVALID)
    from . import status_hosts

    overrides = config_module.parse_overrides(list(pairs))
    try:
        names = [t.name for t in status_hosts.targets(
            env, config_module.environment_data(env, overrides))]
    except ConfigError as e:
        for problem in e.problems:
            click.echo(problem, err=True)
        sys.exit(EXIT_INVALID)
    report = drift_module.check(env, list(pairs), secrets.values(), names)
    click.echo(json.dumps(report.as_json(), indent=2) if as_json else report.text())
    if alert and drift_module.should_alert(report, drift_module.state_file(env)):
        email = None
        if config.alert_email_to and config.alert_smtp_host:
            email = {"host": config.alert_smtp_host, "port": config.alert_smtp_port,
                     "sender": config.alert_email_from
                     or f"orchestra-infra@{socket.gethostname()}",
                     "to": list(config.alert_email_to)}
        drift_module.alert(report, secrets.get("alert_webhook_url"), email,
                           echo=lambda line: click.echo(line, err=True))
    sys.exit(report.exit_code)


@click.command()
@click.argument("env")
@click.option("--json", "as_json", is_flag=True, help="A list of objects, for scripts.")
@click.option("-n", "--last", "limit", type=click.IntRange(1, 10000), default=20,
              show_default=True, help="Runs per host.")
def history(env: str, as_json: bool, limit: int):
    """The runs recorded on ENV's hosts (who, from where, which commit and release, how
    many changes, the outcome), and any run lock held now."""
    from . import history as history_module

    try:
        sys.exit(history_module.run(env, as_json, limit, echo=click.echo))
    except ConfigError as e:
        for problem in e.problems:
            click.echo(problem, err=True)
        sys.exit(EXIT_INVALID)
