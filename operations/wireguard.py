"""WireGuard: the encrypted private network joining the hosts of a multi-host layout.

With one host in the inventory there is no mesh and nothing here changes the host. With
more, every host gets ``wg-quick@<wireguard_interface>`` with every other host as a peer
(kernel WireGuard, or wireguard-go with ``wireguard_userspace``), and the services other
hosts use listen on its private address (:func:`apply`).
"""

from __future__ import annotations

from pyinfra import host, inventory
from pyinfra.api import DeployError, deploy, operation
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import files

from operations import facts, render, system
from orchestra_infra import catalog, mesh

LOOPBACK = mesh.LOOPBACK


def enabled() -> bool:
    """A multi-host layout: more than one host in the inventory (``--limit`` included)."""
    return len(inventory) > 1


def endpoint(other) -> str:
    """The address a peer is reached at: its address in the inventory."""
    return other.data.get("ssh_hostname") or other.name


def private_address(config, other=None) -> str:
    """A host's address on the mesh (this host's by default)."""
    return mesh.address(config.mesh_network, (other or host).name)


def reach(config, other) -> str:
    """How this host reaches another host's services: loopback when it is this host, its
    private address otherwise (or loopback, without a mesh)."""
    if other.name == host.name or not enabled():
        return LOOPBACK
    return private_address(config, other)


def group_hosts(group: str) -> list:
    return list(inventory.get_group(group, []))


def data_address(config) -> str:
    """Where the app finds PostgreSQL, Redis and Weaviate."""
    found = group_hosts("data")
    return reach(config, found[0]) if found else LOOPBACK


def others() -> list:
    """Every other host of the inventory."""
    return [other for other in inventory if other.name != host.name]


def every_host() -> list:
    """Every host of the inventory, this one included, in the inventory's order."""
    return list(inventory)


def peers(config) -> list[dict]:
    """Every other host of the inventory, as a WireGuard peer."""
    return [{"name": other.name, "endpoint": endpoint(other),
             "address": private_address(config, other),
             "public_key": mesh.public_key(mesh.private_key(_seed(), other.name))}
            for other in others()]


def _seed() -> str:
    if "wireguard_mesh_seed" not in render.loaded_secrets():
        raise DeployError("secret wireguard_mesh_seed is missing: a multi-host layout derives "
                          "its WireGuard keys from it (run `orchestra-infra secrets init ENV`)")
    return render.secret_value("wireguard_mesh_seed")


def packages(config, groups) -> list[str]:
    if not enabled():
        return []
    return ["wireguard-tools"] + (["wireguard-go"] if config.wireguard_userspace else [])


def check_layout(config) -> None:
    """Stop before any change when the inventory's layout cannot work."""
    if not enabled():
        return
    problems = mesh.layout_problems({g: [h.name for h in group_hosts(g)]
                                     for g in catalog.GROUPS})
    problems += mesh.address_problems(config.mesh_network, [h.name for h in inventory])
    if all(h.data.get("drain") for h in group_hosts("app")):
        problems.append("every app host is marked drain: the edge would have no upstream")
    if problems:
        raise DeployError("invalid layout, nothing was changed:\n  " + "\n  ".join(problems))


def apply(config):
    """The config a host of a multi-host layout runs with: its data services listen on its
    private address too (and PostgreSQL lets the app hosts in), and every service may bind
    that address before the interface exists (``ip_nonlocal_bind``: boot order does not
    matter). Unchanged with one host."""
    if not enabled():
        return config
    mine = private_address(config)
    update = {"sysctl_settings": {**config.sysctl_settings, "net.ipv4.ip_nonlocal_bind": 1}}
    if "data" in host.groups:
        apps = [f"{private_address(config, h)}/32" for h in group_hosts("app")
                if h.name != host.name]
        update |= {
            "postgres_listen_addresses": [*config.postgres_listen_addresses, mine],
            "postgres_allowed_networks": [*config.postgres_allowed_networks, *apps],
            "redis_bind": [*config.redis_bind, mine],
        }
    return config.model_copy(update=update)


def listen_also(config) -> str | None:
    """The private address the app's services listen on besides loopback (None: none)."""
    return private_address(config) if enabled() else None


def firewall(config, groups) -> dict | None:
    """What the firewall opens to the peers: WireGuard's port to their addresses, this
    host's private services (the catalogue's; on the metrics host, the environment's
    Prometheus for the admin hosts) on the mesh interface to their private addresses, and
    its exporters to the metrics host's private address alone."""
    if not enabled():
        return None
    found = peers(config)
    metrics = group_hosts("metrics")
    scraper = [private_address(config, h) for h in metrics if h.name != host.name]
    return {"interface": config.wireguard_interface, "port": config.wireguard_port,
            # By address family: a peer's public address may be IPv4 or IPv6.
            "endpoints": [{"family": "ip6" if ":" in e else "ip", "address": e}
                          for e in sorted({p["endpoint"] for p in found})],
            "addresses": sorted(p["address"] for p in found),
            "ports": sorted({*catalog.private_ports(config, groups), config.status_share_port,
                             *([config.prometheus_port] if "metrics" in groups else [])}),
            "metrics": scraper[0] if scraper else None,
            "exporters": catalog.exporter_ports(config, groups)}


# Where each distro's wireguard-go package puts its program, when not on wg-quick's name for
# it (wireguard-go): Ubuntu 22.04 calls it `wireguard`.
USERSPACE_PROGRAM = {"Ubuntu": "/usr/bin/wireguard"}


def _userspace() -> None:
    """wg-quick falls back to `wireguard-go` when the kernel has no WireGuard: give it that
    name where the distro's package uses another."""
    program = USERSPACE_PROGRAM.get(facts.planned(LinuxDistribution)["name"])
    if program:
        files.link(name="Name the userspace WireGuard wireguard-go, as wg-quick expects",
                   path="/usr/local/sbin/wireguard-go", target=program)


@deploy("WireGuard")
def configure(config):
    if not enabled():
        return
    interface = config.wireguard_interface
    if config.wireguard_userspace:
        _userspace()
    conf = render.template(
        name=f"Configure the WireGuard mesh ({interface})",
        src="wireguard/etc/wireguard/wg.conf.j2",
        dest=f"/etc/wireguard/{interface}.conf",
        context={"config": config, "address": private_address(config),
                 "prefix": config.mesh_network.split("/")[1], "peers": peers(config)},
        mode="600",
        secret=True,
    )
    # wg-quick@'s reload is `wg syncconf`: peers change without dropping the tunnels.
    system.service(name=f"Run WireGuard ({interface})", unit=f"wg-quick@{interface}",
                   reload_when=[conf])


@operation()
def barrier(phase: str):
    """
    Mark the end of a phase on every host of a multi-host layout: pyinfra orders each host's
    operations on their own, so without a step every host shares, an app host would check
    its release before the data host has configured its stores, and the edge would send
    requests to an app host that is not ready. No command runs.

    + phase: what every host has done when it runs

    **Example:**

    .. code:: python

        wireguard.barrier(name="Wait until the data services are ready everywhere",
                          phase="data services ready")
    """
    host.noop(f"{phase} (every host)")
    yield from ()


def wait_for_all(phase: str) -> None:
    """A barrier in a multi-host layout; nothing with one host (its order is its own)."""
    if enabled():
        barrier(name=f"Wait until every host is done: {phase}", phase=phase)
