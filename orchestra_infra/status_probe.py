"""What ``orchestra-infra status`` runs on a host (one shell script), and how it reads the answer.

One remote command per host keeps a status run well under two seconds: the script reads
systemd, the process table, disks and the last backup, asks supervisord and the PM2 daemon
over their own sockets (their CLIs take up to a second each to start), and runs every
health check at the same time in the background, so a hung service costs its 2 s timeout
once instead of once per service. It changes nothing on the host, installs nothing (no
agent), and handles no secret: Redis is asked for a PING without credentials ("NOAUTH"
counts as an answer), and PM2's process list leaves the host without the processes'
environments.

The output is plain sections (``@@ name`` lines), parsed here by pure functions that the
unit tests feed with outputs recorded on a real host (tests/unit/status/).
"""

from __future__ import annotations

import json
import re
import xmlrpc.client
from dataclasses import dataclass, field
from typing import NamedTuple
from xml.parsers.expat import ExpatError

HEALTH_TIMEOUT = 2
UNIT_PROPERTIES = ("Id", "LoadState", "ActiveState", "SubState", "Result",
                   "ActiveEnterTimestampMonotonic", "NRestarts", "MainPID", "MemoryCurrent")
# The distro's supervisord log: "exited: NAME (...; not expected)" marks each crash.
SUPERVISOR_LOG = "/var/log/supervisor/supervisord.log"
# supervisord's control socket (the distro default; the deploy never changes it). Asking it
# over XML-RPC, as supervisorctl does, takes 30 ms; supervisorctl's Python start 0.4-1 s.
SUPERVISOR_SOCKET = "/var/run/supervisor.sock"
PM2 = "/usr/local/bin/pm2"
# pm2's own RPC client: asking the daemon directly costs 0.1 s, `pm2 jlist` about 1 s.
PM2_MODULES = "/usr/local/lib/node_modules/pm2/node_modules"

# Runs as the service user, prints the process list without the processes' environment
# (which holds secrets), falls back to `pm2 jlist` when pm2's internals move.
_PM2_LIST_JS = """
const [modules, sock, pm2] = process.argv.slice(1);
const fail = (e) => { console.log("error " + String((e && e.message) || e).split("\\n")[0]);
                      process.exit(0); };
const out = (list) => { console.log(JSON.stringify(list.map((p) => {
  const env = p.pm2_env || {};
  return { name: p.name, pm_id: p.pm_id, pid: p.pid, status: env.status,
           pm_uptime: env.pm_uptime, restart_time: env.restart_time,
           unstable_restarts: env.unstable_restarts, module: Boolean(env.pmx_module),
           memory: (p.monit || {}).memory };
}))); process.exit(0); };
setTimeout(() => fail("the PM2 daemon does not answer"), 3000);
let rpc;
try { rpc = [require(modules + "/pm2-axon"), require(modules + "/pm2-axon-rpc")]; }
catch (e) { rpc = null; }
if (rpc) {
  const req = rpc[0].socket("req");
  const client = new rpc[1].Client(req);
  req.connect(sock);
  client.call("getMonitorData", {}, (e, list) => (e ? fail(e) : out(list)));
} else {
  try {
    const text = require("child_process").execFileSync(pm2, ["jlist"], { timeout: 5000 })
      .toString();
    out(JSON.parse(text.slice(text.indexOf("["))));
  } catch (e) { fail(e); }
}
"""


@dataclass(frozen=True)
class Plan:
    """What to look at on one host."""

    units: tuple[str, ...] = ()            # systemd units (full names)
    postgres: bool = False                 # also the host's postgresql@VERSION-main unit
    postgres_version: int | None = None    # None: the newest cluster in /etc/postgresql
    urls: tuple[str, ...] = ()             # HTTP(S) health checks, all run at once
    postgres_port: int | None = None       # pg_isready
    redis_port: int | None = None          # redis-cli ping (NOAUTH answers too)
    supervisor: bool = False               # supervisord's programs + crash count from its log
    pm2: tuple[str, str, str] | None = None  # (service user, its HOME, PM2_HOME)
    disk_paths: tuple[str, ...] = ()
    backup_file: str | None = None


def script(plan: Plan) -> str:
    """The POSIX shell script (templates/status/scripts/probe.sh.j2), run as root with
    ``sh -s``; it prints ``@@`` sections."""
    # Here, not at the top: admin hosts import this module's parser without the deploy's
    # packages (templates/status/, status_rows.py).
    from operations import render

    return render.script(
        "status/scripts/probe.sh.j2", plan=plan, timeout=HEALTH_TIMEOUT,
        unit_properties=UNIT_PROPERTIES, supervisor_log=SUPERVISOR_LOG,
        supervisor_socket=SUPERVISOR_SOCKET, pm2=PM2, pm2_modules=PM2_MODULES,
        pm2_list_js=_PM2_LIST_JS,
    )


# --- reading the answer -------------------------------------------------------------------


class Process(NamedTuple):
    ppid: int
    rss: int           # KiB
    stat: str          # ps's STAT (T: stopped)
    unit: str | None   # systemd unit, None outside any


