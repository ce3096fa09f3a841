"""Put a backup snapshot back on provisioned hosts: PostgreSQL databases, Redis data,
Weaviate objects; the programs healthy again afterwards.

    orchestra-infra restore ENV [--snapshot ID] [--from-host NAME] [--to latest|TIME]
        [--only postgres|redis|weaviate ...] [--force] [-y]
    ORCHESTRA_RESTORE_SNAPSHOT=ID ORCHESTRA_RESTORE_FROM_HOST=NAME ORCHESTRA_RESTORE_FORCE=1 \\
        pyinfra -y inventories/ENV.py restore.py

For a host deploy.py provisioned (repository settings, scripts and services in place): after
an instance loss, the new instance is deployed, then restored. Data already there (a table
with rows, a Redis key, a Weaviate object) is never replaced without --force; that is
decided while planning, so a refusal changes nothing on any host. The latest snapshot is
the newest one holding data of this data host's backup host name (backup_host_name; the
second data host of ENV records "<name>-2"...); a snapshot of another host is restored only
when --from-host names it. A successful restore starts the backup timers of a new host.
"""

import os

from pyinfra import host

from operations import base, restore, runlock, stack_order
from orchestra_infra.preflight import validate_host

stack_order.known_to_inspect(__file__)

config, _ = validate_host(host)
runlock.guard(config, "restore.py")
base.check_environment(config)  # never another environment's snapshot onto this host
wanted = os.environ.get("ORCHESTRA_RESTORE_SNAPSHOT") or "latest"
force = os.environ.get("ORCHESTRA_RESTORE_FORCE", "") not in ("", "0")
from_host = os.environ.get("ORCHESTRA_RESTORE_FROM_HOST") or None
# PostgreSQL from its archive: "latest" or a time (orchestra-infra restore --to).
to = os.environ.get("ORCHESTRA_RESTORE_TO") or None
only = os.environ.get("ORCHESTRA_RESTORE_ONLY") or ""
stores = tuple(s for s in restore.STORES if s in only.split(",")) if only else restore.STORES

data_host = "data" in host.groups
app_host = "app" in host.groups

if data_host:
    plan = restore.check_restore(config, wanted, force, from_host, stores, to)
if app_host:
    restore.stop_writers(config)
if data_host:
    restore.restore_data(config, plan, force)
if app_host:
    restore.start_writers(config)
