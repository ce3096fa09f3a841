"""pyinfra inventory of one bare fake host, for capture.py: the single-instance layout,
with group_data/all.py's defaults and the few values a real environment must supply.

``ORCHESTRA_GOLDEN_DATA`` (a JSON object) overrides more of the host's data, for captures of
a configuration other than the reference one; unset, the capture is the golden plan."""

import json
import os

_data = {
    "environment": "golden",
    "weaviate_sha256": "0" * 64,
    **json.loads(os.environ.get("ORCHESTRA_GOLDEN_DATA", "{}")),
}
# ORCHESTRA_GOLDEN_LAYOUT (a JSON object {address: "edge,app", ...}): several fake hosts in
# those groups, a multi-host layout, instead of the one host in every group.
_layout = json.loads(os.environ.get("ORCHESTRA_GOLDEN_LAYOUT", "{}"))
if _layout:
    # ORCHESTRA_GOLDEN_DRAIN: the address of a host marked drain.
    _drain = os.environ.get("ORCHESTRA_GOLDEN_DRAIN")
    _hosts = {address: (f"@fake/{address}", {**_data, "ssh_hostname": address,
                                             **({"drain": True} if address == _drain else {})})
              for address in _layout}
    edge, app, data, metrics = ([_hosts[a] for a, groups in _layout.items()
                                 if g in groups.split(",")]
                                for g in ("edge", "app", "data", "metrics"))
    metrics = metrics or edge[:1]  # the first edge host, as orchestra_infra/hosts.py says
else:
    hosts = [("@fake/golden", _data)]
    edge = list(hosts)
    app = list(hosts)
    data = list(hosts)
    metrics = list(hosts)