@dataclass
class Probe:
    """Everything one run of the script reported, parsed; None: not asked or not readable."""

    now: int | None = None                       # the host's clock (epoch seconds)
    monotonic: float | None = None               # seconds since boot (systemd's clock)
    units: dict[str, dict[str, str]] = field(default_factory=dict)
    supervisor: dict[str, dict] | None = None    # program -> state, pid, uptime, detail
    supervisor_error: str | None = None
    supervisor_crashes: dict[str, int] = field(default_factory=dict)
    processes: dict[int, Process] = field(default_factory=dict)
    pss: dict[int, int] = field(default_factory=dict)  # pid -> KiB
    disks: list[dict] = field(default_factory=list)
    backup: int | None = None                    # epoch of the last successful backup
    backup_ready: str | None = None              # why backups may run (restored, start-empty)
    archive: dict[str, str] = field(default_factory=dict)  # PostgreSQL archive state files
    http: dict[str, tuple[int, int]] = field(default_factory=dict)  # url -> code, curl exit
    postgres: int | None = None                  # pg_isready's exit status
    redis: tuple[int, str] | None = None         # exit status, first line of the answer
    pm2: list[dict] | None = None
    pm2_error: str | None = None
    monit: dict[str, str] | None = None          # service -> status
    monit_error: str | None = None

    def memory(self, pids) -> int | None:
        """Memory of these processes in bytes: Pss where readable, else RSS."""
        pids = [pid for pid in pids if pid in self.processes]
        if not pids:
            return None
        return sum(self.pss.get(pid, self.processes[pid].rss) for pid in pids) * 1024

    def tree(self, pid: int | None) -> list[int]:
        """A process and all its descendants."""
        if not pid or pid not in self.processes:
            return []
        children: dict[int, list[int]] = {}
        for child, process in self.processes.items():
            children.setdefault(process.ppid, []).append(child)
        found, todo = [], [pid]
        while todo:
            current = todo.pop()
            if current not in found:
                found.append(current)
                todo.extend(children.get(current, []))
        return found

    def unit_processes(self, unit: str) -> list[int]:
        return [pid for pid, process in self.processes.items() if process.unit == unit]

    def process_state(self, pid: int | None) -> str | None:
        """ps's STAT letter of a process (T: stopped, e.g. by SIGSTOP)."""
        entry = self.processes.get(pid) if pid else None
        return entry.stat[:1] if entry else None


