"""The run lock and history: records, staleness, the shell programs run for real in a
temporary directory, and the pyinfra hook against hosts that run them locally."""

from __future__ import annotations

import json
import subprocess
from types import SimpleNamespace

import pytest
from pyinfra.api import DeployError

from operations import render
from operations import runlock as hook_module
from orchestra_infra import runlock
from tests.unit.test_shell_scripts import LITERAL, shellcheck

HOSTILE = "/srv/it's a $(reboot) `id` dir;*"


def holder(**changes) -> runlock.Holder:
    base = dict(operator="ann", control="laptop", command="pyinfra deploy.py", pid=4242,
                boot_id="boot-1", started=1_700_000_000.0, run_id="r1")
    return runlock.Holder(**{**base, **changes})


def test_a_holder_survives_its_json_and_anything_else_is_not_a_holder():
    h = holder(command='orchestra-infra "rollback" prod\n')
    assert runlock.Holder.parse(h.to_json()) == h
    for text in ("", "{", "[]", '{"operator": "x"}', "held by someone"):
        assert runlock.Holder.parse(text) is None
    assert "ann@laptop (pid 4242) since 2023-11-14 22:13:20 UTC" in h.describe()


@pytest.mark.parametrize("case, expected", [
    (dict(), None),
    (dict(pid_alive=lambda pid: False), "its process (pid 4242) on laptop is gone"),
    (dict(boot_id="boot-2"), "laptop has restarted since the run began"),
    (dict(here="other"), None),  # another machine's run: only its age tells
    (dict(here="other", now=1_700_000_000.0 + 7 * 3600), "more than 6 hours ago"),
])
def test_staleness(case, expected):
    args = dict(now=1_700_000_100.0, here="laptop", boot_id="boot-1", pid_alive=lambda pid: True)
    reason = runlock.stale_reason(holder(), **{**args, **case})
    assert (reason is None) if expected is None else (expected in reason)
    assert "not one a run of orchestra-infra wrote" in runlock.stale_reason(None)


def test_the_refusal_names_holder_and_since_and_the_way_out():
    message = runlock.refusal("h1", "/var/lib/orchestra-infra/lock", holder().to_json(), None)
    assert message.startswith("h1: locked by ann@laptop (pid 4242) since 2023-11-14")
    assert "Nothing was changed" in message and "--force-unlock" in message
    stale = runlock.refusal("h1", "/l", holder().to_json(), "its process is gone")
    assert "looks stale: its process is gone" in stale and "ORCHESTRA_FORCE_UNLOCK=1" in stale


def test_a_history_line_holds_what_the_issue_asks():
    record = json.loads(runlock.history_record(holder(), "abc", True, "rel-1", 3, "success",
                                               broke=holder(operator="bob"), ended=5.0))
    assert {k: record[k] for k in ("operator", "control", "commit", "dirty", "release",
                                   "changed", "outcome", "time", "ended")} == {
        "operator": "ann", "control": "laptop", "commit": "abc", "dirty": True,
        "release": "rel-1", "changed": 3, "outcome": "success", "time": 1_700_000_000.0,
        "ended": 5.0}
    assert record["broke_lock_of"].startswith("bob@laptop")
    assert runlock.release_name("/opt/orchestra/releases/0123abcd\n") == "0123abcd"
    assert runlock.release_name("") == ""


def test_the_repository_state_is_read_from_git(tmp_path):
    assert runlock.repository_state(tmp_path) == ("unknown", None)
    repo = tmp_path / "checkout"
    repo.mkdir()
    (repo / "deploy.py").write_text("first\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@localhost"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "first"]):
        subprocess.run(git + args, check=True, capture_output=True)
    commit, dirty = runlock.repository_state(repo)
    assert len(commit) == 40 and dirty is False
    (repo / "deploy.py").write_text("changed\n")
    assert runlock.repository_state(repo) == (commit, True)


# --- the programs ----------------------------------------------------------------------------

def take(root, record: str, replace: str = "") -> str:
    return render.script("runlock/scripts/take.sh.j2", state_root=str(root),
                         lock=f"{root}/lock", record=record, replace=replace)


def finish(root, line: str, run: str) -> str:
    return render.script("runlock/scripts/finish.sh.j2", line=line,
                         history=f"{root}/history.jsonl", run=run, lock=f"{root}/lock")


def sh(text: str) -> str:
    return subprocess.run(["sh", "-c", text], capture_output=True, text=True,
                          check=True).stdout


