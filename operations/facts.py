"""Facts the Orchestra deploys read that pyinfra does not ship, all of them here.

A fact that reads a component's program or file (the restic wrapper, the port record,
monit) takes its path as an argument, as pyinfra's own facts do: the path belongs to the
component's module, which imports this one (never the other way round).
"""

from __future__ import annotations

import json
import re
import shlex
import weakref
import xmlrpc.client
from xml.parsers.expat import ExpatError

from pyinfra import host, state
from pyinfra.api import FactBase

# psql as the postgres superuser over the local socket (peer authentication), without the
# user's ~/.psqlrc; from / because runuser keeps root's working directory, which postgres
# may not enter (psql then warns on every call).
PSQL = "cd / && runuser -u postgres -- psql -X"


# pyinfra state (one run) -> (host, fact, arguments) -> value
_planned: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def planned(fact, on=None, **arguments):
    """``get_fact`` of ``on`` (this host by default), asked once per host and arguments
    while pyinfra plans, when no host has changed yet; every time while it executes. pyinfra
    3 keeps no fact: the distribution alone was asked six times a plan."""
    on = host if on is None else on
    if getattr(state, "is_executing", False):
        return on.get_fact(fact, **arguments)
    known = _planned.setdefault(on.state, {})
    key = (on.name, fact, tuple(sorted(arguments.items())))
    if key not in known:
        known[key] = on.get_fact(fact, **arguments)
    return known[key]


class GpuInfo(FactBase):
    """
    NVIDIA GPUs as reported by ``nvidia-smi``; an empty list when there is none.

    .. code:: python

        [{"model": "NVIDIA A10", "driver": "535.129.03", "memory_mib": 23028}]
    """

    def command(self) -> str:
        return (
            "! command -v nvidia-smi >/dev/null || nvidia-smi "
            "--query-gpu=name,driver_version,memory.total --format=csv,noheader,nounits || true"
        )

    def default(self):
        return []

    def process(self, output):
        gpus = []
        for line in output:
            parts = [part.strip() for part in line.split(",")]
            if len(parts) == 3 and parts[2].isdigit():
                gpus.append({"model": parts[0], "driver": parts[1], "memory_mib": int(parts[2])})
        return gpus


class ContainerType(FactBase):
    """
    The container technology the host runs in (``systemd-detect-virt --container``),
    or ``None`` on a VM or bare metal: containers cannot set ``kernel.*`` sysctls.

    .. code:: python

        "systemd-nspawn"
    """

    def command(self) -> str:
        return "systemd-detect-virt --container || true"

    def process(self, output):
        value = "".join(output).strip()
        return None if value in ("", "none") else value


class FileState(FactBase):
    """
    Owner, group, mode and SHA-256 of a regular file in one command (pyinfra's File and
    Sha256File facts cost two), ``None`` when it does not exist.

    .. code:: python

        {"user": "root", "group": "orchestra", "mode": 640, "sha256": "9f86d0…"}
    """

    def command(self, path: str) -> str:
        quoted = shlex.quote(path)
        return (
            f"if [ -f {quoted} ]; then stat -c '%U %G %a' {quoted} && sha256sum {quoted}; "
            f"elif [ -e {quoted} ]; then echo not-a-file; fi"
        )

    def process(self, output):
        if not output:
            return None
        if output[0] == "not-a-file":
            raise ValueError("exists and is not a regular file")
        user, group, mode = output[0].split()
        return {"user": user, "group": group, "mode": int(mode), "sha256": output[1].split()[0]}


class AptCandidate(FactBase):
    """
    The version apt would install for a package, or ``None`` when no source offers it.

    .. code:: python

        "0.5.1-1"
    """

    def command(self, package: str) -> str:
        return f"apt-cache policy {shlex.quote(package)} 2>/dev/null | sed -n 's/^ *Candidate: //p'"

    def process(self, output):
        value = "".join(output).strip()
        return None if value in ("", "(none)") else value


