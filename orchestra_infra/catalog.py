"""The service catalogue: every service of the stack, described once.

What runs on which group of hosts, under which manager, on which port, how its process is
found, how it is checked and restarted, which exporter reports on it and where its data
lives. Monit's checks, Prometheus's probes, scrape jobs and watched units, ``orchestra-infra
status``, the port preflight's owners, the schema's Monit names and the packages a host
installs (``operations/stack.py``) all read :func:`services`; nothing else lists services.

Adding a service: a :class:`Service` in :func:`services`, ``operations/<component>.py``
(``packages``, ``configure``), ``templates/<component>/``, a block in ``group_data/all.py``.

Pure data from the configuration: no pyinfra, no host. What depends on the host (the
PostgreSQL major version of its distro) is an argument.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

# The inventory's groups: edge, app and data, and metrics (the environment's one Prometheus
# and Alertmanager: the first edge host unless the hosts file says, orchestra_infra/hosts.py).
GROUPS = ("edge", "app", "data", "metrics")
SYSTEMCTL = "/bin/systemctl"
SUPERVISORCTL = "/usr/bin/supervisorctl"
PM2 = "/usr/local/bin/pm2"
ADMIN_APP = "orchestra-admin"  # the PM2 app name in ecosystem.config.js
API_HEALTH = "/api/health/"  # the API's readiness: 503 while a store it needs is down
MCP_HEALTH = "/health"
WEAVIATE_ROOT = "/opt/weaviate"
WEAVIATE_CURRENT = f"{WEAVIATE_ROOT}/current"  # the installed release (a symlink)
# Monit waits this long for a systemd service it (re)started to appear.
SYSTEMD_TIMEOUT = 60
# Components that run no service of their own, and the group whose hosts get them.
JOBS = {"backup": "data", "pgarchive": "data"}
# Port table keys held by something that is not a service of the catalogue.
OTHER_PORT_OWNERS = {
    "sshd_port": (("sshd", None),),
    # A new release answers its health check there before it replaces the old one.
    "app_preflight_port": (("python", "{service_user}"),),
    # systemd holds the status share's socket (operations/admin_status.py).
    "status_share_port": (("systemd", "root"),),
}


@dataclass(frozen=True)
class Check:
    """A health check on loopback: ``http``/``https`` (a path), or a protocol: ``pgsql``,
    ``redis`` (a PING; NOAUTH counts), ``supervisord``, ``pm2``, ``monit`` (their daemons
    answer)."""

    kind: str
    port: int | None = None
    path: str = ""
    any_status: bool = False  # any HTTP answer counts: the process is alive

    @property
    def url(self) -> str:
        return f"{self.kind}://127.0.0.1:{self.port}{self.path}"


@dataclass(frozen=True)
class Service:
    name: str                    # what `status` and the alerts call it
    group: str                   # edge, app, data: where it runs
    component: str               # operations/<component>.py sets it up
    manager: str                 # systemd, supervisor, pm2
    unit: str | None = None      # systemd unit, Supervisor program or PM2 app
    port: int | None = None
    port_keys: tuple[str, ...] = ()  # its keys in the port table
    owners: tuple[tuple[str, str | None], ...] = ()  # (process name prefix, user) on them
    monit: str | None = None     # the name of its Monit check; None: Monit does not watch it
    pidfile: str | None = None   # how Monit finds its process (or `matching`)
    matching: str | None = None
    start: str | None = None     # Monit's commands
    stop: str | None = None
    restart: str | None = None
    start_timeout: int = SYSTEMD_TIMEOUT
    liveness: tuple[Check, ...] = ()   # failing: Monit restarts it
    readiness: tuple[Check, ...] = ()  # failing: `status` fails it, Monit alerts
    through: tuple[Check, ...] = ()    # requests it passes on (the edge to the API)
    probe: Check | None = None   # the blackbox exporter's target
    probe_module: str = "http_2xx"
    exporter: str | None = None  # the Prometheus job that scrapes this service itself
    data_dirs: tuple[str, ...] = ()
    resources: bool = True       # Monit checks its memory and CPU
    optional: bool = False       # monitoring: `status` shows it when installed
    layer: str | None = None     # status's layer, when not its group
    # The unit other units order themselves after, when not ``unit`` (PostgreSQL's
    # umbrella unit starts every cluster, whatever the version).
    after_unit: str | None = None

    @property
    def status_layer(self) -> str:
        return self.layer or self.group

    @property
    def watch(self) -> tuple[Check, ...]:
        """Readiness checks on a port that are not liveness checks: Monit alerts on them."""
        alive = {(c.kind, c.port, c.path) for c in self.liveness}
        return tuple(c for c in self.readiness
                     if c.port is not None and (c.kind, c.port, c.path) not in alive)


def systemd_unit(unit: str) -> dict:
    """A service systemd manages, and the commands Monit starts, stops and restarts it with."""
    return {"manager": "systemd", "unit": unit, "start": f"{SYSTEMCTL} start {unit}",
            "stop": f"{SYSTEMCTL} stop {unit}", "restart": f"{SYSTEMCTL} restart {unit}"}


def posix_escape(text: str) -> str:
    """Escape text for a POSIX extended regular expression (Monit's `matching`)."""
    return re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", text)


def pm2_home(config) -> str:
    return f"/var/lib/{config.service_user}/pm2"


def session_route(host_name: str, port: int) -> str:
    """What the ids of the MCP sessions made by the instance on this host and port begin with
    (``ROUTE-``): the edge sends each session's requests to that instance alone. The same on
    both sides (the app host's Supervisor program, the edge's nginx map), stable while the
    host and the port stay, and it names neither to clients."""
    return hashlib.sha256(f"{host_name}:{port}".encode()).hexdigest()[:8]


def programs(config) -> list[dict]:
    """Every Supervisor program: the API instances, then each MCP server's instances
    (``mcp-NAME``, then ``mcp-NAME-1``, ...)."""
    api = [{"name": f"api-{i}", "module": "api", "port": config.api_port + i,
            "env_name": "api", "health": API_HEALTH,
            "port_key": "api_port" if i == 0 else f"api_port+{i}"}
           for i in range(config.api_instances)]
    mcp = [{"name": f"mcp-{name}" + (f"-{i}" if i else ""),
            "module": f"mcp_servers.server --name {name}", "port": port,
            "env_name": f"mcp-{name}", "health": MCP_HEALTH, "mcp": name,
            "port_key": f"mcp_servers.{name}" + (f"+{i}" if i else "")}
           for name in config.mcp_servers for i, port in enumerate(config.mcp_ports(name))]
    return api + mcp


def _data(config, postgres_major: int | None) -> list[Service]:
    cluster = f"{postgres_major}-main" if postgres_major else None
    postgres = Check("pgsql", config.postgres_port)
    redis = Check("redis", config.redis_port)
    weaviate_live = Check("http", config.weaviate_port, "/v1/.well-known/live")
    weaviate_ready = Check("http", config.weaviate_port, "/v1/.well-known/ready")
    return [
        Service("postgresql", "data", "postgres", port=config.postgres_port,
                port_keys=("postgres_port",), owners=(("postgres", "postgres"),),
                monit="postgres", after_unit="postgresql",
                **(systemd_unit(f"postgresql@{cluster}") if cluster else {"manager": "systemd"}),
                pidfile=f"/var/run/postgresql/{cluster}.pid" if cluster else None,
                liveness=(postgres,), readiness=(postgres,), exporter="postgres",
                data_dirs=("/var/lib/postgresql",),
                # Its processes share the buffer cache, which each one's RSS counts again.
                resources=False),
        Service("redis-server", "data", "redis", **systemd_unit("redis-server"),
                port=config.redis_port, port_keys=("redis_port",),
                owners=(("redis-server", "redis"),), monit="redis",
                pidfile="/run/redis/redis-server.pid", liveness=(redis,), readiness=(redis,),
                exporter="redis", data_dirs=("/var/lib/redis",)),
        # The release binary, or the sandbox's stand-in run by python3 as the weaviate user.
        Service("weaviate", "data", "weaviate", **systemd_unit("weaviate"),
                port=config.weaviate_port, port_keys=("weaviate_port", "weaviate_grpc_port"),
                owners=(("weaviate", "weaviate"), ("python", "weaviate")), monit="weaviate",
                matching=f"{WEAVIATE_CURRENT}/weaviate --host ",
                # Alive restarts it; not ready (loading its shards) alerts.
                liveness=(weaviate_live,), readiness=(weaviate_ready,), probe=weaviate_ready,
                data_dirs=(config.weaviate_data_dir, config.weaviate_backup_dir)),
    ]


def _app(config, postgres_major=None) -> list[Service]:
    user = config.service_user
    found = [Service("supervisor", "app", "supervisor", **systemd_unit("supervisor"),
                     monit="supervisord", pidfile="/var/run/supervisord.pid",
                     readiness=(Check("supervisord"),), resources=False)]
    for program in programs(config):
        name = f"orchestra:{program['name']}"
        health = Check("http", program["port"], program["health"])
        found.append(Service(
            program["name"], "app", "app", manager="supervisor", unit=name,
            port=program["port"], port_keys=(program["port_key"],), owners=(("python", user),),
            monit=program["name"],
            # The command line Supervisor runs (the launcher execs it); the port tells the
            # API instances apart and keeps a release's check on the preflight port out.
            matching=(f"-m {posix_escape(program['module'])} --host 127\\.0\\.0\\.1 "
                      f"--port {program['port']}$"),
            start=f"{SUPERVISORCTL} start {name}", stop=f"{SUPERVISORCTL} stop {name}",
            # A hung process may never act on SIGTERM (nor a stopped one, SIGSTOP), and a
            # graceful stop would wait supervisor_stopwaitsecs for nothing. Supervisor
            # (autorestart) starts it again.
            restart=f"{SUPERVISORCTL} signal KILL {name}",
            # `supervisorctl start` returns once the program has run startsecs (or failed).
            start_timeout=config.supervisor_startsecs + 10,
            # Liveness: any HTTP answer. /api/health/ answers 503 while a store is down; a
            # restart would not bring PostgreSQL back (its own check does).
            liveness=(Check("http", program["port"], program["health"], any_status=True),),
            readiness=(health,), probe=health))
    as_user = (f"/usr/sbin/runuser -u {user} -- /usr/bin/env HOME=/var/lib/{user} "
               f"PM2_HOME={pm2_home(config)} {PM2}")
    admin = Check("http", config.admin_port, "/")
    pm2_unit = systemd_unit("pm2-orchestra")
    found += [
        Service("pm2-orchestra", "app", "pm2", **pm2_unit, readiness=(Check("pm2"),)),
        # Monit watches the PM2 daemon: its children are the admin's processes, whatever
        # their number; a failing admin is restarted through PM2.
        Service(ADMIN_APP, "app", "pm2", manager="pm2", unit=ADMIN_APP, port=config.admin_port,
                port_keys=("admin_port",), owners=(("node", user), ("PM2", user)),
                monit="admin", pidfile=f"{pm2_home(config)}/pm2.pid",
                start=pm2_unit["start"], stop=pm2_unit["stop"],
                restart=f"{as_user} restart {ADMIN_APP}",
                liveness=(admin,), readiness=(admin,), probe=admin),
    ]
    return found


def _edge(config, postgres_major=None) -> list[Service]:
    if config.nginx_tls == "none":
        site, module = Check("http", config.nginx_http_port, API_HEALTH), "http_2xx"
    else:
        site, module = Check("https", config.nginx_https_port, API_HEALTH), "https_edge"
    stub = Check("http", config.nginx_stub_status_port, "/stub_status")
    return [Service("nginx", "edge", "nginx", **systemd_unit("nginx"), port=site.port,
                    port_keys=("nginx_http_port", "nginx_https_port", "nginx_stub_status_port"),
                    owners=(("nginx", None),), monit="nginx", pidfile="/run/nginx.pid",
                    liveness=(stub,), readiness=(stub,),
                    # Through nginx's public port, the whole way to an API instance.
                    through=(site,), probe=site, probe_module=module, exporter="nginx")]


def _monitoring(config, postgres_major=None) -> list[Service]:
    """The monitoring daemons: `status` shows them when installed."""
    def daemon(unit, group, port_key, job=None, ready=None, owner=("prometheus", "prometheus"),
               also=()):
        port = getattr(config, port_key)
        return Service(unit, group, "monit" if unit == "monit" else "prometheus",
                       **systemd_unit(unit), port=port, port_keys=(port_key,),
                       owners=(owner, *also),
                       readiness=(Check("http", port, ready),) if ready else
                       (Check("monit"),) if unit == "monit" else (),
                       exporter=job, optional=True, layer="ops")

    return [
        daemon("monit", "ops", "monit_port", owner=("monit", None)),
        # With several hosts systemd also holds its port, on the private address, and hands
        # it to its socket proxy (a dynamic user) for the admin hosts (operations/prometheus.py).
        daemon("prometheus", "metrics", "prometheus_port", "prometheus", "/-/ready",
               also=(("systemd", "root"), ("systemd-socket-", None))),
        daemon("prometheus-alertmanager", "metrics", "alertmanager_port", "alertmanager",
               "/-/ready"),
        daemon("prometheus-node-exporter", "ops", "node_exporter_port", "node"),
        daemon("prometheus-blackbox-exporter", "ops", "blackbox_exporter_port", "blackbox"),
        daemon("prometheus-postgres-exporter", "data", "postgres_exporter_port", "postgres"),
        daemon("prometheus-redis-exporter", "data", "redis_exporter_port", "redis"),
        daemon("prometheus-nginx-exporter", "edge", "nginx_exporter_port", "nginx"),
        daemon("mtail", "edge", "mtail_port", "mtail", owner=("mtail", "mtail")),
    ]


# In the order the deploy sets them up: the stores, the apps that use them, the edge in
# front of the apps, then what watches them all.
PARTS = [_data, _app, _edge, _monitoring]


def services(config, groups=GROUPS, postgres_major: int | None = None) -> list[Service]:
    """The services of a host in these inventory groups ("ops" ones run on every host).

    ``postgres_major``: the host's PostgreSQL major version, which names its cluster's unit;
    None when unknown (``status`` finds the unit on the host).
    """
    return [s for part in PARTS for s in part(config, postgres_major)
            if s.group == "ops" or s.group in groups]


def store_units(config, groups) -> list[str]:
    """The systemd units of the stores on a host of these groups: the apps start after
    them."""
    return [f"{s.after_unit or s.unit}.service" for s in services(config, groups)
            if s.group == "data" and s.manager == "systemd" and not s.optional]


def components(config, groups) -> list[str]:
    """The components a host of these groups gets, in the catalogue's order."""
    found = [s.component for s in services(config, groups)]
    return list(dict.fromkeys(found + [job for job, group in JOBS.items() if group in groups]))


# Groups whose services other hosts use: over the mesh of a multi-host layout they listen on
# the host's private address as well as loopback (the edge reaches the app hosts, the app
# hosts reach the data host).
PRIVATE_GROUPS = ("data", "app")


def private_ports(config, groups) -> list[int]:
    """The TCP ports a host of these groups serves to its peers over the private network."""
    table = config.port_table()
    return sorted({table[key] for s in services(config, groups)
                   if s.group in PRIVATE_GROUPS and not s.optional for key in s.port_keys})


def exporter_ports(config, groups) -> list[int]:
    """The exporters' ports on a host of these groups: the environment's Prometheus (the
    metrics host) scrapes them over the private network."""
    return sorted(s.port for s in services(config, groups)
                  if s.component == "prometheus" and s.group != "metrics")


def port_owners(config) -> dict[str, tuple[tuple[str, str | None], ...]]:
    """Port table key -> the processes (name prefix, user) allowed to hold its port."""
    owners = {key: tuple((name, user.format(service_user=config.service_user) if user else None)
                         for name, user in holders)
              for key, holders in OTHER_PORT_OWNERS.items()}
    for service in services(config):
        for key in service.port_keys:
            owners[key] = service.owners
    return owners
