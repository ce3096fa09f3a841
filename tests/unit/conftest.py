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
