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


# --- symbolic links: the app repository cannot ship the operator's files ---------------------


def app_tree(root: Path) -> Path:
    source = root / "app"
    (source / "api").mkdir(parents=True)
    (source / "api" / "main.py").write_text("VERSION = 1\n")
    return source


def test_links_out_of_the_tree_stop_the_release_naming_each_path(tmp_path):
    operator = tmp_path / "operator"
    (operator / "secrets").mkdir(parents=True)
    (operator / "secrets" / "prod.yaml").write_text("postgres_password: hunter2\n")
    (operator / ".ssh").mkdir()
    (operator / ".ssh" / "id_ed25519").write_text("PRIVATE KEY\n")
    source = app_tree(tmp_path)
    (source / "env.yaml").symlink_to(operator / "secrets" / "prod.yaml")  # absolute
    (source / "api" / "ssh").symlink_to("../../operator/.ssh")  # relative, escaping
    (source / "hop").symlink_to("api/ssh")  # a chain: inside, then out
    with pytest.raises(ConfigError) as e:
        release.build(source, tmp_path / "out")
    problems = "\n".join(e.value.problems)
    assert f"env.yaml -> {operator}/secrets/prod.yaml: an absolute link" in problems
    assert "api/ssh -> ../../operator/.ssh: leads out of the source tree" in problems
    assert f"hop -> api/ssh: leads out of the source tree (to {operator}/.ssh)" in problems
    assert not (tmp_path / "out").exists()  # no tarball, so nothing to upload


def test_a_link_that_leaves_and_comes_back_is_refused(tmp_path):
    """On the host the release directory has another name: `../app/x` would leave it."""
    source = app_tree(tmp_path)
    (source / "back").symlink_to("../app/api/main.py")
    with pytest.raises(ConfigError, match="back -> ../app/api/main.py: leads out"):
        release.build(source, tmp_path / "out")


def test_links_inside_the_tree_are_packed_as_links(tmp_path):
    import tarfile

    source = app_tree(tmp_path)
    (source / "main.py").symlink_to("api/main.py")
    (source / "api" / "again").symlink_to(".")
    (source / "code").symlink_to("api")  # a directory: packed as a link, not descended
    tarball, _ = release.build(source, tmp_path / "out")
    with tarfile.open(tarball) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert sorted(members) == ["api/again", "api/main.py", "code", "main.py"]
    assert members["main.py"].issym() and members["main.py"].linkname == "api/main.py"
    assert members["code"].issym() and members["code"].linkname == "api"
    assert members["api/main.py"].isfile()


def test_links_under_excluded_directories_are_not_looked_at(tmp_path):
    source = app_tree(tmp_path)
    (source / "node_modules" / ".bin").mkdir(parents=True)
    (source / "node_modules" / ".bin" / "tool").symlink_to("/usr/bin/true")
    _, release_id = release.build(source, tmp_path / "out")
    (source / "node_modules").rename(tmp_path / "elsewhere")
    assert release.build(source, tmp_path / "out2")[1] == release_id

