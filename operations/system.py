"""What every component uses, written once: directories, files, apt repositories, systemd
units and their restart policy, commands run every time, health waits. What they ask
about the host is answered from the run's snapshot (see snapshot.py) where it can be."""

from __future__ import annotations

from pyinfra import host, state
from pyinfra.api import QuoteString, StringCommand, operation
from pyinfra.operations import files

from operations import render, snapshot
from operations.facts import ServiceAccount

DROPIN = "systemd/etc/systemd/system/UNIT.service.d/10-orchestra.conf.j2"

# Sandboxing every drop-in adds to its packaged unit (systemd-analyze security: 4.9 or
# lower each, measured in docs/benchmarks.md). What a unit needs beyond it is in SANDBOX.
_SANDBOX_COMMON = (
    "ProtectSystem=strict",
    "ProtectHome=true",
    "PrivateTmp=true",
    "PrivateDevices=true",
    "NoNewPrivileges=true",
    "RestrictNamespaces=true",
    "RestrictRealtime=true",
    "RestrictSUIDSGID=true",
    "LockPersonality=true",
    "ProtectClock=true",
    "ProtectHostname=true",
    "ProtectKernelLogs=true",
    "ProtectKernelModules=true",
    "ProtectKernelTunables=true",
    "ProtectControlGroups=true",
    "KeyringMode=private",
    "RemoveIPC=true",
    "SystemCallArchitectures=native",
    "SystemCallFilter=@system-service",
    "SystemCallFilter=~@privileged",
    # A refused system call fails with EPERM rather than killing the daemon.
    "SystemCallErrorNumber=EPERM",
)
_ALLOW_SETUID = tuple(line for line in _SANDBOX_COMMON if line != "SystemCallFilter=~@privileged")
# Loopback only, both ways: what serves or scrapes on 127.0.0.1 and talks to nobody else.
_LOOPBACK = ("IPAddressDeny=any", "IPAddressAllow=localhost")
_NO_CAPABILITIES = ("CapabilityBoundingSet=", "AmbientCapabilities=")
_INET = ("RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",)
# Go programs: no JIT, so no writable-and-executable memory.
_GO = ("MemoryDenyWriteExecute=true",)
_EXPORTER = _SANDBOX_COMMON + _NO_CAPABILITIES + _INET + _GO + (
    "ProtectProc=invisible", "UMask=0077")



def process_manager_sandbox(writable: list[str]) -> tuple[str, ...]:
    """Sandboxing for a root daemon that starts programs as another user (supervisord):
    the programs inherit it, so it keeps setuid/setgid and every address family they use,
    and may write only ``writable`` (its own logs and socket, the programs' logs)."""
    return _ALLOW_SETUID + (
        "ReadWritePaths=" + " ".join(writable),
        "CapabilityBoundingSet=CAP_SETUID CAP_SETGID CAP_KILL CAP_CHOWN CAP_FOWNER "
        "CAP_DAC_OVERRIDE",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
    )


SANDBOX: dict[str, tuple[str, ...]] = {
    "prometheus-node-exporter": _EXPORTER + _LOOPBACK + (
        # Reads what the text-file collector's writers leave here.
        "ReadOnlyPaths=/var/lib/prometheus/node-exporter",
    ),
    "prometheus-postgres-exporter": _EXPORTER + _LOOPBACK,
    "prometheus-redis-exporter": _EXPORTER + _LOOPBACK,
    "prometheus-nginx-exporter": _EXPORTER + _LOOPBACK,
    # Probes the public endpoints (TLS certificates, the edge) by their public names.
    "prometheus-blackbox-exporter": _EXPORTER + (
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
    ),
    "prometheus": _EXPORTER + _LOOPBACK + ("ReadWritePaths=/var/lib/prometheus",),
    # Sends notifications (webhooks, mail) anywhere.
    "prometheus-alertmanager": _EXPORTER + (
        "ReadWritePaths=/var/lib/prometheus/alertmanager",
    ),
    "mtail": _EXPORTER + _LOOPBACK,
    "redis-server": _SANDBOX_COMMON + _NO_CAPABILITIES + _INET + _LOOPBACK + (
        "MemoryDenyWriteExecute=true",
        "ReadWritePaths=-/var/lib/redis -/var/log/redis -/run/redis",
    ),
    # The master binds 80 and 443 as root, then runs its workers as www-data and signals
    # them (and a start removes orphaned ones: operations/nginx.py). It writes its logs,
    # its temporary bodies and its pid file; it reads its certificates and configuration.
    "nginx": _ALLOW_SETUID + _INET + (
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_SETUID CAP_SETGID CAP_CHOWN "
        "CAP_DAC_OVERRIDE CAP_KILL",
        "AmbientCapabilities=",
        "ReadWritePaths=-/var/log/nginx -/var/lib/nginx -/run",
    ),
    # PostgreSQL's JIT (LLVM) maps writable memory executable: no MemoryDenyWriteExecute.
    # The packaged unit starts pg_ctlcluster as root, which switches to postgres.
    "postgresql@": _ALLOW_SETUID + _INET + (
        "CapabilityBoundingSet=CAP_SETUID CAP_SETGID CAP_CHOWN CAP_FOWNER CAP_DAC_OVERRIDE "
        "CAP_DAC_READ_SEARCH",
        "AmbientCapabilities=",
        "ReadWritePaths=-/var/lib/postgresql -/var/run/postgresql -/var/log/postgresql",
        "ProtectProc=invisible",
    ),
}


