"""Git app sources: fetched on the control machine with real git, packed like a checkout."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from orchestra_infra import app_source, release
from orchestra_infra.errors import ConfigError


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, env=env).stdout.strip()


@pytest.fixture
def upstream(tmp_path):
    repo = tmp_path / "orchestra"
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch=main")
    (repo / "api").mkdir()
    (repo / "api" / "main.py").write_text("VERSION = 1\n")
    (repo / "requirements.txt").write_text("fastapi==1 --hash=sha256:00\n")
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "v1")
    git(repo, "tag", "v1")
    return repo


def test_a_branch_is_exported_at_its_commit(upstream, tmp_path):
    tree, commit = app_source.checkout(f"file://{upstream}", "main", tmp_path / "cache")
    assert commit == git(upstream, "rev-parse", "HEAD")
    assert (tree / "api" / "main.py").read_text() == "VERSION = 1\n"
    assert not (tree / ".git").exists()


def test_a_new_commit_is_fetched_and_old_tags_still_resolve(upstream, tmp_path):
    cache = tmp_path / "cache"
    url = f"file://{upstream}"
    first, _ = app_source.checkout(url, "main", cache)
    (upstream / "api" / "main.py").write_text("VERSION = 2\n")
    git(upstream, "commit", "--quiet", "-am", "v2")
    second, commit = app_source.checkout(url, "main", cache)
    assert commit == git(upstream, "rev-parse", "HEAD")
    assert (second / "api" / "main.py").read_text() == "VERSION = 2\n"
    tagged, _ = app_source.checkout(url, "v1", cache)
    assert tagged == first


def test_the_same_commit_is_the_same_release(upstream, tmp_path):
    url = f"file://{upstream}"
    tree_a, _ = app_source.checkout(url, "main", tmp_path / "a")
    tree_b, _ = app_source.checkout(url, git(upstream, "rev-parse", "HEAD"), tmp_path / "b")
    assert release.build(tree_a, tmp_path / "out-a")[1] == release.build(tree_b,
                                                                          tmp_path / "out-b")[1]


def test_an_unknown_ref_names_the_key(upstream, tmp_path):
    with pytest.raises(ConfigError) as e:
        app_source.checkout(f"file://{upstream}", "no-such-branch", tmp_path / "cache")
    assert e.value.problems == [f"app_source_ref: 'no-such-branch' is not a branch, tag or "
                                f"commit of file://{upstream}"]


def test_an_unreachable_repository_names_the_key(tmp_path):
    with pytest.raises(ConfigError) as e:
        app_source.checkout(f"file://{tmp_path}/missing", "main", tmp_path / "cache")
    assert e.value.problems[0].startswith(f"app_source: cloning file://{tmp_path}/missing "
                                          "failed: ")


def test_the_deploy_key_lives_in_a_private_file_only_while_git_runs():
    with app_source._ssh_environment("-----BEGIN KEY-----\nabc\n", ["git.example.invalid "
                                                                       "ssh-ed25519 AAAA"]) as env:
        command = env["GIT_SSH_COMMAND"]
        key = Path(command.split(" -i ")[1].split()[0])
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
        assert "StrictHostKeyChecking=yes" in command and "IdentitiesOnly=yes" in command
        assert "abc" not in command
    assert not key.exists()


def test_a_local_checkout_is_used_in_place(tmp_path):
    class Config:
        app_source = "app"
        app_source_ref = None
        app_source_known_hosts = []

    assert app_source.resolve(Config, tmp_path / "cache", tmp_path, lambda n: None) == \
        tmp_path / "app"