class PostgresRoleVerifiers(FactBase):
    """
    Login roles with their superuser flag and SCRAM verifier (not the password), read
    as the postgres superuser over the local socket.

    .. code:: python

        {"orchestra": {"superuser": False, "verifier": "SCRAM-SHA-256$4096:..."}}
    """

    def command(self) -> str:
        return (
            f"{PSQL} -A -t -F '|' -c "
            "'SELECT rolname, rolsuper, coalesce(rolpassword, $$$$) FROM pg_authid "
            "WHERE rolcanlogin'"
        )

    def process(self, output):
        roles = {}
        for line in output:
            name, superuser, verifier = line.split("|", 2)
            roles[name] = {"superuser": superuser == "t", "verifier": verifier or None}
        return roles


class DatabaseConnectGrants(FactBase):
    """
    Who may connect to a database (``PUBLIC`` for everyone), sorted; ``[]`` when the
    database does not exist.

    .. code:: python

        ["orchestra"]
    """

    def command(self, database: str) -> str:
        name = database.replace("'", "''")
        query = (
            "SELECT DISTINCT CASE WHEN a.grantee = 0 THEN $$PUBLIC$$ "
            "ELSE pg_get_userbyid(a.grantee) END AS who FROM pg_database d, "
            "aclexplode(coalesce(d.datacl, acldefault($$d$$, d.datdba))) a "
            f"WHERE d.datname = $${name}$$ AND a.privilege_type = $$CONNECT$$ ORDER BY who"
        )
        return f"{PSQL} -A -t -c {shlex.quote(query)}"

    def default(self):
        return []

    def process(self, output):
        return sorted(line.strip() for line in output if line.strip())


class PostgresExtensions(FactBase):
    """
    Extensions created in a database (``[]`` when it does not exist yet).

    .. code:: python

        ["plpgsql", "vector"]
    """

    def command(self, database: str) -> str:
        return (f"{PSQL} -A -t -d {shlex.quote(database)} "
                "-c 'SELECT extname FROM pg_extension ORDER BY 1' 2>/dev/null || true")

    def default(self):
        return []

    def process(self, output):
        return [line.strip() for line in output if line.strip()]


class ListeningSockets(FactBase):
    """
    TCP ports listened on, with each listening process's name and user.

    .. code:: python

        {8006: [{"process": "python3", "user": "orchestra", "pid": 812}],
         22: [{"process": "sshd", "user": "root", "pid": 90}]}
    """

    def command(self) -> str:
        # user:32: plain `user` cuts names longer than 8 characters ("orchest+").
        return "ss -Htlnp && echo --- && ps -eo pid=,user:32=,comm="

    def process(self, output):
        sockets, processes = [], {}
        seen_separator = False
        for line in output:
            if line.strip() == "---":
                seen_separator = True
            elif seen_separator:
                pid, user, comm = line.split(None, 2)
                processes[int(pid)] = (comm.strip(), user)
            else:
                sockets.append(line)
        ports: dict[int, list[dict]] = {}
        for line in sockets:
            fields = line.split()
            if len(fields) < 4:
                continue
            port = int(fields[3].rsplit(":", 1)[1])
            for name, pid in re.findall(r'\("([^"]+)",pid=(\d+)', " ".join(fields[5:])):
                holder = {"process": name, "user": processes.get(int(pid), ("", "?"))[1],
                          "pid": int(pid)}
                if holder not in ports.setdefault(port, []):
                    ports[port].append(holder)
        return ports


class ServiceAccount(FactBase):
    """
    A user and the group of the same name, from the name service (``getent``); ``None``
    for either that does not exist. Two lookups, where pyinfra's ``Users`` fact runs five
    programs for every account of the host (0.3 s of a no-op run each time it is asked).

    .. code:: python

        {"group": {"gid": 998},
         "user": {"gid": 998, "home": "/opt/orchestra", "shell": "/usr/sbin/nologin"}}
    """

    def command(self, user: str) -> str:
        user = shlex.quote(user)
        return f"getent group {user} || true; echo ---; getent passwd {user} || true"

    def default(self):
        return {"group": None, "user": None}

    def process(self, output):
        group_lines, _, user_lines = "\n".join(output).partition("---")
        group = next((line.split(":") for line in group_lines.splitlines() if line), None)
        user = next((line.split(":") for line in user_lines.splitlines() if line), None)
        return {
            "group": {"gid": int(group[2])} if group and len(group) >= 3 else None,
            "user": ({"gid": int(user[3]), "home": user[5], "shell": user[6]}
                     if user and len(user) >= 7 else None),
        }


