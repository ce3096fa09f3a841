"""The run lock and the history of runs, kept by pyinfra's own run (orchestra_infra/runlock.py).

    runlock.guard(config, "deploy.py")     # deploy.py, rollback.py, restore.py, while planning

Nothing here is an operation. The lock is taken on every host of the run just before the
first operation executes (after the preview and the confirmation: ``--dry`` and a declined
run take and record nothing), the run stops there, before any change, when a host is locked,
and the lock is removed with the run's history line appended after the last operation, or,
when the run ended early (an error, a failed host), as pyinfra disconnects. So plain
``pyinfra inventories/prod.py deploy.py`` is locked like the wrappers, and a converged host's
second run still reports zero changed operations: the run's own bookkeeping is two SSH
commands per host outside pyinfra's count, as a fact read would be.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from pyinfra import logger
from pyinfra import state as current_state
from pyinfra.api import DeployError, QuoteString, StringCommand
from pyinfra.api.state import BaseStateCallback

from operations import render
from orchestra_infra import runlock


@dataclass
class _Run:
    state_root: str
    current: str
    taken: bool = False
    finished: bool = False
    broke: runlock.Holder | None = None


def _sh(host, text: str) -> tuple[bool, str]:
    ok, output = host.run_shell_command(StringCommand("sh", "-c", QuoteString(text)),
                                        _sudo=True)
    return ok, output.stdout


class _Hook(BaseStateCallback):
    """One per pyinfra state: takes and releases every guarded host's lock."""

    def __init__(self):
        self.runs: dict[object, _Run] = {}
        self.holder: runlock.Holder | None = None
        self.last_op: str | None = None
        self.repository: tuple[str, bool | None] | None = None

    # --- taking ------------------------------------------------------------------------------

    def _take(self, host) -> str | None:
        """Take ``host``'s lock; why not when it is held (None: taken)."""
        run = self.runs[host]
        path = runlock.lock_path(run.state_root)
        script = dict(state_root=run.state_root, lock=path, record=self.holder.to_json())
        ok, out = _sh(host, render.script("runlock/scripts/take.sh.j2", replace="", **script))
        if not ok:
            return f"{host.name}: cannot take the run lock {path}"
        first, _, rest = out.partition("\n")
        if first.strip() == runlock.TAKEN:
            run.taken = True
            return None
        holder = runlock.Holder.parse(rest)
        if not runlock.force_wanted():
            return runlock.refusal(host.name, path, rest, runlock.stale_reason(holder))
        # The operator asked for it: replace that holder's lock, if it is still that one.
        replace = (f'"run_id": "{holder.run_id}"' if holder
                   else (rest.strip().splitlines() or [""])[0])
        ok, out = _sh(host, render.script("runlock/scripts/take.sh.j2", replace=replace,
                                          **script))
        first, _, rest = out.partition("\n")
        if not ok or first.strip() not in (runlock.TAKEN, runlock.BROKEN):
            return f"{host.name}: the lock {path} changed hands meanwhile; nothing was changed"
        run.taken, run.broke = True, holder
        who = holder.describe() if holder else repr(rest.strip()[:200])
        logger.warning(f"{host.print_prefix}BROKE the run lock of {who} (--force-unlock)")
        return None

    def _take_all(self, state, hosts) -> None:
        refusals = []
        for host in hosts:
            if host in self.runs and not self.runs[host].taken:
                why = self._take(host)
                if why:
                    refusals.append(why)
        if refusals:
            for host, run in self.runs.items():
                if run.taken and not run.finished:
                    self._finish(state, host, None)
            raise DeployError("\n".join(refusals))

    def operation_start(self, state, op_hash):
        # Every host at once before the first operation: a locked host stops them all.
        self._take_all(state, list(state.inventory.get_active_hosts()))

    def operation_host_start(self, state, host, op_hash):
        # The serial and no-wait modes have no operation_start.
        self._take_all(state, [host])

    # --- releasing ---------------------------------------------------------------------------

    def _finish(self, state, host, outcome: str | None) -> None:
        """Append the run's history line (unless ``outcome`` is None) and release."""
        self.runs[host].finished = True
        try:
            self._record_and_release(state, host, outcome)
        except Exception as e:  # noqa: BLE001 (a lost connection: the other hosts still)
            logger.warning(f"{host.print_prefix}could not record the run or release the run "
                           f"lock {runlock.lock_path(self.runs[host].state_root)}: {e}")

    def _record_and_release(self, state, host, outcome: str | None) -> None:
        run = self.runs[host]
        line = ""
        if outcome is not None:
            if self.repository is None:
                self.repository = runlock.repository_state()
            _, target = _sh(host, f"readlink {shlex.quote(run.current)} || true")
            commit, dirty = self.repository
            line = runlock.history_record(self.holder, commit, dirty,
                                          runlock.release_name(target), _changed(state, host),
                                          outcome, broke=run.broke)
        ok, _ = _sh(host, render.script(
            "runlock/scripts/finish.sh.j2", line=line, history=runlock.history_path(run.state_root),
            run=f'"run_id": "{self.holder.run_id}"', lock=runlock.lock_path(run.state_root)))
        if not ok:
            logger.warning(f"{host.print_prefix}could not release the run lock "
                           f"{runlock.lock_path(run.state_root)}: remove it by hand")

    def operation_end(self, state, op_hash):
        if self.last_op is None:
            self.last_op = state.get_op_order()[-1]
        if op_hash != self.last_op:
            return
        for host, run in self.runs.items():
            if run.taken and not run.finished:
                self._finish(state, host, _outcome(state, host))

    def host_disconnect(self, state, host):
        # The run ended before its last operation (an error, every host failed), or ran
        # host by host (--serial, --no-wait: no operation_end).
        run = self.runs.get(host)
        if run and run.taken and not run.finished:
            self._finish(state, host, _outcome(state, host))


def _metas(state, host) -> list:
    return [state.ops[host][h].operation_meta for h in host.op_hash_order if h in state.ops[host]]


def _outcome(state, host) -> str:
    metas = _metas(state, host)
    if host in state.failed_hosts or any(m.is_complete() and not m.did_succeed() for m in metas):
        return "failed"
    return "success" if all(m.is_complete() for m in metas) else "interrupted"


def _changed(state, host) -> int:
    return sum(1 for m in _metas(state, host)
               if m.did_succeed(_raise_if_not_complete=False) and m.did_change())


_hooks: dict[int, _Hook] = {}


def guard(config, command: str) -> None:
    """Lock the current host for this run (see the module's docstring); ``command``: the
    deploy file, which the history names unless a wrapper named itself (ORCHESTRA_COMMAND)."""
    from pyinfra import host

    hook = _hooks.get(id(current_state._get_module()))
    if hook is None:
        hook = _hooks[id(current_state._get_module())] = _Hook()
        current_state.add_callback_handler(hook)
    if hook.holder is None:
        hook.holder = runlock.Holder.here(runlock.command_line(
            f"pyinfra inventories/{config.environment}.py {command}"))
    hook.runs[host._get_module()] = _Run(state_root=config.state_root,
                                         current=f"{config.install_root}/current")