@operation()
def service_account(user: str, home: str, shell: str = "/usr/sbin/nologin"):
    """
    Ensure a system user with a group of its own name, its home and its shell. The home is
    never created here: who owns it is the caller's (a ``directory`` operation).

    + user: the user's and its group's name
    + home, shell: its home directory and login shell

    **Example:**

    .. code:: python

        system.service_account(name="Create service user orchestra", user="orchestra",
                               home="/opt/orchestra")
    """
    found = host.get_fact(ServiceAccount, user=user)
    group, account = found["group"], found["user"]
    if group is None:
        yield StringCommand("groupadd", "--system", QuoteString(user))
    if account is None:
        yield StringCommand("useradd", "--system", "--gid", QuoteString(user),
                            "--home-dir", QuoteString(home), "--no-create-home",
                            "--shell", QuoteString(shell), QuoteString(user))
        return
    changes = []
    if group is None or account["gid"] != group["gid"]:
        changes += ["--gid", QuoteString(user)]
    if account["home"] != home:
        changes += ["--home", QuoteString(home)]
    if account["shell"] != shell:
        changes += ["--shell", QuoteString(shell)]
    if changes:
        yield StringCommand("usermod", *changes, QuoteString(user))
    else:
        host.noop(f"user {user} exists")


@snapshot.registers("dirs", "path")
@operation()
def directory(path: str, user: str = "root", group: str = "root", mode: str = "755"):
    """
    Ensure a directory exists with an owner and mode.

    + path: the directory
    + user, group, mode: its owner and permissions

    **Example:**

    .. code:: python

        system.directory(name="Create /etc/weaviate", path="/etc/weaviate", mode="750")
    """
    current = snapshot.lookup("dirs", path)
    if current is None:
        yield StringCommand("install", "-d", "-m", mode, "-o", user, "-g", group, path)
        return
    if (current["user"], current["group"]) != (user, group):
        yield StringCommand("chown", QuoteString(f"{user}:{group}"), QuoteString(path))
    if current["mode"] != int(mode):
        yield StringCommand("chmod", mode, path)
    if (current["user"], current["group"], current["mode"]) == (user, group, int(mode)):
        host.noop(f"directory {path} exists")


@snapshot.registers("dirs", "path")
@operation()
def directory_if_missing(path: str, mode: str = "755"):
    """
    Create a directory (root-owned) when it does not exist; leave an existing one as it is,
    for a directory a package or another deploy may own.

    + path: the directory
    + mode: its permissions when created

    **Example:**

    .. code:: python

        system.directory_if_missing(name="Create the textfile directory if missing",
                                    path="/var/lib/prometheus/node-exporter")
    """
    if snapshot.lookup("dirs", path) is not None:
        host.noop(f"directory {path} exists")
        return
    # mkdir -p leaves a directory someone made in the meantime as it is (install -d would not).
    yield StringCommand("mkdir", "-p", "-m", mode, path)