class SupervisorStatus(FactBase):
    """
    Supervisor programs and their states, from supervisord's XML-RPC interface on its
    socket (curl: milliseconds, where ``supervisorctl status`` starts a Python, 0.3 s of
    a no-op run), or ``supervisorctl status`` where curl is missing; ``{}`` before
    supervisord runs.

    .. code:: python

        {"orchestra:api-0": "RUNNING", "orchestra:mcp-task": "STOPPED"}
    """

    def command(self, socket: str) -> str:
        socket = shlex.quote(socket)
        call = ("<?xml version=\"1.0\"?><methodCall><methodName>supervisor.getAllProcessInfo"
                "</methodName><params></params></methodCall>")
        return (f"if [ -S {socket} ] && command -v curl >/dev/null; then curl -sf "
                f"--connect-timeout 5 --max-time 10 --unix-socket {socket} "
                f"-H 'Content-Type: text/xml' --data '{call}' http://localhost/RPC2 || true; "
                "else supervisorctl status 2>/dev/null || true; fi")

    def default(self):
        return {}

    def process(self, output):
        if output and output[0].startswith("<?xml"):
            try:
                (processes,), _ = xmlrpc.client.loads("\n".join(output))
            except (xmlrpc.client.Error, ValueError, ExpatError):
                return {}
            return {(p["name"] if p["group"] == p["name"] else f"{p['group']}:{p['name']}"):
                    p["statename"] for p in processes}
        return {line.split()[0]: line.split()[1] for line in output if len(line.split()) > 1}


class AppReleases(FactBase):
    """
    Built application releases, the most recently made live (or built) first, and the live
    one (``app.switch`` touches a release as it makes it live).

    .. code:: python

        {"live": "5cb654f0b598", "built": ["5cb654f0b598", "f55c475dd805"]}
    """

    def command(self, root: str) -> str:
        root = shlex.quote(root)
        return (f"readlink {root}/current || echo; "
                f"ls -1t {root}/releases/*/.ready 2>/dev/null | xargs -r -n1 dirname | "
                "xargs -r -n1 basename")

    def process(self, output):
        live = output[0].rstrip("/").rsplit("/", 1)[-1] if output and output[0] else None
        return {"live": live or None, "built": [line.strip() for line in output[1:] if line]}


APT_LOCKS = ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock", "/var/lib/apt/lists/lock",
             "/var/cache/apt/archives/lock")


class AptLockHolders(FactBase):
    """
    The processes holding apt's or dpkg's locks (``lslocks``: apt and dpkg take fcntl record
    locks), as on a fresh cloud instance whose first-boot unattended-upgrades run is busy;
    an empty list when apt is free.

    .. code:: python

        [{"pid": 812, "command": "unattended-upgr", "path": "/var/lib/dpkg/lock-frontend"}]
    """

    def command(self) -> str:
        return "lslocks --noheadings --raw --output PID,COMMAND,PATH 2>/dev/null || true"

    def default(self):
        return []

    def process(self, output):
        holders = []
        for line in output:
            parts = line.split()
            if len(parts) == 3 and parts[0].isdigit() and parts[2] in APT_LOCKS:
                holders.append({"pid": int(parts[0]), "command": parts[1], "path": parts[2]})
        return holders


class LocalAddresses(FactBase):
    """
    Every IPv4 and IPv6 address configured on the host's interfaces.

    .. code:: python

        ["127.0.0.1", "10.213.0.2", "::1"]
    """

    def command(self) -> str:
        return "ip -o addr show 2>/dev/null | awk '{print $4}' || true"

    def default(self):
        return []

    def process(self, output):
        return [line.strip().split("/")[0] for line in output if line.strip()]


