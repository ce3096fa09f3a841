"""Facts the Orchestra deploys read that pyinfra does not ship."""

from __future__ import annotations

import re
import shlex

from pyinfra.api import FactBase


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
            "cd / && runuser -u postgres -- psql -X -A -t -F '|' -c "
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
        return f"cd / && runuser -u postgres -- psql -X -A -t -c {shlex.quote(query)}"

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
        return (f"cd / && runuser -u postgres -- psql -X -A -t -d {shlex.quote(database)} "
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


class SupervisorStatus(FactBase):
    """
    Supervisor programs and their states (``supervisorctl status``); ``{}`` before
    supervisord runs.

    .. code:: python

        {"orchestra:api-0": "RUNNING", "orchestra:mcp-task": "STOPPED"}
    """

    def command(self) -> str:
        return "supervisorctl status 2>/dev/null || true"

    def default(self):
        return {}

    def process(self, output):
        return {line.split()[0]: line.split()[1] for line in output if len(line.split()) > 1}


class AppReleases(FactBase):
    """
    Built application releases, newest first, and the live one.

    .. code:: python

        {"live": "5cb654f0b598", "built": ["5cb654f0b598", "f55c475dd805"]}
    """

    def command(self, root: str) -> str:
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
