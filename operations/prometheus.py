"""Metrics: Prometheus, Alertmanager and the exporters, from the distro's packages.

Everywhere: the node exporter (with the textfile directory the backup job writes its last
success to, and systemd unit states) and the blackbox exporter, which probes every health
endpoint of the port table on its own host. Where the data runs: the Postgres exporter (a
``pg_monitor`` role with its own password, as pg_hba.conf wants for every role but
postgres) and the Redis exporter (an ACL user of its own). At the edge: the nginx exporter
(stub_status) and mtail, which counts responses by status from the access log, as
stub_status has no status codes.

One Prometheus and one Alertmanager per environment, on the host in group ``metrics`` (the
first edge host by default, orchestra_infra/hosts.py), both on its loopback; Alertmanager's
cluster listener is off. With one host every exporter is on loopback too. In a multi-host
layout each host's exporters listen on its private address instead, the firewall lets only
the metrics host's private address reach them (on the mesh interface), and the environment's
Prometheus scrapes every host there, each target labelled with its ``host``; a host that no
longer runs it has Prometheus and Alertmanager removed. The admin hosts read that Prometheus
through ``orchestra-prometheus-share.socket`` (its private address, peers only).

Configs are checked in place (promtool, amtool, the exporters' own checks) and rolled
back when the check fails; a changed config reloads its daemon, changed arguments
(/etc/default/<package>, what the packaged units read) restart it. ``FLAVOURS`` holds
what differs between the distros' packages.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyinfra import host
from pyinfra.api import (
    DeployError,
    OperationError,
    QuoteString,
    StringCommand,
    deploy,
    operation,
)
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import apt

from operations import facts, postgres, render, system, wireguard
from operations.facts import PSQL, PostgresRoleMembership
from orchestra_infra import catalog

ETC = "/etc/prometheus"
RULES = f"{ETC}/rules/orchestra.yml"
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
NGINX_ACCESS_LOG = "/var/log/nginx/access.log"
# The Postgres role and Redis ACL user the exporters log in as (passwords: the secrets
# postgres_exporter_password and redis_exporter_password).
EXPORTER_USER = "prometheus"
WEBHOOK_SECRET = "alert_webhook_url"
LOOPBACK = "127.0.0.1"
# The environment's Prometheus, for the admin hosts, on the metrics host's private address.
SHARE = "orchestra-prometheus-share"


@dataclass(frozen=True)
class Flavour:
    """What one distro packages, where it matters to the files written here."""

    # Upstream versions as packaged (major.minor), for the record and the tests.
    versions: dict[str, str]
    # Go's flag package (nginx exporter 0.x) spells flags with one dash; kingpin (1.x,
    # and every Prometheus-project binary) with two.
    nginx_exporter_flag: str


FLAVOURS = {
    # Every flag written here checked against each binary's --help from these packages.
    ("Debian", 12): Flavour(
        versions={"prometheus": "2.42", "alertmanager": "0.25", "node_exporter": "1.5",
                  "blackbox_exporter": "0.23", "postgres_exporter": "0.11",
                  "redis_exporter": "1.45", "nginx_exporter": "0.11", "mtail": "3.0.0-rc50"},
        nginx_exporter_flag="-",
    ),
    # jammy (universe): the exporters are older than Debian 12's (nginx exporter still
    # 0.x); every flag written here predates them. Not yet run on a jammy host.
    ("Ubuntu", 22): Flavour(
        versions={"prometheus": "2.31", "node_exporter": "1.3"},
        nginx_exporter_flag="-",
    ),
}

def flavour() -> Flavour:
    distro = facts.planned(LinuxDistribution)
    found = FLAVOURS.get((distro["name"], distro["major"]))
    if found is None:
        raise DeployError(f"{host.name}: metrics are set up for "
                          f"{', '.join(f'{n} {v}' for n, v in FLAVOURS)} only, not "
                          f"{distro['name']} {distro['major']}")
    return found


def _monitoring(config, groups) -> list:
    return [s for s in catalog.services(config, groups) if s.component == "prometheus"]


def packages(config, groups) -> list[str]:
    """What the host's groups need (``groups``: e.g. ``host.groups``): a package per daemon."""
    # The node exporter reads unit states over the system bus.
    return [s.unit for s in _monitoring(config, groups)] + ["dbus"]


def listen_address(config) -> str:
    """Where this host's exporters listen: loopback, or in a multi-host layout its private
    address, where the environment's Prometheus scrapes them."""
    return wireguard.private_address(config) if wireguard.enabled() else LOOPBACK


def metrics_host():
    """The inventory's host in group metrics (None without one)."""
    found = wireguard.group_hosts("metrics")
    return found[0] if found else None


