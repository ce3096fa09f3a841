"""The admin page's view of the hosts: the rows of ``orchestra-infra status``, every 10 s.

Every host that runs the admin, and every host of a multi-host layout, gets
``/run/orchestra-status/status.json``, which a sandboxed timer writes from the same probe
script ``status`` runs over SSH and the same code that turns its answer into rows
(``status_rows.py`` and ``status_probe.py``, copied here as they are, with the host's
``HostSpec`` computed from the data at deploy time), with the alerts its Alertmanager fires.

The admin (app/modern-admin/server.js) reads its own host's document from the file and its
Prometheus and Alertmanager on loopback. In a multi-host layout it reads every other host's
document from ``orchestra-status-share.socket`` on that host's private address: a systemd
socket that hands the file, read-only, to whoever connects (the firewall and the socket let
in only the peers' private addresses). With one host nothing here listens.
"""

from __future__ import annotations

import json
from pathlib import Path

from operations import prometheus, render, system, wireguard
from orchestra_infra import status, status_probe, status_rows

LIB = "/usr/local/lib/orchestra/status"
RUNNER = f"{LIB}/orchestra-status"
OUTPUT_DIR = "/run/orchestra-status"
OUTPUT = f"{OUTPUT_DIR}/status.json"
UNIT = "orchestra-status"
SHARE = "orchestra-status-share"
# Seconds between two status runs: a stopped service turns red on the page within this
# and the page's own refresh (5 s). A run costs about a second of one core's time.
INTERVAL = 10
MODULES = (status_probe, status_rows)


def spec_document(config, groups, label: str) -> str:
    """``spec.json``: the host's name as ``status`` shows it, and its ``HostSpec``."""
    return json.dumps({"host": label, "spec": status.host_spec(config, groups).as_dict()},
                      indent=1, sort_keys=True) + "\n"


def peers(config) -> str:
    """The admin's ``STATUS_PEERS``: every other host as ``label=address:port``, comma
    separated (empty with one host)."""
    if not wireguard.enabled():
        return ""
    return ",".join(f"{other.name}={wireguard.private_address(config, other)}:"
                    f"{config.status_share_port}" for other in wireguard.others())


def configure(config, groups, label: str) -> None:
    """Install the status runner, its inputs and its timer; in a multi-host layout, the
    socket the admin hosts read it from."""
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
                             "interval": INTERVAL,
                             "alertmanager": prometheus.alertmanager_url(config)})
    context = {"runner": RUNNER, "output": OUTPUT, "output_dir": OUTPUT_DIR,
               "interval": INTERVAL}
    units = [render.template(name=f"Install {UNIT}.{kind}",
                             src=f"status/etc/systemd/system/{UNIT}.{kind}.j2",
                             dest=f"/etc/systemd/system/{UNIT}.{kind}", context=context)
             for kind in ("service", "timer")]
    system.service(name=f"Write the admin's status every {INTERVAL} s ({UNIT}.timer)",
                   unit=f"{UNIT}.timer", daemon_reload_when=units, restart_when=units)
    _share(config)


def _share(config) -> None:
    """The document, to the peers, on the private address (multi-host layouts only)."""
    if not wireguard.enabled():
        return
    context = {"output": OUTPUT, "group": config.service_user, "port": config.status_share_port,
               "address": wireguard.private_address(config), "network": config.mesh_network}
    units = [render.template(name=f"Install {SHARE}{kind}",
                             src=f"status/etc/systemd/system/{SHARE}{kind}.j2",
                             dest=f"/etc/systemd/system/{SHARE}{kind}", context=context)
             for kind in (".socket", "@.service")]
    system.service(name=f"Hand the status to the admin hosts ({SHARE}.socket, peers only)",
                   unit=f"{SHARE}.socket", daemon_reload_when=units, restart_when=units[:1])
