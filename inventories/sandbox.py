"""pyinfra inventory of the running local sandbox hosts (`orchestra-infra sandbox up`).

Every host is in every group (the single-instance layout), unless
ORCHESTRA_SANDBOX_LAYOUT gives the layout in the hosts file's syntax, by host name
(``t-a edge,app; t-b app; t-c data``: lines or ";"-separated): a multi-host layout.
"""

import os as _os
import sys as _sys
from pathlib import Path as _Path

# pyinfra executes this file; from another folder the repository would not be importable.
_REPO_ROOT = str(_Path(__file__).resolve().parent.parent)
if _REPO_ROOT not in _sys.path:
    _sys.path.insert(0, _REPO_ROOT)

from pyinfra.api.exceptions import InventoryError as _InventoryError  # noqa: E402

from orchestra_infra.sandbox import inventory_hosts as _inventory_hosts  # noqa: E402

# ORCHESTRA_SANDBOX_HOSTS=name,name (or addresses) picks some of the running hosts: the tests
# and the benchmark provision their own hosts as an environment of their own, and every host
# listed here is an upstream of every other's nginx.
_wanted = [n for n in _os.environ.get("ORCHESTRA_SANDBOX_HOSTS", "").split(",") if n]
_hosts = [h for h in _inventory_hosts()
          if not _wanted or h[1]["sandbox_name"] in _wanted or h[0] in _wanted]
if not _hosts:
    # An InventoryError is shown by pyinfra as a plain message, without a traceback.
    raise _InventoryError(
        "no sandbox host is running: start them with `orchestra-infra sandbox up`"
    )

_layout = _os.environ.get("ORCHESTRA_SANDBOX_LAYOUT", "")
if _layout:
    from orchestra_infra.hosts import drained as _drained  # noqa: E402
    from orchestra_infra.hosts import parse as _parse  # noqa: E402

    _text = _layout.replace(";", "\n")
    _groups = _parse(_text, "ORCHESTRA_SANDBOX_LAYOUT")
    for _name in _drained(_text, "ORCHESTRA_SANDBOX_LAYOUT"):
        _host = next(h for h in _hosts if h[1]["sandbox_name"] == _name)
        _host[1]["drain"] = True
    _by_name = {h[1]["sandbox_name"]: h for h in _hosts}
    _missing = sorted({n for names in _groups.values() for n in names} - set(_by_name))
    if _missing:
        raise _InventoryError(f"ORCHESTRA_SANDBOX_LAYOUT names hosts that do not run: "
                              f"{', '.join(_missing)}")
    edge, app, data, metrics = ([_by_name[n] for n in _groups[g]]
                                for g in ("edge", "app", "data", "metrics"))
else:
    edge = list(_hosts)
    app = list(_hosts)
    data = list(_hosts)
    metrics = list(_hosts)
