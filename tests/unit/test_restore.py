"""Restore: which snapshot, and no data replaced unless forced (decided while planning)."""

import pytest
from pyinfra.api import DeployError
from pyinfra.context import ctx_host, ctx_state
from pyinfra_testing.util import FakeState, create_host

from operations import backup, restore
from orchestra_infra import config as config_module
from orchestra_infra import schema, secrets


def _config():
    return schema.validate(config_module.environment_data("prod", {"weaviate_sha256": "0" * 64}),
                           secrets.NAMES)


SNAPSHOTS = [
    {"id": "aaaa1111", "short_id": "aaaa1111", "time": "2026-01-01T03:15:00Z",
     "hostname": "orchestra-prod", "tags": ["orchestra"]},
    {"id": "bbbb2222", "short_id": "bbbb2222", "time": "2026-01-02T03:15:00Z",
     "hostname": "orchestra-prod", "tags": ["orchestra"]},
    {"id": "cccc3333", "short_id": "cccc3333", "time": "2026-01-03T03:15:00Z",
     "hostname": "orchestra-staging", "tags": ["orchestra"]},
    {"id": "bbbb4444", "short_id": "bbbb4444", "time": "2026-01-04T03:15:00Z",
     "hostname": "orchestra-prod", "tags": None},
]


@pytest.fixture
def fake_host():
    state = FakeState()
    host = create_host(state, name="h1", facts={})
    with ctx_state.use(state), ctx_host.use(host):
        yield host


def test_latest_is_the_newest_of_this_host_and_tag(fake_host):
    assert restore.pick_snapshot(SNAPSHOTS, "latest", "orchestra-prod")["id"] == "bbbb2222"


def test_another_hosts_snapshot_only_when_named_by_from_host(fake_host):
    with pytest.raises(DeployError, match="snapshot cccc3333 is of host orchestra-staging, "
                                          "not orchestra-prod: restoring it needs --from-host "
                                          "orchestra-staging"):
        restore.pick_snapshot(SNAPSHOTS, "cccc", "orchestra-prod")
    assert restore.pick_snapshot(SNAPSHOTS, "cccc", "orchestra-prod",
                                 "orchestra-staging")["id"] == "cccc3333"
    assert restore.pick_snapshot(SNAPSHOTS, "latest", "orchestra-prod",
                                 "orchestra-staging")["id"] == "cccc3333"
    with pytest.raises(DeployError, match="is of host orchestra-prod, not orchestra-staging"):
        restore.pick_snapshot(SNAPSHOTS, "aaaa", "orchestra-prod", "orchestra-staging")


def test_latest_passes_over_empty_snapshots_unless_there_is_nothing_else(fake_host):
    empty = {"id": "eeee5555", "short_id": "eeee5555", "time": "2026-01-05T03:15:00Z",
             "hostname": "orchestra-prod", "tags": ["orchestra", "empty"]}
    assert restore.pick_snapshot([*SNAPSHOTS, empty], "latest",
                                 "orchestra-prod")["id"] == "bbbb2222"
    assert restore.pick_snapshot([empty], "latest", "orchestra-prod")["id"] == "eeee5555"
    # Named, an empty snapshot is restored like any other.
    assert restore.pick_snapshot([*SNAPSHOTS, empty], "eeee", "orchestra-prod") == empty


def test_ambiguous_or_unknown_snapshot(fake_host):
    with pytest.raises(DeployError, match="more than one snapshot with id 'bbbb'"):
        restore.pick_snapshot(SNAPSHOTS, "bbbb", "orchestra-prod")
    with pytest.raises(DeployError, match="no snapshot with id 'dddd'"):
        restore.pick_snapshot(SNAPSHOTS, "dddd", "orchestra-prod")
    with pytest.raises(DeployError, match="holds no snapshot of orchestra-dev"):
        restore.pick_snapshot(SNAPSHOTS, "latest", "orchestra-dev")


def _check_restore(present, force):
    facts = {"facts.DataPresence": {f"script={backup.RESTORE_SCRIPT}": present},
             "facts.ResticSnapshots": {f"restic={backup.RESTIC}": SNAPSHOTS}}
    state = FakeState()
    host = create_host(state, name="h1", facts=facts)
    with ctx_state.use(state), ctx_host.use(host):
        return restore.check_restore(_config(), "latest", force)


def test_restore_refuses_to_replace_data_unless_forced():
    present = ["postgres: table public.notes of database orchestra has rows",
               "weaviate: class Note has objects"]
    with pytest.raises(DeployError) as e:
        _check_restore(present, force=False)
    # (pyinfra_testing's create_host names the host after its last fact: not checked here)
    assert str(e.value).endswith(" holds data a restore would replace (--force replaces it):\n"
                                 "  postgres: table public.notes of database orchestra has rows\n"
                            "  weaviate: class Note has objects")
    assert _check_restore(present, force=True)["snapshot"]["id"] == "bbbb2222"
    assert _check_restore([], force=False)["snapshot"]["id"] == "bbbb2222"
