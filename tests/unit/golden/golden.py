"""pyinfra inventory of one bare fake host, for capture.py: the single-instance layout,
with group_data/all.py's defaults and the few values a real environment must supply.

``ORCHESTRA_GOLDEN_DATA`` (a JSON object) overrides more of the host's data, for captures of
a configuration other than the reference one; unset, the capture is the golden plan."""

import json
import os

hosts = [("@fake/golden", {
    "environment": "golden",
    "weaviate_sha256": "0" * 64,
    **json.loads(os.environ.get("ORCHESTRA_GOLDEN_DATA", "{}")),
})]
edge = list(hosts)
app = list(hosts)
data = list(hosts)