def prometheus_url(config) -> str:
    """Where this host's admin reads the environment's Prometheus: its loopback on the
    metrics host (and with one host), else the metrics host's share on the mesh."""
    found = metrics_host()
    if not wireguard.enabled() or found is None or found.name == host.name:
        return f"http://{LOOPBACK}:{config.prometheus_port}"
    return f"http://{wireguard.private_address(config, found)}:{config.prometheus_port}"


def alertmanager_url(config) -> str:
    """Where this host's admin and status document read the alerts firing: the metrics
    host's Alertmanager on its loopback; nowhere on another host (the metrics host's
    document carries every alert of the environment, each labelled with its host)."""
    found = metrics_host()
    if wireguard.enabled() and (found is None or found.name != host.name):
        return ""
    return f"http://{LOOPBACK}:{config.alertmanager_port}"


def scrape_jobs(config, targets) -> list[dict]:
    """Every daemon the environment's Prometheus scrapes, by job name in the catalogue's
    order, with its targets on every host (``targets``: as :func:`targets` lists them)."""
    jobs: dict[str, list[dict]] = {}
    for groups, label, address, _ in targets:
        for s in _monitoring(config, groups):
            # Prometheus and Alertmanager listen on the metrics host's loopback.
            where = LOOPBACK if s.group == "metrics" else address
            jobs.setdefault(s.exporter, []).append({"address": f"{where}:{s.port}",
                                                    "host": label})
    order = [s.exporter for s in _monitoring(config, catalog.GROUPS)]
    return [{"name": name, "targets": jobs[name]} for name in sorted(jobs, key=order.index)]


def probes(config, targets) -> list[dict]:
    """Every health endpoint of every host, from the catalogue: each a target of the
    blackbox exporter on its host (which probes its own loopback)."""
    found = []
    for groups, label, address, _ in targets:
        probed = [s for s in catalog.services(config, groups) if s.probe]
        # The apps first: the order earlier releases wrote, so that upgrading rewrites
        # nothing (and does not restart Prometheus).
        probed.sort(key=lambda s: ("app", "data", "edge").index(s.group))
        found += [{"service": s.monit or s.name, "url": s.probe.url, "module": s.probe_module,
                   "host": label, "blackbox": f"{address}:{config.blackbox_exporter_port}"}
                  for s in probed]
    return found


def targets(config, groups) -> list[tuple[tuple[str, ...], str | None, str, object]]:
    """(groups, label, exporters' address, host) of each host the environment's Prometheus
    scrapes: this host alone on loopback, or every host of a multi-host layout at its
    private address, labelled with its name."""
    if not wireguard.enabled():
        return [(tuple(groups), None, LOOPBACK, host)]
    return [(tuple(other.groups), other.name, wireguard.private_address(config, other), other)
            for other in wireguard.every_host()]


def skip_tls_verify(config) -> bool:
    """A self-signed certificate cannot be verified; anything else is, unless told."""
    if config.prometheus_probe_skip_tls_verify is not None:
        return config.prometheus_probe_skip_tls_verify
    return config.nginx_tls == "selfsigned"


def watched_units(config, groups, postgres_major: int | None) -> list[str]:
    """The stack's own units: the node exporter reports their state."""
    return sorted(s.unit for s in catalog.services(config, groups, postgres_major)
                  if s.manager == "systemd" and s.unit and not s.optional)


def units_regex(units: list[str]) -> str:
    """The units the node exporter reports and the ServiceDown rule watches (anchored by
    both)."""
    return "(" + "|".join(units) + ")[.]service"


def daemon_args(config, groups, flavour: Flavour, units: list[str],
                listen: str = LOOPBACK) -> dict[str, str]:
    """The ARGS line of each package's /etc/default file, by package (``listen``: the
    exporters' address)."""
    loopback = LOOPBACK  # Prometheus, Alertmanager, and what the nginx exporter reads
    args = {
        "prometheus": [
            f"--config.file={ETC}/prometheus.yml",
            f"--web.listen-address={loopback}:{config.prometheus_port}",
            "--storage.tsdb.path=/var/lib/prometheus/metrics2/",
            f"--storage.tsdb.retention.time={config.prometheus_retention_time}",
            f"--storage.tsdb.retention.size={config.prometheus_retention_size}",
        ],
        "prometheus-alertmanager": [
            f"--config.file={ETC}/alertmanager.yml",
            "--storage.path=/var/lib/prometheus/alertmanager/",
            f"--web.listen-address={loopback}:{config.alertmanager_port}",
            "--cluster.listen-address=",  # one instance: no gossip port (9094) at all
        ],
        "prometheus-node-exporter": [
            f"--web.listen-address={listen}:{config.node_exporter_port}",
            f"--collector.textfile.directory={TEXTFILE_DIR}",
            "--collector.systemd",
            # A regex, anchored by the exporter; [.] as a backslash would need escaping
            # twice (the env file, then the unit's $ARGS).
            f"--collector.systemd.unit-include={units_regex(units)}",
        ],
        "prometheus-blackbox-exporter": [
            f"--config.file={ETC}/blackbox.yml",
            f"--web.listen-address={listen}:{config.blackbox_exporter_port}",
        ],
    }
    if "data" in groups:
        args["prometheus-postgres-exporter"] = [
            f"--web.listen-address={listen}:{config.postgres_exporter_port}"]
        args["prometheus-redis-exporter"] = [
            f"--web.listen-address={listen}:{config.redis_exporter_port}"]
    if "edge" in groups:
        dash = flavour.nginx_exporter_flag
        args["prometheus-nginx-exporter"] = [
            f"{dash}nginx.scrape-uri=http://{loopback}:{config.nginx_stub_status_port}"
            "/stub_status",
            f"{dash}web.listen-address={listen}:{config.nginx_exporter_port}",
        ]
    return {package: " ".join(words) for package, words in args.items()}


