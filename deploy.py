"""The whole Orchestra stack, in order: base -> security -> data -> runtimes -> apps -> edge -> ops.

    pyinfra inventories/prod.py deploy.py            # preview, then confirm
    pyinfra inventories/prod.py deploy.py --dry --diff
    pyinfra -y inventories/sandbox.py deploy.py
"""

from pyinfra import host

from operations import (
    admin_status,
    app,
    backup,
    base,
    monit,
    nginx,
    pgarchive,
    pm2,
    ports,
    postgres,
    prometheus,
    redis,
    render,
    runlock,
    security,
    snapshot,
    stack,
    stack_order,
    supervisor,
    weaviate,
    wireguard,
)
from orchestra_infra import catalog
from orchestra_infra.preflight import validate_host

stack_order.known_to_inspect(__file__)

config, secret_values = validate_host(host)
wireguard.check_layout(config)
# A multi-host layout: the data services listen on the private address too (one host: as is).
config = wireguard.apply(config)
runlock.guard(config, "deploy.py")  # taken before the first change, released at the end
render.use_secrets(secret_values)
render.use_state_root(config.state_root)
base.check_environment(config)  # before anything reads or changes more of the host
security.check_ssh_access(config, host.data.get("ssh_user"))
gpus = base.check_gpu(config)
config, moved_ports = ports.check(config)

data_host = "data" in host.groups
edge_host = "edge" in host.groups
app_host = "app" in host.groups
if app_host:
    pm2.check_node(config)

base.prepare(config)
new_sources = False
if data_host:
    repository = postgres.add_repository(config)
    new_sources = bool(repository and repository.will_change)
if app_host:
    node_repository = pm2.add_repository(config)
    new_sources = new_sources or bool(node_repository and node_repository.will_change)
base.install(config, stack.packages(config, host.groups) + wireguard.packages(config, host.groups),
             new_sources)
if app_host:
    pm2.install(config)

base.configure(config, gpus)
ports.record(config, moved_ports)
security.configure(config)
# The mesh before the services: the app hosts reach the data host through it.
wireguard.configure(config)
# Monit's checks are written before the services change, and read at the end.
monit_plan = monit.write_config(config, host.groups, webhook="alert_webhook_url" in secret_values)

if data_host:
    postgres.configure(config)
    redis.configure(config)
    weaviate.configure(config)
    backup.configure(config)
    pgarchive.configure(config)
# Several hosts: the app hosts start their releases once the data host is ready...
wireguard.wait_for_all("data services")

if app_host:
    switched, restart_when = app.configure(config)
    supervisor.configure(config, restart_when=restart_when,
                         after_units=catalog.store_units(config, host.groups))
    pm2.configure(config, restart_when=[switched])
# ...and the edge sends requests to them once they are healthy.
wireguard.wait_for_all("app releases")

if edge_host:
    nginx.configure(config)

# ops: metrics, then the health checks (they expect every service in place)
prometheus.configure(config, host.groups)
# The status rows the admin shows: its own host's, and in a multi-host layout every host's.
admin_status.configure(config, host.groups, host.name)
monit.run(monit_plan)
# What this plan asked the host about, for the next preview's one snapshot.
snapshot.remember()