@snapshot.registers("files", "path")
@operation()
def absent(path: str):
    """
    Remove a file when it exists.

    + path: the file

    **Example:**

    .. code:: python

        system.absent(name="Remove the SFTP key", path="/root/.ssh/orchestra-backup")
    """
    if snapshot.lookup("files", path) is None:
        host.noop(f"{path} does not exist")
        return
    yield StringCommand("rm", "-f", QuoteString(path))


@operation(is_idempotent=False)
def run(args: list[str]):
    """
    Run a command every time, never a no-op: a step of a procedure (a restore's stages)
    rather than a state. Unlike ``server.shell``, each argument is quoted for the shell.

    + args: the command and its arguments

    **Example:**

    .. code:: python

        system.run(name="Stop the Supervisor programs",
                   args=["supervisorctl", "stop", "orchestra:*"])
    """
    yield StringCommand(*(QuoteString(arg) for arg in args))


@operation()
def apt_repository(url: str, suite: str, key_url: str, keyring: str, sources: str):
    """
    Add an apt repository signed by its own key (``signed-by``, trusted for it alone): the
    key in a keyring, one ``deb`` line in the repository's own sources file, replaced when
    the URL changes (a new major version, a mirror), never a second one beside it.

    + url: the repository's deb URL
    + suite: its suite (component ``main``): ``nodistro``, ``bookworm-pgdg``
    + key_url: URL of its ASCII-armoured signing key
    + keyring: where the key is kept (``/etc/apt/keyrings/NAME.asc``)
    + sources: its sources file (``/etc/apt/sources.list.d/NAME.list``)

    **Example:**

    .. code:: python

        system.apt_repository(name="Add the NodeSource apt repository",
                              url="https://deb.nodesource.com/node_22.x", suite="nodistro",
                              key_url="https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key",
                              keyring="/etc/apt/keyrings/nodesource.asc",
                              sources="/etc/apt/sources.list.d/nodesource.list")
    """
    yield from files.directory._inner(path="/etc/apt/keyrings", mode="755")
    yield from files.download._inner(src=key_url, dest=keyring, mode="644",
                                     extra_curl_args=DOWNLOAD_CURL_ARGS,
                                     extra_wget_args=DOWNLOAD_WGET_ARGS)
    yield from files.line._inner(path=sources, line=f"^deb .* {suite} main$",
                                 replace=f"deb [signed-by={keyring}] {url} {suite} main")


# Every HTTP request a host makes during a deploy ends: a hung service (accepting, never
# answering) fails the deploy with a message instead of holding it forever.
CONNECT_TIMEOUT = 5  # seconds to open a connection
HEALTH_REQUEST_TIME = 5  # seconds one health request may take, connection included
DOWNLOAD_TIME = 900  # seconds a whole download may take (a Weaviate release, a signing key)
DOWNLOAD_CURL_ARGS = {"--connect-timeout": str(CONNECT_TIMEOUT), "--max-time": str(DOWNLOAD_TIME)}
# wget (files.download's fallback) has no total limit: a read timeout ends a stalled one.
DOWNLOAD_WGET_ARGS = {"--timeout": str(CONNECT_TIMEOUT * 6), "--tries": "2"}


def curl_limits(max_time: int = HEALTH_REQUEST_TIME) -> str:
    """curl's connect timeout and total time limit, as shell words."""
    return f"--connect-timeout {min(CONNECT_TIMEOUT, max_time)} --max-time {max_time}"


def wait_healthy(name: str, port: int, path: str, timeout: int, on_failure: str = "") -> str:
    """
    A shell snippet, for an operation that (re)started a program: ask its health endpoint
    on loopback once a second until ``timeout`` seconds have passed (each request limited
    to HEALTH_REQUEST_TIME, so it ends within ``timeout`` + HEALTH_REQUEST_TIME + 1 s even
    when the program accepts and never answers); when it never answers, say which program,
    where and curl's last error, run ``on_failure`` (its last log lines, say) and fail.
    """
    url = f"http://127.0.0.1:{port}{path}"
    return (f"end=$(($(date +%s) + {int(timeout)})); ok=; while :; do "
            f"err=$(curl -fsS -o /dev/null {curl_limits()} {url} 2>&1) && ok=1 && break; "
            f"[ \"$(date +%s)\" -lt \"$end\" ] || break; sleep 1; done; "
            f"[ -n \"$ok\" ] || {{ echo '{name} is not healthy at {url} after {int(timeout)} s:'"
            f" \"$err\" >&2; {on_failure}exit 1; }}")


