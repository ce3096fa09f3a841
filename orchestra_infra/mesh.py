"""The private network of a multi-host environment: addresses and WireGuard keys.

Pure functions of the inventory and the configuration, the same on every host's plan:

- each host's private address comes from its inventory name (its public address), hashed
  into ``mesh_network``: adding or removing a host never renumbers another one;
- each host's key pair is derived from the environment's secret ``wireguard_mesh_seed``
  and the host's name (HMAC-SHA256, then X25519). The control machine computes every public
  key; a host receives only its own private key.

One host (the default layout) has no mesh: everything stays on loopback.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress

LOOPBACK = "127.0.0.1"


def address(network: str, name: str) -> str:
    """The private address of the host called name in network (never the network's first
    or last address)."""
    net = ipaddress.ip_network(network, strict=False)
    usable = net.num_addresses - 2
    digest = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
    return str(net.network_address + 1 + digest % usable)


def private_key(seed: str, name: str) -> str:
    """The host's WireGuard private key (base64, as `wg genkey` prints it)."""
    raw = bytearray(hmac.new(seed.encode(), f"wireguard:{name}".encode(),
                             hashlib.sha256).digest())
    # Curve25519 clamping, as `wg genkey` does.
    raw[0] &= 248
    raw[31] = (raw[31] & 127) | 64
    return base64.b64encode(bytes(raw)).decode()


def public_key(private: str) -> str:
    """The public key of a base64 private key (`wg pubkey`)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    key = X25519PrivateKey.from_private_bytes(base64.b64decode(private))
    return base64.b64encode(key.public_key().public_bytes_raw()).decode()


def address_problems(network: str, names: list[str]) -> list[str]:
    """Two hosts whose private addresses collide (a hash in a small network)."""
    seen: dict[str, str] = {}
    problems = []
    for name in names:
        mine = address(network, name)
        if mine in seen:
            problems.append(f"mesh_network: {name} and {seen[mine]} both get {mine}; "
                            "choose a larger network (e.g. a /16)")
        seen.setdefault(mine, name)
    return problems


def layout_problems(groups: dict[str, list[str]], where: dict[str, str] | None = None
                    ) -> list[str]:
    """What is wrong with a layout {group: [host, ...]}: exactly one data host (until a
    standby exists), at least one edge and one app host, at most one metrics host.
    ``where`` names each host's line."""
    where = where or {}

    def named(hosts: list[str]) -> str:
        return ", ".join(f"{h} ({where[h]})" if h in where else h for h in hosts)

    problems = []
    data = groups.get("data", [])
    if len(data) != 1:
        problems.append(f"exactly one host must be in group data, found {len(data)}"
                        + (f": {named(data)}" if data else ""))
    for group in ("edge", "app"):
        if not groups.get(group):
            problems.append(f"at least one host must be in group {group}, found none")
    metrics = groups.get("metrics", [])
    if len(metrics) > 1:
        problems.append(f"at most one host may be in group metrics (the environment's "
                        f"Prometheus and Alertmanager), found {len(metrics)}: {named(metrics)}")
    return problems
