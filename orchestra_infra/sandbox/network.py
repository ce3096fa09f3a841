"""Each host's network: its own namespace, a veth pair to this machine, NAT to the outside.

Every host gets a /30 of the sandbox subnet: this machine's end of the veth pair is its .1,
the host's eth0 its .2.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .commands import KILL_TIMEOUT, run_command, wait_until
from .errors import SandboxError

SANDBOX_SUBNET = ipaddress.ip_network("10.213.0.0/24")
SLOT_PREFIX = 30
NAT_TABLE = "orchestra_sandbox"
NETNS_PREFIX = "orch-"
VETH_PREFIX = "orchsb"
NETNS_DIR = Path("/run/netns")


# --- addresses and names -----------------------------------------------------------------------


def slot_addresses(slot: int) -> tuple[str, str]:
    """(host end, sandbox end) of the slot-th /30 of the sandbox subnet: its .1 and .2."""
    subnets = list(SANDBOX_SUBNET.subnets(new_prefix=SLOT_PREFIX))
    if not 0 <= slot < len(subnets):
        raise SandboxError(f"no sandbox subnet #{slot}: {SANDBOX_SUBNET} holds {len(subnets)}")
    network = subnets[slot]
    return str(network.network_address + 1), str(network.network_address + 2)


def slot_of(address: str) -> int:
    offset = int(ipaddress.ip_address(address)) - int(SANDBOX_SUBNET.network_address)
    return offset // (2 ** (32 - SLOT_PREFIX))


def allocate_slot(used_addresses: Iterable[str]) -> int:
    """The lowest /30 not used by any recorded host."""
    used = {slot_of(a) for a in used_addresses}
    capacity = SANDBOX_SUBNET.num_addresses // (2 ** (32 - SLOT_PREFIX))
    for slot in range(capacity):
        if slot not in used:
            return slot
    raise SandboxError(f"all {capacity} sandbox subnets of {SANDBOX_SUBNET} are in use")


def veth_name(slot: int) -> str:
    # Interface names are limited to 15 characters, so the host end is named by slot, not name.
    return f"{VETH_PREFIX}{slot}"


def namespace_for(name: str) -> str:
    return f"{NETNS_PREFIX}{name}"


# --- NAT, shared by all hosts ------------------------------------------------------------------


def ensure_nat() -> None:
    """Forwarding on, and one nft table masquerading sandbox traffic that leaves the subnet.

    Traffic between two sandbox hosts is routed here but keeps its source address, so a host
    firewall that allows only a peer's address can be tested. The script replaces the table as a
    whole in one transaction, so running it again is harmless.
    """
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
    script = (
        f"table ip {NAT_TABLE}\n"
        f"delete table ip {NAT_TABLE}\n"
        f"table ip {NAT_TABLE} {{\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority srcnat; policy accept;\n"
        f"    ip saddr {SANDBOX_SUBNET} ip daddr != {SANDBOX_SUBNET} masquerade\n"
        "  }\n"
        "}\n"
    )
    run_command(["nft", "-f", "-"], input=script)


def remove_nat() -> None:
    if NAT_TABLE in run_command(["nft", "list", "tables", "ip"]).stdout.split():
        run_command(["nft", "delete", "table", "ip", NAT_TABLE])


# --- one host's namespace ----------------------------------------------------------------------


def create_network(entry: Mapping[str, Any]) -> None:
    """A namespace whose eth0 is one end of a veth pair; this machine holds the other end."""
    ns, veth = entry["namespace"], entry["veth"]
    run_command(["ip", "netns", "add", ns])
    run_command(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
    run_command(["ip", "addr", "add", f"{entry['host_address']}/{SLOT_PREFIX}", "dev", veth])
    run_command(["ip", "link", "set", veth, "up"])
    run_command(["ip", "-n", ns, "addr", "add", f"{entry['address']}/{SLOT_PREFIX}", "dev", "eth0"])
    run_command(["ip", "-n", ns, "link", "set", "lo", "up"])
    run_command(["ip", "-n", ns, "link", "set", "eth0", "up"])
    run_command(["ip", "-n", ns, "route", "add", "default", "via", entry["host_address"]])


def namespace_pids(namespace: str) -> list[int]:
    if not (NETNS_DIR / namespace).exists():
        return []
    result = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True)
    return [int(p) for p in result.stdout.split()]


def remove_network(namespace: str, veth: str | None) -> None:
    """Delete the namespace (which destroys the veth pair) and a veth left without one."""
    if (NETNS_DIR / namespace).exists():
        # Also unlinks a namespace file that lost its mount when the machine restarted.
        run_command(["ip", "netns", "delete", namespace])
    if veth:
        remove_veth(veth)


def remove_veth(veth: str) -> None:
    link = Path("/sys/class/net", veth)
    if not link.exists():
        return
    try:
        run_command(["ip", "link", "delete", veth])
    except SandboxError:
        # Deleting the namespace also destroys the pair, but asynchronously: it may have just gone.
        if not wait_until(lambda: not link.exists(), KILL_TIMEOUT):
            raise


# --- what a crashed run may have left ----------------------------------------------------------


def namespace_owners() -> set[str]:
    """The host names of all sandbox namespaces, whether the state file knows them or not."""
    if not NETNS_DIR.is_dir():
        return set()
    return {
        p.name[len(NETNS_PREFIX) :] for p in NETNS_DIR.iterdir() if p.name.startswith(NETNS_PREFIX)
    }


def sandbox_veths() -> list[str]:
    pattern = re.compile(VETH_PREFIX + r"\d+")
    return sorted(p.name for p in Path("/sys/class/net").iterdir() if pattern.fullmatch(p.name))
