"""Staging hosts: from hosts/staging or ORCHESTRA_STAGING_HOSTS (addresses never committed).

Connects as ``ubuntu`` with sudo, as on a Lambda Labs instance.
"""

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parent.parent))

from orchestra_infra.hosts import load as _load  # noqa: E402

_groups = _load("staging")
edge, app, data, metrics = (_groups[g] for g in ("edge", "app", "data", "metrics"))