def webhook_configured() -> bool:
    try:
        return bool(render.secret_value(WEBHOOK_SECRET))
    except OperationError:
        return False


@deploy("Metrics")
def configure(config, groups):
    """The exporters for what ``groups`` run on this host; on the metrics host, the
    environment's Prometheus and Alertmanager."""
    distro = flavour()
    data, edge = "data" in groups, "edge" in groups
    major = postgres.major_version(config) if data else None
    units = watched_units(config, groups, major)
    args = daemon_args(config, groups, distro, units, listen_address(config))

    system.directory(name=f"Create {ETC}/rules", path=f"{ETC}/rules")
    # The backup job writes its last success here; the node exporter serves it.
    system.directory(name=f"Create {TEXTFILE_DIR}", path=TEXTFILE_DIR)

    if data:
        postgres.role(name=f"Create PostgreSQL role {EXPORTER_USER} for the exporter",
                      role=EXPORTER_USER, password_secret="postgres_exporter_password")
        role_membership(name=f"Let {EXPORTER_USER} read the monitoring views (pg_monitor)",
                        role=EXPORTER_USER, member_of="pg_monitor")

    _daemon(config, "prometheus-node-exporter", args)
    blackbox = render.template(
        name="Configure the blackbox exporter's probes",
        src="prometheus/etc/prometheus/blackbox.yml.j2",
        dest=f"{ETC}/blackbox.yml",
        context={"config": config, "skip_verify": skip_tls_verify(config)},
        validate=f"prometheus-blackbox-exporter --config.check --config.file={ETC}/blackbox.yml",
    )
    _daemon(config, "prometheus-blackbox-exporter", args, reload_when=[blackbox])
    if data:
        _daemon(config, "prometheus-postgres-exporter", args, secret=True)
        _daemon(config, "prometheus-redis-exporter", args, secret=True)
    if edge:
        _daemon(config, "prometheus-nginx-exporter", args)
        _mtail(config)

    if "metrics" in groups:
        _environment(config, groups, args, major)
    elif wireguard.enabled():
        # The environment's Prometheus moved to the metrics host (or this host left it).
        apt.packages(name="Remove Prometheus and Alertmanager (they run on the metrics host)",
                     packages=["prometheus", "prometheus-alertmanager"], present=False)


def _environment(config, groups, args: dict[str, str], major: int | None) -> None:
    """The environment's Prometheus (every host's exporters) and Alertmanager (``major``:
    this host's PostgreSQL major version, when it is the data host)."""
    several = wireguard.enabled()
    scraped = targets(config, groups)
    every = {g for host_groups, *_ in scraped for g in host_groups}

    def cluster(host_groups, other) -> int | None:
        """The PostgreSQL major version of a data host (it names the cluster's unit)."""
        if "data" not in host_groups:
            return None
        return major if other.name == host.name else postgres.major_version(config, other)

    # Every stack unit of every host (each node exporter reports its own host's).
    units = sorted({unit for host_groups, _, _, other in scraped
                    for unit in watched_units(config, host_groups, cluster(host_groups, other))})
    webhook = webhook_configured()
    alertmanager = render.template(
        name="Configure Alertmanager ({} receiver)".format("webhook" if webhook else "null"),
        src="prometheus/etc/prometheus/alertmanager.yml.j2",
        dest=f"{ETC}/alertmanager.yml",
        context={"webhook": webhook},
        group="prometheus", mode="640", secret=True,
        validate=f"amtool check-config {ETC}/alertmanager.yml >/dev/null",
    )
    _daemon(config, "prometheus-alertmanager", args, reload_when=[alertmanager])

    rules = render.template(
        name="Define the alert rules",
        src="prometheus/etc/prometheus/rules/orchestra.yml.j2",
        dest=RULES,
        context={"config": config, "data": "data" in every, "edge": "edge" in every,
                 "units_regex": units_regex(units), "several": several},
        validate=f"promtool check rules {RULES} >/dev/null",
    )
    scrape = render.template(
        name="Configure Prometheus (scrape targets from the port table{})".format(
            ", every host's" if several else ""),
        src="prometheus/etc/prometheus/prometheus.yml.j2",
        dest=f"{ETC}/prometheus.yml",
        context={"config": config, "jobs": scrape_jobs(config, scraped),
                 "probes": probes(config, scraped), "rules": RULES, "host_label": host.name,
                 "hosts": several},
        validate=f"promtool check config {ETC}/prometheus.yml >/dev/null",
    )
    _daemon(config, "prometheus", args, reload_when=[rules, scrape])
    _share(config)


