"""The whole Orchestra stack, in order: base -> security -> data -> runtimes -> apps -> edge -> ops.

    pyinfra inventories/prod.py deploy.py            # preview, then confirm
    pyinfra inventories/prod.py deploy.py --dry --diff
    pyinfra -y inventories/sandbox.py deploy.py
"""

from pyinfra import host

from operations import base, postgres, redis, render, security, weaviate
from orchestra_infra.preflight import validate_host

config, secret_values = validate_host(host)
render.use_secrets(secret_values)
security.check_ssh_access(config, host.data.get("ssh_user"))
gpus = base.check_gpu(config)

base.configure(config, gpus)
security.configure(config)

if "data" in host.groups:
    postgres.configure(config)
    redis.configure(config)
    weaviate.configure(config)
