"""The admin page's view of its host: the rows of ``orchestra-infra status``, every 10 s.

The admin (app/modern-admin/server.js) reads only loopback sources: Prometheus's and
Alertmanager's HTTP APIs, and ``/run/orchestra-status/status.json``, which a sandboxed timer
writes from the same probe script ``status`` runs over SSH and the same code that turns its
answer into rows (``status_rows.py`` and ``status_probe.py``, copied here as they are, with
the host's ``HostSpec`` computed from the data at deploy time). Nothing here listens.
"""

from __future__ import annotations

import json
from pathlib import Path

from operations import render, system
from orchestra_infra import status, status_probe, status_rows

LIB = "/usr/local/lib/orchestra/status"
RUNNER = f"{LIB}/orchestra-status"
OUTPUT_DIR = "/run/orchestra-status"
OUTPUT = f"{OUTPUT_DIR}/status.json"
UNIT = "orchestra-status"
# Seconds between two status runs: a stopped service turns red on the page within this
# and the page's own refresh (5 s). A run costs about a second of one core's time.
INTERVAL = 10
MODULES = (status_probe, status_rows)


def spec_document(config, groups, label: str) -> str:
    """``spec.json``: the host's name as ``status`` shows it, and its ``HostSpec``."""
    return json.dumps({"host": label, "spec": status.host_spec(config, groups).as_dict()},
                      indent=1, sort_keys=True) + "\n"


def configure(config, groups, label: str) -> None:
    """Install the status runner, its inputs and its timer on a host that runs the admin."""
    system.directory(name=f"Create {LIB}", path=LIB, mode="755")
    system.directory(name=f"Create {LIB}/orchestra_infra", path=f"{LIB}/orchestra_infra",
                     mode="755")
    files = {f"{LIB}/orchestra_infra/__init__.py": "",
             **{f"{LIB}/orchestra_infra/{Path(m.__file__).name}": Path(m.__file__).read_text()
                for m in MODULES},
             f"{LIB}/spec.json": spec_document(config, groups, label)}
    for dest, text in files.items():
        render.template(name=f"Install {dest}", src=None, dest=dest, text=text)
    render.template(name=f"Install {LIB}/probe.sh (what `orchestra-infra status` runs)",
                    src=None, dest=f"{LIB}/probe.sh", mode="750",
                    text=status_probe.script(status.plan(config, groups)))
    render.template(name=f"Install {RUNNER}",
                    src="status/usr/local/lib/orchestra/status/orchestra-status.j2",
                    dest=RUNNER, mode="755",
                    context={"lib": LIB, "output": OUTPUT, "group": config.service_user,
                             "interval": INTERVAL})
    context = {"runner": RUNNER, "output": OUTPUT, "output_dir": OUTPUT_DIR,
               "interval": INTERVAL}
    units = [render.template(name=f"Install {UNIT}.{kind}",
                             src=f"status/etc/systemd/system/{UNIT}.{kind}.j2",
                             dest=f"/etc/systemd/system/{UNIT}.{kind}", context=context)
             for kind in ("service", "timer")]
    system.service(name=f"Write the admin's status every {INTERVAL} s ({UNIT}.timer)",
                   unit=f"{UNIT}.timer", daemon_reload_when=units, restart_when=units)