def test_the_programs_pass_shellcheck_with_hostile_paths():
    for root in ("/var/lib/orchestra-infra", HOSTILE):
        shellcheck(take(root, holder().to_json(), replace='"run_id": "x"'), LITERAL)
        shellcheck(finish(root, '{"a": "$(id)"}', '"run_id": "x"'), LITERAL)


def test_one_lock_at_a_time_released_only_by_its_run(tmp_path):
    root = tmp_path / "state it's $(x)"
    first, second = holder(run_id="r1"), holder(run_id="r2", operator="bob")
    assert sh(take(root, first.to_json())) == "taken\n"
    out = sh(take(root, second.to_json()))
    assert out.splitlines()[0] == "held" and runlock.Holder.parse(out.split("\n", 1)[1]) == first
    assert [p.name for p in root.iterdir()] == ["lock"]  # no temporary file left behind
    sh(finish(root, '{"run": 2}', '"run_id": "r2"'))  # not its lock: kept
    assert (root / "lock").exists()
    sh(finish(root, '{"run": 1}', '"run_id": "r1"'))
    assert not (root / "lock").exists()
    assert (root / "history.jsonl").read_text() == '{"run": 2}\n{"run": 1}\n'
    assert oct((root / "history.jsonl").stat().st_mode & 0o777) == "0o640"


def test_breaking_replaces_only_the_lock_that_was_seen(tmp_path):
    sh(take(tmp_path, holder(run_id="r1").to_json()))
    assert sh(take(tmp_path, holder(run_id="r3").to_json(), replace='"run_id": "r2"')) \
        .startswith("held")
    out = sh(take(tmp_path, holder(run_id="r3").to_json(), replace='"run_id": "r1"'))
    assert out.splitlines()[0] == "broken"
    assert runlock.Holder.parse((tmp_path / "lock").read_text()).run_id == "r3"
    assert oct((tmp_path / "lock").stat().st_mode & 0o777) == "0o600"


# --- the hook, against hosts that run its programs here ---------------------------------------

class LocalHost:
    def __init__(self, name: str):
        self.name, self.print_prefix, self.op_hash_order = name, f"[{name}] ", []

    def run_shell_command(self, command, _sudo):
        text = command.bits[2].obj  # StringCommand("sh", "-c", QuoteString(text))
        result = subprocess.run(["sh", "-c", text], capture_output=True, text=True)
        return result.returncode == 0, SimpleNamespace(stdout=result.stdout)


@pytest.fixture
def two_hosts(tmp_path, monkeypatch):
    monkeypatch.delenv(runlock.FORCE_ENV, raising=False)
    monkeypatch.setattr(runlock, "repository_state", lambda: ("c0ffee", False))
    hosts = [LocalHost("a"), LocalHost("b")]
    hook = hook_module._Hook()
    hook.holder = holder(run_id="mine", operator="me")
    for h in hosts:
        hook.runs[h] = hook_module._Run(state_root=str(tmp_path / h.name),
                                        current=str(tmp_path / "current"))
    state = SimpleNamespace(
        inventory=SimpleNamespace(get_active_hosts=lambda: hosts), failed_hosts=set(),
        get_op_order=lambda: ["op1", "op2"], ops={h: {} for h in hosts})
    return hook, state, hosts, tmp_path


def test_a_run_locks_every_host_and_records_itself(two_hosts):
    hook, state, hosts, tmp = two_hosts
    hook.operation_start(state, "op1")
    assert runlock.Holder.parse((tmp / "b" / "lock").read_text()).run_id == "mine"
    hook.operation_end(state, "op1")
    assert (tmp / "a" / "lock").exists()
    state.failed_hosts.add(hosts[1])
    hook.operation_end(state, "op2")
    assert not (tmp / "a" / "lock").exists() and not (tmp / "b" / "lock").exists()
    a = json.loads((tmp / "a" / "history.jsonl").read_text())
    b = json.loads((tmp / "b" / "history.jsonl").read_text())
    assert (a["outcome"], b["outcome"], a["commit"], a["operator"]) == \
        ("success", "failed", "c0ffee", "me")
    hook.host_disconnect(state, hosts[0])  # nothing left to do
    assert len((tmp / "a" / "history.jsonl").read_text().splitlines()) == 1


def test_a_locked_host_stops_the_run_before_any_change_everywhere(two_hosts):
    hook, state, hosts, tmp = two_hosts
    sh(take(tmp / "b", holder(run_id="theirs", operator="bob").to_json()))
    with pytest.raises(DeployError, match="b: locked by bob@laptop"):
        hook.operation_start(state, "op1")
    assert not (tmp / "a" / "lock").exists()  # taken, then given back
    assert not (tmp / "a" / "history.jsonl").exists()
    assert runlock.Holder.parse((tmp / "b" / "lock").read_text()).run_id == "theirs"


