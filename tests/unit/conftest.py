import os

import pytest


@pytest.fixture
def secrets_dir(tmp_path, monkeypatch):
    """A private secrets folder, and no ORCHESTRA_SECRET_* from the caller's environment."""
    for key in list(os.environ):
        if key.startswith("ORCHESTRA_SECRET_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("ORCHESTRA_SECRETS_DIR", str(tmp_path / "secrets"))
    return tmp_path / "secrets"
