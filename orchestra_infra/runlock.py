"""The deploy lock and the run history a host keeps: records, staleness, messages.

Every run that changes hosts (deploy.py, rollback.py, restore.py, so also ``reprovision``,
and ``orchestra-infra backup``, through runlock_remote.py) takes ``{state_root}/lock`` on
each host before its first change and removes it at the end, also when the run failed.
The lock is one JSON object written atomically (a temporary file hard-linked into place:
``ln`` refuses an existing name, so two runs never both win). A second run stops before
any change, naming the holder and since when; a lock whose run is known to be gone is
called stale, and is broken only with ``--force-unlock`` (``ORCHESTRA_FORCE_UNLOCK=1`` for
plain pyinfra), loudly, and recorded in the history.

``{state_root}/history.jsonl`` gets one JSON line per run and host: time, operator and
control machine, the repository's commit and whether it had uncommitted changes, the live
app release, the number of changed operations and the outcome.

This module is pure (records, decisions, the shell programs' text); operations/runlock.py
runs it inside pyinfra, orchestra_infra/history.py reads it back.
"""

from __future__ import annotations

import getpass
import json
import os
import posixpath
import socket
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .paths import project_root

LOCK = "lock"
HISTORY = "history.jsonl"
# A run older than this is stale whatever else is known: no deploy of this stack takes
# hours (a first run is minutes), and a lock held by another control machine cannot be
# checked otherwise.
STALE_AFTER = 6 * 3600
FORCE_ENV = "ORCHESTRA_FORCE_UNLOCK"
COMMAND_ENV = "ORCHESTRA_COMMAND"
# What take.sh prints on its first line.
TAKEN, HELD, BROKEN = "taken", "held", "broken"


def lock_path(state_root: str) -> str:
    return posixpath.join(state_root, LOCK)


def history_path(state_root: str) -> str:
    return posixpath.join(state_root, HISTORY)


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:  # macOS and other systems without it: only the age bound applies
        return ""


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


@dataclass(frozen=True)
class Holder:
    """Who runs what, from where, since when: the lock's content."""

    operator: str
    control: str
    command: str
    pid: int
    boot_id: str
    started: float
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def here(cls, command: str) -> Holder:
        return cls(_operator(), socket.gethostname(), command, os.getpid(), _boot_id(),
                   round(time.time(), 3))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        """A lock file's content; None when it is not a lock this code wrote."""
        try:
            data = json.loads(text)
            return cls(str(data["operator"]), str(data["control"]), str(data["command"]),
                       int(data["pid"]), str(data["boot_id"]), float(data["started"]),
                       str(data["run_id"]))
        except (ValueError, KeyError, TypeError):
            return None

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        return (f"{self.operator}@{self.control} (pid {self.pid}) since {since}: "
                f"{self.command}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_reason(holder: Holder | None, now: float | None = None, here: str | None = None,
                 boot_id: str | None = None, pid_alive=_pid_alive) -> str | None:
    """Why the run that holds the lock is known to be gone; None when it may still run."""
    if holder is None:
        return "the lock file is not one a run of orchestra-infra wrote"
    now = time.time() if now is None else now
    here = socket.gethostname() if here is None else here
    boot_id = _boot_id() if boot_id is None else boot_id
    if holder.control == here and holder.boot_id and boot_id:
        if holder.boot_id != boot_id:
            return f"{here} has restarted since the run began"
        if not pid_alive(holder.pid):
            return f"its process (pid {holder.pid}) on {here} is gone"
    if now - holder.started > STALE_AFTER:
        return f"it began more than {STALE_AFTER // 3600} hours ago"
    return None


def refusal(host: str, path: str, text: str, reason: str | None) -> str:
    """The message of a run that stops because ``host`` is locked."""
    holder = Holder.parse(text)
    who = holder.describe() if holder else repr(text.strip()[:200])
    message = f"{host}: locked by {who} ({path}). Nothing was changed."
    if reason:
        return (f"{message} The lock looks stale: {reason}. If that run is really over, "
                f"run again with --force-unlock ({FORCE_ENV}=1 for plain pyinfra).")
    return (f"{message} Wait for that run to end; if it is known to be dead, run again with "
            f"--force-unlock ({FORCE_ENV}=1 for plain pyinfra).")


def force_wanted() -> bool:
    return os.environ.get(FORCE_ENV, "") not in ("", "0")


def command_line(default: str) -> str:
    """What the history calls this run: the wrapper's command when one ran pyinfra."""
    return os.environ.get(COMMAND_ENV) or default


# --- the control machine's side of a history line ----------------------------------------------

def repository_state(root: Path | None = None) -> tuple[str, bool | None]:
    """(commit, has uncommitted changes) of the checkout the run comes from; ("unknown",
    None) outside git."""
    root = root or project_root()
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=root, capture_output=True, text=True, timeout=10,
                                check=True).stdout
    except (OSError, subprocess.SubprocessError, AttributeError, TypeError):
        return "unknown", None
    return commit, bool(status.strip())


def history_record(holder: Holder, commit: str, dirty: bool | None, release: str,
                   changed: int | None, outcome: str, broke: Holder | None = None,
                   ended: float | None = None) -> str:
    """One line of history.jsonl; ``changed`` None: not a deploy (a backup through
    ``pyinfra exec``), no operations to count."""
    record = {
        "time": round(holder.started, 3),
        "ended": round(time.time() if ended is None else ended, 3),
        "operator": holder.operator,
        "control": holder.control,
        "command": holder.command,
        "commit": commit,
        "dirty": dirty,
        "release": release,
        "changed": changed,
        "outcome": outcome,
        "run_id": holder.run_id,
    }
    if broke is not None:
        record["broke_lock_of"] = broke.describe()
    return json.dumps(record, sort_keys=True)


def release_name(link_target: str) -> str:
    """``readlink {install_root}/current`` -> the release id; "" when there is none."""
    return posixpath.basename(link_target.strip().rstrip("/"))