class MountPoints(FactBase):
    """
    The mount point holding each path (its nearest existing parent for a path not yet
    created), without duplicates.

    .. code:: python

        ["/", "/var/lib/postgresql"]
    """

    def command(self, paths: tuple[str, ...]) -> str:
        quoted = " ".join(shlex.quote(p) for p in paths)
        return (f"for p in {quoted}; do while [ ! -e \"$p\" ]; do p=$(dirname \"$p\"); done; "
                "findmnt -n -o TARGET --target \"$p\"; done")

    def process(self, output):
        return list(dict.fromkeys(line.strip() for line in output if line.strip()))


class MonitStates(FactBase):
    """
    Each service's status in Monit's summary; empty when Monit is not running yet.
    "Not monitored": Monit gave up on it after too many restarts, or it was paused.

    .. code:: python

        {"redis": "Not monitored", "api-0": "OK"}
    """

    @staticmethod
    def default():
        return {}

    def requires_command(self, monit: str) -> str:
        return monit

    def command(self, monit: str) -> str:
        return f"{monit} -B summary 2>/dev/null || true"

    def process(self, output):
        # Columns: name (no spaces), status (may have spaces), type (one word).
        return {fields[0]: " ".join(fields[1:-1]) for fields in map(str.split, output)
                if len(fields) >= 3 and fields[:2] != ["Service", "Name"]
                and not fields[0].startswith("Monit")}


class PortAssignments(FactBase):
    """
    Ports this host's services were moved to, as recorded by an earlier deploy in
    ``record`` (a JSON object); ``{}`` before any move.

    .. code:: python

        {"mcp_servers.task": 8100}
    """

    def command(self, record: str) -> str:
        return f"cat {shlex.quote(record)} 2>/dev/null || true"

    def default(self):
        return {}

    def process(self, output):
        # As found: operations/ports.py validates it (record_problems) before any use; a
        # file that is not JSON at all is the text that says so.
        text = "\n".join(output).strip()
        try:
            return json.loads(text) if text else {}
        except json.JSONDecodeError as e:
            return f"not JSON ({e.msg}, line {e.lineno} column {e.colno})"


class PostgresRoleMembership(FactBase):
    """
    The roles a role is a member of (``[]`` when it does not exist yet), read as the
    postgres superuser over the local socket.

    .. code:: python

        ["pg_monitor"]
    """

    def command(self, role: str) -> str:
        name = role.replace("'", "''")
        query = ("SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
                 f"JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = $${name}$$ ORDER BY 1")
        return f"{PSQL} -A -t -c {shlex.quote(query)}"

    def default(self):
        return []

    def process(self, output):
        return [line.strip() for line in output if line.strip()]


class ResticRepository(FactBase):
    """
    Whether ``restic`` (a wrapper with the repository's settings) opens the repository:
    ``"ok"``, ``"missing"`` (nothing there: ``restic init`` may create it),
    ``"unconfigured"`` (no wrapper yet) or ``"error: <what restic said>"`` (a wrong
    password, no network, a locked-out key...).

    .. code:: python

        "missing"
    """

    def command(self, restic: str) -> str:
        return (f"if [ ! -x {restic} ]; then echo unconfigured; "
                f"elif out=$({restic} cat config 2>&1 >/dev/null); then echo ok; "
                "else echo \"error $?\"; printf '%s\\n' \"$out\"; fi")

    def process(self, output):
        first = output[0].strip()
        if first in ("ok", "unconfigured"):
            return first
        code = first.split()[1] if len(first.split()) > 1 else ""
        said = [line.strip() for line in output[1:] if line.strip()]
        # restic >= 0.17 exits 10; 0.12 and 0.14 exit 1 and say this.
        if code == "10" or "Is there a repository at the following location?" in said:
            return "missing"
        return "error: " + (" ".join(said) or f"restic exited {code}")


