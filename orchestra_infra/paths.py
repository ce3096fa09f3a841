"""Where the project's files are: the repository, or the folder ORCHESTRA_ROOT names.

Alone so that the loader (``config``) and the secrets, which both read files under it,
need not import each other.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def project_root() -> Path:
    """The folder holding inventories/ and group_data/ (the repository, or ORCHESTRA_ROOT)."""
    return Path(os.environ.get("ORCHESTRA_ROOT", REPO_ROOT))