def sections(output: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        if line.startswith("@@ "):
            current = found.setdefault(line[3:].strip(), [])
        elif current is not None:
            current.append(line)
    return found


def parse(output: str) -> Probe:
    """The script's output -> Probe."""
    found = sections(output)
    probe = Probe()
    clock = " ".join(found.get("clock", [])).split()
    if len(clock) == 2:
        probe.now, probe.monotonic = int(clock[0]), float(clock[1])
    probe.units = parse_units(found.get("units", []))
    if "supervisor" in found:
        probe.supervisor, probe.supervisor_error = parse_supervisor(found["supervisor"])
        probe.supervisor_crashes = parse_counts(found.get("supervisor-crashes", []))
    probe.processes = parse_ps(found.get("ps", []))
    probe.pss = parse_counts(found.get("pss", []))
    probe.disks = parse_disks(found.get("disk", []))
    backup = "".join(found.get("backup", [])).strip()
    probe.backup = int(backup) if backup.isdigit() else None
    probe.backup_ready = "".join(found.get("backup-ready", [])).strip() or None
    probe.archive = dict(line.split(" ", 1) for line in found.get("archive", []) if " " in line)
    probe.http = parse_http(found.get("http", []))
    if "postgres" in found:
        probe.postgres = _exit_status(found["postgres"])
    if "redis" in found:
        answer = [line for line in found["redis"] if not line.startswith("rc=")]
        probe.redis = (_exit_status(found["redis"]), answer[0].strip() if answer else "")
    if "pm2" in found:
        probe.pm2, probe.pm2_error = parse_pm2(found["pm2"])
    if "monit" in found:
        probe.monit, probe.monit_error = parse_monit(found["monit"])
    return probe


def parse_units(lines: list[str]) -> dict[str, dict[str, str]]:
    """``systemctl show`` blocks (separated by blank lines) -> {unit: {property: value}}."""
    units, block = {}, {}
    for line in [*lines, ""]:
        if not line.strip():
            if "Id" in block:
                units[block["Id"]] = block
            block = {}
            continue
        key, _, value = line.partition("=")
        block[key] = value
    return units


_SUPERVISOR_LINE = re.compile(
    r"^(?:[\w.-]+:)?(?P<name>[\w.-]+)\s+"
    r"(?P<state>STOPPED|STARTING|RUNNING|BACKOFF|STOPPING|EXITED|FATAL|UNKNOWN)\b\s*(?P<rest>.*)$"
)
_SUPERVISOR_UPTIME = re.compile(r"pid (\d+), uptime (?:(\d+) days?, )?(\d+):(\d\d):(\d\d)")


def parse_supervisor(lines: list[str]) -> tuple[dict[str, dict] | None, str | None]:
    """supervisord's answer to getAllProcessInfo (XML-RPC), or ``supervisorctl status``."""
    body = [line for line in lines if not line.startswith("rc=")]
    if body and body[0].startswith("<?xml"):
        return parse_supervisor_rpc("\n".join(body))
    return parse_supervisorctl(lines)


def parse_supervisor_rpc(xml: str) -> tuple[dict[str, dict] | None, str | None]:
    try:
        (processes,), _ = xmlrpc.client.loads(xml)
    except xmlrpc.client.Fault as e:
        return None, f"supervisord: {e.faultString}"
    except (ValueError, xmlrpc.client.ResponseError, ExpatError):
        return None, "unreadable answer from supervisord"
    programs = {}
    for p in processes:
        running = p["statename"] == "RUNNING"
        programs[p["name"]] = {
            "state": p["statename"],
            "pid": p["pid"] or None,
            "uptime": max(0, p["now"] - p["start"]) if running else None,
            "detail": "" if running else p["description"],
        }
    return programs, None


def parse_supervisorctl(lines: list[str]) -> tuple[dict[str, dict] | None, str | None]:
    """``supervisorctl status`` -> ({program: {state, pid, uptime, detail}}, error)."""
    programs = {}
    code = _exit_status(lines)
    lines = [line for line in lines if not line.startswith("rc=")]
    for line in lines:
        match = _SUPERVISOR_LINE.match(line.strip())
        if not match:
            continue
        entry = {"state": match["state"], "pid": None, "uptime": None,
                 "detail": match["rest"].strip()}
        uptime = _SUPERVISOR_UPTIME.search(match["rest"])
        if uptime:
            pid, days, hours, minutes, seconds = uptime.groups()
            entry["pid"] = int(pid)
            entry["uptime"] = (int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60
                               + int(seconds))
            entry["detail"] = ""
        programs[match["name"]] = entry
    if programs:
        return programs, None
    if code == 124:
        return None, "supervisorctl timed out (supervisord hung?)"
    text = " ".join(line.strip() for line in lines if line.strip())
    return None, text or "supervisorctl printed nothing"


def parse_counts(lines: list[str]) -> dict:
    """``KEY NUMBER`` lines; keys that are numbers (pids) become ints."""
    counts: dict = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            key = int(parts[0]) if parts[0].isdigit() else parts[0]
            counts[key] = int(parts[1])
    return counts


def parse_ps(lines: list[str]) -> dict[int, Process]:
    """``PID PPID RSS STAT [UNIT]`` lines (UNIT "-" outside any unit)."""
    processes = {}
    for line in lines:
        parts = line.split()
        if len(parts) >= 4 and parts[0].isdigit() and parts[1].isdigit() and parts[2].isdigit():
            unit = parts[4] if len(parts) > 4 and parts[4] != "-" else None
            processes[int(parts[0])] = Process(int(parts[1]), int(parts[2]), parts[3], unit)
    return processes


def parse_disks(lines: list[str]) -> list[dict]:
    """``PATH FILESYSTEM 1K-BLOCKS USED AVAILABLE CAPACITY% MOUNTPOINT`` lines."""
    disks = []
    for line in lines:
        parts = line.split()
        if len(parts) < 7 or not parts[5].endswith("%"):
            continue
        size, used, available = (int(x) for x in parts[2:5])
        disks.append({"path": parts[0], "mount": " ".join(parts[6:]),
                      "size": size * 1024, "used": used * 1024,
                      "percent": int(parts[5].rstrip("%"))})
    return disks


def parse_http(lines: list[str]) -> dict[str, tuple[int, int]]:
    results = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            results[parts[0]] = (int(parts[1]), int(parts[2]))
    return results


def parse_pm2(lines: list[str]) -> tuple[list[dict] | None, str | None]:
    text = "\n".join(lines).strip()
    if not text:
        return None, "no answer from PM2"
    if text.startswith("error "):
        return None, text[len("error "):]
    try:
        processes = json.loads(text)
    except ValueError:
        return None, f"unreadable answer from PM2: {text[:80]!r}"
    return [p for p in processes if isinstance(p, dict)], None


_MONIT_TYPES = ("Remote Host", "System", "Process", "File", "Fifo", "Filesystem", "Directory",
                "Program", "Network")


def parse_monit(lines: list[str]) -> tuple[dict[str, str] | None, str | None]:
    """``monit -B summary``: a header line, then ``NAME  STATUS  TYPE`` per service."""
    services, header = {}, False
    for line in lines:
        if line.startswith("rc="):
            continue
        if "Service Name" in line:
            header = True
            continue
        if not header or not line.strip():
            continue
        text = line.strip()
        kind = next((t for t in _MONIT_TYPES if text.endswith(t)), None)
        if kind is None:
            continue
        name, _, status = text[: -len(kind)].strip().partition(" ")
        services[name] = status.strip()
    if header:
        return services, None
    text = " ".join(line.strip() for line in lines if line.strip() and not line.startswith("rc="))
    return None, text or "monit printed nothing"


def _exit_status(lines: list[str]) -> int | None:
    for line in reversed(lines):
        if line.startswith("rc=") and line[3:].strip().isdigit():
            return int(line[3:].strip())
    return None
