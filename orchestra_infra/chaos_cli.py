"""``orchestra-infra chaos``: the chaos soak (a benchmark, like ``bench``)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .errors import ConfigError

EXIT_INVALID = 2


@click.command()
@click.argument("env")
@click.option("--minutes", type=click.FloatRange(min=2), default=30, show_default=True,
              help="How long the load runs.")
@click.option("--seed", type=int, default=1, show_default=True,
              help="The fault schedule's seed: the same seed, the same faults at the same times.")
@click.option("--faults", "fault_list", default=None,
              help="Fault classes, comma-separated (kill,hang,stop,restart,disk,reboot); "
                   "default: the quick ones (kill,hang,stop,restart).")
@click.option("--every", "mean_interval", type=click.FloatRange(min=10), default=120,
              show_default=True, help="Mean seconds between faults.")
@click.option("--rate", type=click.FloatRange(min=0.5, max=200), default=8, show_default=True,
              help="Requests per second through the edge.")
@click.option("--host", default=None, help="The host the faults hit (default: the first "
              "host that runs the app and the data).")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a PNG of success rate and latency over time (needs matplotlib).")
@click.option("--outcomes", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write every request's outcome (JSON lines), for a closer look.")
@click.option("--alerts-port", type=click.IntRange(1, 65535), default=None,
              help="Count Monit's alerts per fault with a webhook receiver on the host's "
                   "loopback at this port (alert_webhook_url must point at it).")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@click.option("--i-mean-prod", is_flag=True, help="Allow an environment named prod.")
def chaos(env, minutes, seed, fault_list, mean_interval, rate, host, plot, outcomes, alerts_port,
          as_json, i_mean_prod):
    """Load ENV's edge, inject faults on a seeded schedule, judge availability and data."""
    from benchmarks.chaos import run as chaos_run
    from benchmarks.chaos.schedule import CLASSES, QUICK

    if env == "prod" and not i_mean_prod:
        raise click.UsageError("chaos breaks things on purpose: add --i-mean-prod to run it "
                               "against prod")
    kinds = tuple(k for k in (fault_list or ",".join(QUICK)).split(",") if k)
    unknown = [k for k in kinds if k not in CLASSES]
    if unknown or not kinds:
        raise click.BadParameter(f"choose from {', '.join(CLASSES)}", param_hint="--faults")
    options = chaos_run.Options(env=env, minutes=minutes, seed=seed, kinds=kinds,
                                mean_interval=mean_interval, rate=rate, host=host, plot=plot,
                                alerts_port=alerts_port, outcomes=outcomes)
    try:
        verdict, _, _ = chaos_run.run(options, echo=lambda line: click.echo(line, err=as_json))
    except ConfigError as e:
        for problem in e.problems:
            click.echo(problem, err=True)
        sys.exit(EXIT_INVALID)
    except (ValueError, RuntimeError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(chaos_run.as_json(verdict) if as_json else chaos_run.report(verdict))
    sys.exit(0 if verdict.passed else 1)