def test_force_unlock_breaks_the_lock_loudly_and_records_it(two_hosts, monkeypatch, caplog):
    hook, state, hosts, tmp = two_hosts
    sh(take(tmp / "b", holder(run_id="theirs", operator="bob", pid=999999999).to_json()))
    hosts[1].op_hash_order = ["op1"]  # never executed: the run stopped before it
    state.ops[hosts[1]] = {"op1": SimpleNamespace(operation_meta=SimpleNamespace(
        is_complete=lambda: False, did_succeed=lambda _raise_if_not_complete=True: False))}
    monkeypatch.setenv(runlock.FORCE_ENV, "1")
    hook.operation_start(state, "op1")
    assert "BROKE the run lock of bob@laptop" in caplog.text
    hook.host_disconnect(state, hosts[1])  # the run ended early
    record = json.loads((tmp / "b" / "history.jsonl").read_text())
    assert record["outcome"] == "interrupted" and record["broke_lock_of"].startswith("bob@")
    assert not (tmp / "b" / "lock").exists()


# --- the same lock, taken over SSH by a command that is no deploy file (backup) -----------------

def local_run(target, script):
    result = subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True)
    return (result.stdout, None) if result.returncode == 0 else (None, result.stderr or "exit")


@pytest.fixture
def remote(tmp_path, monkeypatch):
    from orchestra_infra import runlock_remote, status_hosts

    monkeypatch.setattr(runlock, "repository_state", lambda: ("c0ffee", True))
    targets = [status_hosts.Target(name, groups, {"state_root": str(tmp_path / name),
                                                  "install_root": str(tmp_path)})
               for name, groups in (("db", ("data",)), ("web", ("edge", "app")))]
    return runlock_remote, targets, tmp_path


def test_a_backup_locks_only_its_hosts_and_records_its_outcome(remote):
    module, targets, tmp = remote
    with module.locked("sandbox", ("data",), "orchestra-infra backup sandbox", False, print,
                       run=local_run, targets=targets) as session:
        assert (tmp / "db" / "lock").exists() and not (tmp / "web").exists()
        session.outcome = "success"
    assert not (tmp / "db" / "lock").exists()
    record = json.loads((tmp / "db" / "history.jsonl").read_text())
    assert (record["outcome"], record["command"], record["dirty"], record["changed"]) == \
        ("success", "orchestra-infra backup sandbox", True, None)


def test_a_held_host_stops_the_backup_and_force_unlock_breaks_it(remote):
    module, targets, tmp = remote
    sh(take(tmp / "db", holder(run_id="theirs", operator="bob").to_json()))
    with pytest.raises(module.Locked, match="db: locked by bob@laptop"):
        with module.locked("sandbox", ("data",), "b", False, print, run=local_run,
                           targets=targets):
            pytest.fail("ran while locked")
    said = []
    with module.locked("sandbox", ("db",), "b", True, said.append, run=local_run,
                       targets=targets):
        pass
    assert said and said[0].startswith("[db] BROKE the run lock of bob@laptop")
    record = json.loads((tmp / "db" / "history.jsonl").read_text())
    assert record["outcome"] == "interrupted" and record["broke_lock_of"].startswith("bob@")
    assert not (tmp / "db" / "lock").exists()


def test_a_lost_host_at_the_end_does_not_keep_the_others_locked(two_hosts, caplog):
    hook, state, hosts, tmp = two_hosts
    hook.operation_start(state, "op1")

    def lost(command, _sudo):
        raise OSError("Socket is closed")

    hosts[0].run_shell_command = lost
    hook.operation_end(state, "op2")
    assert "[a] could not record the run or release the run lock" in caplog.text
    assert not (tmp / "b" / "lock").exists() and (tmp / "b" / "history.jsonl").exists()


def test_a_hostile_holder_arrives_as_one_literal_record(tmp_path):
    nasty = holder(operator="o'neil $(id)", control="`reboot`;host", command="x\n\x1b[2J'\"")
    assert sh(take(tmp_path, nasty.to_json())) == "taken\n"
    assert runlock.Holder.parse((tmp_path / "lock").read_text()) == nasty
    line = runlock.history_record(nasty, "c", False, "r", 1, "success")
    sh(finish(tmp_path, line, f'"run_id": "{nasty.run_id}"'))
    assert json.loads((tmp_path / "history.jsonl").read_text())["operator"] == "o'neil $(id)"
    assert not (tmp_path / "lock").exists()
