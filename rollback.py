"""Switch every app host back to the release before the live one, one instance at a time.

    orchestra-infra rollback ENV        # or: pyinfra -y inventories/ENV.py rollback.py

The older release is health-checked first, like any release; the next `deploy.py` run
makes the release of `app_source` live again.
"""

from pyinfra import host

from operations import app, pm2, runlock, stack_order, supervisor
from orchestra_infra.preflight import validate_host

stack_order.known_to_inspect(__file__)

config, _ = validate_host(host)
runlock.guard(config, "rollback.py")

if "app" in host.groups:
    previous = app.previous_release(config)
    switched = app.switch(name=f"Roll back to release {previous} (after its health check)",
                          release_id=previous, config=config)
    supervisor.rolling_restart(name="Restart the programs one at a time",
                               programs=app.programs(config),
                               timeout=config.app_health_timeout, _if=switched.did_change)
    pm2.reload_admin(config, when=[switched])
