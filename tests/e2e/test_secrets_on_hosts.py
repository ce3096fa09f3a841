"""Secrets on a real host: previews mask them, rotation works, nothing prints them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orchestra_infra import secrets

from .conftest import REPO, converge, on, pyinfra

pytestmark = pytest.mark.e2e

CANARY = "canary-e2e-5d1f0c7b9a3e4f2a8c6b0d1e2f3a4b5c"


def test_preview_of_a_rotated_secret_masks_old_and_new_values(target, provisioned):
    current = secrets.load("sandbox")["weaviate_api_key"]
    run = pyinfra(target, "--dry", "--diff", "-vvv",
                  env={"ORCHESTRA_SECRET_WEAVIATE_API_KEY": CANARY})
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    assert "Will modify /etc/weaviate/weaviate.env" in output
    assert "AUTHENTICATION_APIKEY_ALLOWED_KEYS=********(weaviate_api_key)" in output
    assert CANARY not in output
    assert current not in output
    # A preview changes nothing.
    assert CANARY not in on(target, "cat /etc/weaviate/weaviate.env")


def test_changed_password_rotates_the_postgres_role(target, provisioned):
    old = secrets.load("sandbox")["postgres_app_password"]
    new = "rotated-" + "x" * 40
    login = ("PGPASSWORD={} psql -h 127.0.0.1 -U orchestra -d orchestra -XAtc 'select 1' "
             "2>&1; true")
    run = converge(target, "-vvv", env={"ORCHESTRA_SECRET_POSTGRES_APP_PASSWORD": new})
    assert "PostgreSQL | Create PostgreSQL role orchestra" in run.changed
    assert new not in run.stdout + run.stderr and old not in run.stdout + run.stderr
    assert on(target, login.format(new), sudo=False).strip() == "1"
    assert "password authentication failed" in on(target, login.format(old), sudo=False)
    converge(target)  # back to the secret in the file
    assert on(target, login.format(old), sudo=False).strip() == "1"
    processes = on(target, "ps -eo args")
    assert old not in processes and new not in processes


def _not_the_checkout(directory: str, names: list[str]) -> set[str]:
    """What an operator's checkout does not hold: build output, caches, the app's
    node_modules (templates/ has a node_modules of its own: npm's builtin config)."""
    skip = shutil.ignore_patterns(".git", ".venv", "build", "dist", "__pycache__",
                                  "*_cache")(directory, names)
    if not Path(directory).is_relative_to(REPO / "templates"):
        skip |= {"node_modules"} & set(names)
    return skip


def test_preview_of_one_changed_template_shows_exactly_that_file(target, provisioned,
                                                                  tmp_path):
    """An operator edits one template in their checkout: the preview lists that one file,
    with the secret in its context lines masked."""
    checkout = tmp_path / "orchestra-infra"
    shutil.copytree(REPO, checkout, ignore=_not_the_checkout)
    template = checkout / "templates/weaviate/etc/weaviate/weaviate.env.j2"
    text = template.read_text()
    template.write_text(text.replace("AUTHENTICATION_APIKEY_USERS=",
                                     "# reviewed in the preview\nAUTHENTICATION_APIKEY_USERS="))
    run = subprocess.run(
        [sys.executable, "-m", "pyinfra", "inventories/sandbox.py", "deploy.py", "--dry",
         "--diff"], cwd=checkout, capture_output=True, text=True, timeout=900,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "ORCHESTRA_SANDBOX_HOSTS": target.name,
             "ORCHESTRA_ROOT": str(checkout), "ORCHESTRA_SECRETS_DIR": str(REPO / "secrets"),
             "PYTHONPATH": str(checkout)})
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    changed = [line.split("Will ", 1)[1].strip() for line in output.splitlines()
               if "Will modify" in line or "Will create" in line]
    assert changed == ["modify /etc/weaviate/weaviate.env"], changed
    assert "+ # reviewed in the preview" in output
    assert "AUTHENTICATION_APIKEY_ALLOWED_KEYS=********(weaviate_api_key)" in output
    assert secrets.load("sandbox")["weaviate_api_key"] not in output
    assert "reviewed" not in on(target, "cat /etc/weaviate/weaviate.env")
