import os

import pytest

from orchestra_infra.sandbox.paths import weaviate_build_dir
from standins import weaviate_release


@pytest.fixture(scope="session", autouse=True)
def sandbox_weaviate_release():
    """The Weaviate stand-in release `orchestra-infra sandbox up` builds: the sandbox's data
    (group_data/sandbox.py) names it, and several tests validate that data."""
    return weaviate_release.build_for_sandbox(weaviate_build_dir())


@pytest.fixture
def secrets_dir(tmp_path, monkeypatch):
    """A private secrets folder, and no ORCHESTRA_SECRET_* from the caller's environment."""
    for key in list(os.environ):
        if key.startswith("ORCHESTRA_SECRET_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("ORCHESTRA_SECRETS_DIR", str(tmp_path / "secrets"))
    return tmp_path / "secrets"


@pytest.fixture
def no_remote_lock(monkeypatch):
    """``orchestra-infra backup`` takes the run lock over SSH (runlock_remote): a test that
    runs it must never reach a real host, the sandbox hosts of other sessions included."""
    from contextlib import contextmanager
    from types import SimpleNamespace

    from orchestra_infra import runlock_remote

    @contextmanager
    def locked(*args, **kwargs):
        yield SimpleNamespace(outcome=None)

    monkeypatch.setattr(runlock_remote, "locked", locked)