def changed(ops) -> bool:
    """Whether any of these operations changes the host: known for certain once they ran
    (execution), predicted while planning (pyinfra's change detection)."""
    if state.is_executing:
        return any(op.did_change() for op in ops)
    return any(op.will_change for op in ops)


@snapshot.registers("units", "unit")
@operation()
def service(unit: str, running: bool = True, enabled: bool = True, restart_when=(),
            reload_when=(), daemon_reload_when=()):
    """
    Keep a systemd unit running (or stopped) and enabled; restart or reload it when the
    operations it depends on changed something.

    + unit: the unit name (``redis-server``, ``postgresql@15-main``)
    + running: whether it should be running
    + enabled: whether it should start at boot
    + restart_when: operations (config files, binaries) whose change needs a restart
    + reload_when: operations whose change needs only a reload (when no restart is due)
    + daemon_reload_when: operations writing unit files or drop-ins

    Unlike ``restarted=op.will_change``, passing the operations themselves defers the
    question to execution, so planning with ``-y`` runs no extra fact commands.

    **Example:**

    .. code:: python

        system.service(name="Run Redis", unit="redis-server", restart_when=[conf])
    """
    current = snapshot.lookup("units", unit)
    daemon_reload = changed(daemon_reload_when)
    restarted = changed(restart_when)
    reloaded = not restarted and changed(reload_when)
    if daemon_reload:
        yield "systemctl daemon-reload"
    # restart and reload-or-restart also start a stopped unit; a unit seen stopped may have
    # been started since the snapshot (a package's postinst), so what was asked for wins.
    if running and restarted:
        yield StringCommand("systemctl", "restart", unit)
    elif running and reloaded:
        yield StringCommand("systemctl", "reload-or-restart", unit)
    elif running and not current["active"]:
        yield StringCommand("systemctl", "start", unit)
    elif not running and current["active"]:
        yield StringCommand("systemctl", "stop", unit)
    if enabled and not current["enabled"]:
        yield StringCommand("systemctl", "enable", unit)
    elif not enabled and current["enabled"] and current["exists"]:
        yield StringCommand("systemctl", "disable", unit)
    if not (daemon_reload or restarted or reloaded) and current["active"] == running and \
            current["enabled"] == enabled:
        host.noop(f"unit {unit} is {'running' if running else 'stopped'}")


def restart_always_dropin(unit: str, name: str, why: str, unit_settings=(),
                          service_settings=(), restart_sec: int = 3, sandbox=None):
    """
    Make a unit come back whenever it dies: ``Restart=always`` in a drop-in beside its
    package's unit file, with the other settings this stack needs of it. Packaged units
    restart on failure only (or never), 100 ms later, so a few kills in a row end in
    start-limit-hit with the service down for good; ``restart_sec`` apart they never do.

    + unit: the unit's name without ``.service`` (``redis-server``, ``postgresql@``)
    + name: the operation's name
    + why: the drop-in's comment, after "Managed by orchestra-infra: " (lines split by \\n)
    + unit_settings: lines of its ``[Unit]`` section (``After=...``), none by default
    + service_settings: lines of its ``[Service]`` section before the restart policy
    + restart_sec: seconds between a death and the restart
    + sandbox: lines of systemd sandboxing for its ``[Service]`` section; by default the
      unit's entry in ``SANDBOX`` (none for a unit not listed)

    Returns the render operation, for ``system.service(daemon_reload_when=...)``.

    **Example:**

    .. code:: python

        dropin = system.restart_always_dropin("redis-server", name="Restart Redis when it dies",
                                              why="the distro unit restarts after 100 ms.")
    """
    return render.template(
        name=name,
        src=DROPIN,
        dest=f"/etc/systemd/system/{unit}.service.d/10-orchestra.conf",
        context={"why": why, "unit_settings": list(unit_settings),
                 "service_settings": list(service_settings), "restart_sec": restart_sec,
                 "sandbox": list(SANDBOX.get(unit, ()) if sandbox is None else sandbox)},
    )
