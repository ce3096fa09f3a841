"""Where the project's files are: the repository, or the folder ORCHESTRA_ROOT names.

Installed as a tool (``pipx install .``, ``uv tool install .``), the package lives apart from
the checkout: the project is then the current directory or the nearest parent holding
``inventories/`` and ``group_data/``.

Alone so that the loader (``config``) and the secrets, which both read files under it,
need not import each other.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _is_project(path: Path) -> bool:
    return (path / "inventories").is_dir() and (path / "group_data").is_dir()


def project_root() -> Path:
    """The folder holding inventories/ and group_data/: ORCHESTRA_ROOT, the checkout the
    package runs from, or (an installed tool) the current directory or its nearest parent
    that holds them."""
    if "ORCHESTRA_ROOT" in os.environ:
        return Path(os.environ["ORCHESTRA_ROOT"])
    if _is_project(REPO_ROOT):
        return REPO_ROOT
    cwd = Path.cwd()
    return next((p for p in (cwd, *cwd.parents) if _is_project(p)), REPO_ROOT)