def _share(config) -> None:
    """The environment's Prometheus, to the admin hosts, on the private address (multi-host
    layouts only): systemd's socket proxy to its loopback listener."""
    if not wireguard.enabled():
        return
    context = {"address": wireguard.private_address(config), "port": config.prometheus_port,
               "network": config.mesh_network, "prometheus_port": config.prometheus_port}
    units = [render.template(name=f"Install {SHARE}.{kind}",
                             src=f"prometheus/etc/systemd/system/{SHARE}.{kind}.j2",
                             dest=f"/etc/systemd/system/{SHARE}.{kind}", context=context)
             for kind in ("socket", "service")]
    system.service(name=f"Hand the environment's Prometheus to the admin hosts ({SHARE}.socket,"
                        " peers only)", unit=f"{SHARE}.socket", daemon_reload_when=units,
                   restart_when=units[:1])


def _daemon(config, package: str, args: dict[str, str], reload_when=(), secret=False):
    """A packaged daemon: restarts on its own, arguments in /etc/default/<package>."""
    dropin = system.restart_always_dropin(
        package, name=f"Restart {package} when it dies",
        why="the packaged unit restarts only on failure, 100 ms later, so\n"
            "a crash loop ends in start-limit-hit; a few seconds apart it never does.",
    )
    # With secrets (a password in the environment, never on the command line) the file
    # is root's alone: systemd reads it before dropping to the prometheus user.
    defaults = render.template(
        name=f"Set {package}'s arguments",
        src=f"prometheus/etc/default/{package}.j2",
        dest=f"/etc/default/{package}",
        context={"config": config, "args": args[package], "user": EXPORTER_USER,
                 "where": "loopback only" if listen_address(config) == LOOPBACK else
                 "the private address only (the environment's Prometheus scrapes it)"},
        mode="600" if secret else "644", secret=secret,
    )
    system.service(name=f"Run {package}", unit=package, restart_when=[defaults, dropin],
                   reload_when=reload_when, daemon_reload_when=[dropin])


def _mtail(config):
    """mtail reads nginx's access log; its own unit runs it with flags, not an env file,
    as the distros' units read different variables."""
    program = render.template(
        name="Count nginx responses by status (mtail)",
        src="prometheus/etc/mtail/orchestra-nginx.mtail.j2",
        dest="/etc/mtail/orchestra-nginx.mtail",
        validate="mtail --compile_only --progs /etc/mtail",
    )
    listen = listen_address(config)
    where = "loopback" if listen == LOOPBACK else "the private address"
    dropin = system.restart_always_dropin(
        "mtail", name=f"Run mtail on {where} over the nginx access log",
        why="mtail counts nginx's responses by status from its access log\n"
            f"and serves them on {where}. The flags are given here, not in /etc/default/mtail: "
            "the\ndistros' units read different variables from it.",
        service_settings=[
            "Type=simple",
            "User=mtail",
            "# The access log is www-data:adm 0640.",
            "SupplementaryGroups=adm",
            "ExecCondition=",
            "ExecStart=",
            f"ExecStart=/usr/bin/mtail --progs /etc/mtail --logtostderr --address {listen} "
            f"--port {config.mtail_port} --logs {NGINX_ACCESS_LOG}",
        ],
    )
    system.service(name="Run mtail", unit="mtail", restart_when=[dropin],
                   reload_when=[program], daemon_reload_when=[dropin])


@operation()
def role_membership(role: str, member_of: str):
    """
    Grant a role membership of another (``pg_monitor``), as the postgres superuser.

    + role: the role that gets the membership (it must exist when this runs)
    + member_of: the role granted to it
    """
    if member_of in host.get_fact(PostgresRoleMembership, role=role):
        host.noop(f"{role} is a member of {member_of}")
        return
    script = (f'{PSQL} -q -v ON_ERROR_STOP=1 -d postgres '
              f'-c "GRANT \\"{member_of}\\" TO \\"{role}\\""')
    yield StringCommand("sh", "-c", QuoteString(script))
