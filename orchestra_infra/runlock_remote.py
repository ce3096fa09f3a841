"""The run lock and history for a command that is no deploy file (``orchestra-infra backup``
runs ``pyinfra exec``, which no deploy code sees): taken over SSH before, given back with
the history line after, with the same programs and records as operations/runlock.py."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from operations import render

from . import config as config_module
from . import runlock, status_hosts


class Locked(Exception):
    """A host is held by another run (the message says by whom), or cannot be locked."""


@dataclass
class Session:
    holder: runlock.Holder
    taken: list[status_hosts.Target] = field(default_factory=list)
    broke: dict[str, runlock.Holder | None] = field(default_factory=dict)
    outcome: str = "interrupted"


def select(targets: list[status_hosts.Target], limits: tuple[str, ...]
           ) -> list[status_hosts.Target]:
    """The hosts pyinfra's ``--limit`` would keep: a group, a host name or its label."""
    return [t for t in targets
            if any(limit in t.groups or limit in (t.name, t.label) for limit in limits)]


def _root(target: status_hosts.Target) -> str:
    return target.data["state_root"]


def _take(target, session: Session, force: bool,
          run: Callable = status_hosts.run_script) -> str | None:
    root = _root(target)
    path = runlock.lock_path(root)
    args = dict(state_root=root, lock=path, record=session.holder.to_json())
    out, error = run(target, render.script("runlock/scripts/take.sh.j2", replace="", **args))
    if error is not None:
        return f"{target.label}: cannot take the run lock {path}: {error}"
    first, _, rest = out.partition("\n")
    if first.strip() == runlock.TAKEN:
        session.taken.append(target)
        return None
    holder = runlock.Holder.parse(rest)
    if not force:
        return runlock.refusal(target.label, path, rest, runlock.stale_reason(holder))
    replace = (f'"run_id": "{holder.run_id}"' if holder
               else (rest.strip().splitlines() or [""])[0])
    out, error = run(target, render.script("runlock/scripts/take.sh.j2", replace=replace,
                                           **args))
    if error is not None or out.partition("\n")[0].strip() != runlock.BROKEN:
        return f"{target.label}: the lock {path} changed hands meanwhile; nothing was changed"
    session.taken.append(target)
    session.broke[target.name] = holder
    return None


def _finish(target, session: Session, record: bool, run: Callable) -> None:
    root = _root(target)
    line = ""
    if record:
        commit, dirty = runlock.repository_state()
        out, _ = run(target, f"readlink {shlex.quote(target.data['install_root'])}"
                             "/current || true\n")
        line = runlock.history_record(session.holder, commit, dirty,
                                      runlock.release_name(out or ""), None, session.outcome,
                                      broke=session.broke.get(target.name))
    run(target, render.script("runlock/scripts/finish.sh.j2", line=line,
                              history=runlock.history_path(root),
                              run=f'"run_id": "{session.holder.run_id}"',
                              lock=runlock.lock_path(root)))


@contextmanager
def locked(env: str, limits: tuple[str, ...], command: str, force: bool,
           echo: Callable[[str], None], run: Callable = status_hosts.run_script,
           targets: list[status_hosts.Target] | None = None) -> Iterator[Session]:
    """Hold the run lock of ENV's hosts named by ``limits`` while the block runs; set the
    session's ``outcome`` for the history. Raises Locked before the block when a host is
    held (every lock this took is given back)."""
    if targets is None:
        targets = status_hosts.targets(env, config_module.environment_data(env))
    session = Session(runlock.Holder.here(command))
    refusals = [why for t in select(targets, limits)
                if (why := _take(t, session, force, run)) is not None]
    if refusals:
        for target in session.taken:
            _finish(target, session, False, run)
        raise Locked("\n".join(refusals))
    for name, holder in session.broke.items():
        echo(f"[{name}] BROKE the run lock of "
             f"{holder.describe() if holder else 'an unreadable lock'} (--force-unlock)")
    try:
        yield session
    finally:
        for target in session.taken:  # every lock given back, whatever one host says
            try:
                _finish(target, session, True, run)
            except Exception as e:  # noqa: BLE001 (the others must still be released)
                echo(f"[{target.label}] could not record the run or release its lock "
                     f"({runlock.lock_path(_root(target))}): {e}")