class ResticSnapshots(FactBase):
    """
    The repository's snapshots, as ``restic snapshots --json`` lists them (``restic``:
    a wrapper with the repository's settings).

    .. code:: python

        [{"id": "9f2c…", "short_id": "9f2c1b7a", "time": "2025-01-02T03:15:42.1Z",
          "hostname": "orchestra-prod", "tags": ["orchestra"], "paths": ["/etc/orchestra"]}]
    """

    def command(self, restic: str) -> str:
        return f"{restic} snapshots --json"

    def default(self):
        return []

    def process(self, output):
        return json.loads("".join(output)) or []


class PgArchiveInfo(FactBase):
    """
    The pgBackRest repository's backups of this host's stanza, as ``orchestra-pg-archive
    info`` (``script``) reads them; ``None`` when it cannot (the error text instead).

    .. code:: python

        {"backups": [{"label": "20260102-023000F", "type": "full", "start": 1767321000,
                      "stop": 1767321012}], "archive_max": "000000010000000000000042"}
    """

    def command(self, script: str) -> str:
        return f"{script} info 2>&1 || echo 'orchestra-pg-archive info failed'"

    def process(self, output):
        text = "\n".join(output)
        try:
            data = json.loads(text)
        except ValueError:
            return {"error": text.strip()[-500:]}
        stanza = data[0] if data else {}
        backups = [{"label": b["label"], "type": b["type"],
                    "start": b["timestamp"]["start"], "stop": b["timestamp"]["stop"]}
                   for b in stanza.get("backup", [])]
        archives = [a.get("max") for a in stanza.get("archive", []) if a.get("max")]
        return {"backups": backups, "archive_max": archives[-1] if archives else None,
                "status": (stanza.get("status") or {}).get("message", "")}


class DataPresence(FactBase):
    """
    The data a restore would replace, as ``orchestra-restore presence`` (``script``)
    reports it: one line per table with rows, Redis database with keys and Weaviate class
    with objects; ``[]`` when the host holds none.

    .. code:: python

        ["postgres: table public.notes of database orchestra has rows",
         "redis: db0 holds 12 keys", "weaviate: class Note has objects"]
    """

    def command(self, script: str) -> str:
        return (f"if [ -x {script} ]; then {script} presence; "
                "else echo 'no orchestra-restore: run deploy.py on this host first' >&2; "
                "exit 1; fi")

    def default(self):
        return []

    def process(self, output):
        return [line.strip() for line in output if line.strip()]


class MountPoint(FactBase):
    """
    Whether ``path`` is a mount point: ``"mounted"``, ``"not-mounted"`` (a directory of the
    file system above it) or ``"missing"``.

    .. code:: python

        "not-mounted"
    """

    def command(self, path: str) -> str:
        q = shlex.quote(path)
        return (f"if mountpoint -q {q}; then echo mounted; elif [ -d {q} ]; then "
                "echo not-mounted; else echo missing; fi")

    def process(self, output):
        return output[0].strip() if output else "missing"


class BackupReady(FactBase):
    """
    Why backups may run on a data host (``ready``: the marker a restore or ``orchestra-backup
    start-empty`` writes; ``last_success``: a backup ran before), or ``None``: neither.

    .. code:: python

        "restored 2026-01-02T03:04:05Z"
    """

    def command(self, ready: str, last_success: str) -> str:
        return (f"if [ -f {shlex.quote(ready)} ]; then head -n 1 {shlex.quote(ready)}; "
                f"elif [ -f {shlex.quote(last_success)} ]; then echo backed-up; fi")

    def process(self, output):
        first = output[0].strip() if output else ""
        return first or None


class SameFiles(FactBase):
    """
    Whether two files hold the same bytes (``cmp``), without reading them: ``True`` or
    ``False`` (one is missing, or they differ).

    .. code:: python

        False
    """

    def command(self, first: str, second: str) -> str:
        return (f"if cmp -s {shlex.quote(first)} {shlex.quote(second)}; then echo same; "
                "else echo differ; fi")

    def process(self, output):
        return bool(output) and output[0].strip() == "same"
