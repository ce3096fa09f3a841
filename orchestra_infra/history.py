"""``orchestra-infra history ENV``: the runs each host recorded (orchestra_infra/runlock.py),
newest last, and who holds a host's run lock now."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import config as config_module
from . import runlock, status_hosts

LOCK_MARK = "--- lock ---"


@dataclass
class HostHistory:
    host: str
    runs: list[dict]
    lock: str | None = None      # the lock's content, when a run holds it
    error: str | None = None


def script(state_root: str, limit: int) -> str:
    """What each host runs: the last ``limit`` history lines, then the lock, if any."""
    history, lock = runlock.history_path(state_root), runlock.lock_path(state_root)
    return (f"tail -n {int(limit)} {shlex.quote(history)} 2>/dev/null || true\n"
            f"if [ -e {shlex.quote(lock)} ]; then echo {shlex.quote(LOCK_MARK)}; "
            f"cat {shlex.quote(lock)}; fi\n")


def parse(host: str, out: str | None, error: str | None) -> HostHistory:
    if error is not None or out is None:
        return HostHistory(host, [], error=error or "no answer")
    text, _, lock = out.partition(LOCK_MARK + "\n")
    runs = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            runs.append({"host": host, **record})
    return HostHistory(host, runs, lock=lock.strip() or None)


def _when(seconds) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(seconds)))
    except (TypeError, ValueError, OverflowError):
        return "?"


def table(histories: list[HostHistory]) -> list[str]:
    runs = sorted((r for h in histories for r in h.runs), key=lambda r: r.get("time") or 0)
    lines = [f"{'time (UTC)':19}  {'host':16} {'who':24} {'commit':12} {'release':14} "
             f"{'changed':>7}  {'outcome':11} command"]
    for r in runs:
        commit = str(r.get("commit", "?"))[:10] + ("+" if r.get("dirty") else "")
        who = f"{r.get('operator', '?')}@{r.get('control', '?')}"
        changed = "-" if r.get("changed") is None else r["changed"]
        lines.append(f"{_when(r.get('time')):19}  {r['host'][:16]:16} {who[:24]:24} "
                     f"{commit:12} {str(r.get('release') or '-')[:14]:14} "
                     f"{changed:>7}  {str(r.get('outcome', '?')):11} "
                     f"{r.get('command', '?')}"
                     + (f" (broke the lock of {r['broke_lock_of']})" if r.get("broke_lock_of")
                        else ""))
    for h in histories:
        if h.error:
            lines.append(f"{h.host}: cannot read the history: {h.error}")
        elif h.lock:
            holder = runlock.Holder.parse(h.lock)
            lines.append(f"{h.host}: LOCKED by "
                         + (holder.describe() if holder else repr(h.lock[:200])))
    lines.append("(commit+: the checkout had uncommitted changes)")
    return lines


def run(env: str, as_json: bool, limit: int, echo: Callable[[str], None],
        overrides: dict | None = None) -> int:
    """Print ENV's history; 1 when a host could not be read."""
    data = config_module.environment_data(env, overrides)
    targets = status_hosts.targets(env, data)
    answers = status_hosts.run_everywhere(
        targets, lambda t: script(t.data.get("state_root", data["state_root"]), limit))
    histories = [parse(t.label, *answers[t.name]) for t in targets]
    if as_json:
        echo(json.dumps([{"host": h.host, "runs": h.runs, "lock": h.lock, "error": h.error}
                         for h in histories], indent=2, sort_keys=True))
    else:
        for line in table(histories):
            echo(line)
    return 1 if any(h.error for h in histories) else 0
