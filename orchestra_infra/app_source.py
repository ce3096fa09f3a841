"""Where a release's code comes from: a local checkout, or a git repository and ref.

A git source is fetched on the control machine into a bare mirror under ``build/git``,
the ref is resolved to a commit, and that commit's tree is exported to
``build/src/<commit>``; the release is then packed exactly like a local checkout
(``orchestra_infra.release``), so the same commit always gives the same release id.
The deploy key is only ever on the control machine (a 0600 file that lives while git
runs): the hosts never hold a credential to the code repository.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

from .errors import ConfigError
from .schema import is_git


@contextmanager
def _ssh_environment(deploy_key: str | None, known_hosts: Sequence[str]):
    """GIT_SSH_COMMAND for one git run: the deploy key and the pinned host keys only."""
    if deploy_key is None and not known_hosts:
        yield {}
        return
    with tempfile.TemporaryDirectory(prefix="orchestra-git-") as tmp:
        os.chmod(tmp, 0o700)
        options = ["ssh", "-o", "BatchMode=yes"]
        if deploy_key is not None:
            key = Path(tmp) / "deploy_key"
            key.touch(mode=0o600)
            key.write_text(deploy_key.strip() + "\n")
            options += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
        if known_hosts:
            pinned = Path(tmp) / "known_hosts"
            pinned.write_text("\n".join(known_hosts) + "\n")
            options += ["-o", f"UserKnownHostsFile={pinned}", "-o", "StrictHostKeyChecking=yes"]
        yield {"GIT_SSH_COMMAND": " ".join(options)}


def _git(args: list[str], env: dict[str, str], what: str) -> str:
    result = subprocess.run(["git", *args], capture_output=True, text=True, check=False,
                            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **env})
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()[-1:] or ["no output"]
        raise ConfigError([f"app_source: {what} failed: {detail[0]}"])
    return result.stdout.strip()


def checkout(url: str, ref: str, cache: Path, deploy_key: str | None = None,
             known_hosts: Sequence[str] = ()) -> tuple[Path, str]:
    """Fetch ``url``, resolve ``ref``; return the exported tree of that commit and the commit."""
    mirror = cache / "git" / (hashlib.sha256(url.encode()).hexdigest()[:16] + ".git")
    with _ssh_environment(deploy_key, known_hosts) as env:
        if (mirror / "HEAD").exists():
            _git(["-C", str(mirror), "fetch", "--quiet", "--prune", "--tags", "origin",
                  "+refs/heads/*:refs/heads/*"], env, f"fetching {url}")
        else:
            mirror.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(mirror, ignore_errors=True)
            _git(["clone", "--quiet", "--mirror", "--", url, str(mirror)], env, f"cloning {url}")
    found = subprocess.run(["git", "-C", str(mirror), "rev-parse", "--verify", "--quiet",
                            "--end-of-options", f"{ref}^{{commit}}"],
                           capture_output=True, text=True, check=False)
    if found.returncode != 0:
        raise ConfigError([f"app_source_ref: {ref!r} is not a branch, tag or commit of {url}"])
    commit = found.stdout.strip()
    tree = cache / "src" / commit
    if not tree.exists():
        partial = tree.with_name(commit + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(mirror), "archive", "--format=tar", commit],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(partial)], input=archive, check=True)
        partial.rename(tree)
    return tree, commit


_resolved: dict[tuple[str, str | None], Path] = {}


def resolve(config, cache: Path, root: Path, secret) -> Path:
    """The directory to pack for ``config``: a local checkout, or an exported git commit.

    ``secret(name)`` returns a secret's value or None (the deploy key is optional: a
    public https repository needs none).
    """
    if not is_git(config.app_source):
        source = Path(config.app_source)
        return source if source.is_absolute() else root / source
    key = (config.app_source, config.app_source_ref)
    if key not in _resolved:  # once per run, however many hosts
        _resolved[key], _ = checkout(config.app_source, config.app_source_ref, cache,
                                     deploy_key=secret("app_deploy_key"),
                                     known_hosts=config.app_source_known_hosts)
    return _resolved[key]
