"""Local disposable sandbox hosts that behave like a bare cloud instance.

Each sandbox host is a Debian 12 (or Ubuntu 22.04) root file system booted with systemd as PID 1
by systemd-nspawn, inside its own network namespace with its own IPv4 address, NAT to the outside,
sshd running and a user ``ubuntu`` with passwordless sudo and our SSH key: what a fresh Lambda
Labs instance offers, and nothing more. Deploys and tests reach them over real SSH.

Layout on disk (both folders can be moved with environment variables):

- ``$ORCHESTRA_SANDBOX_CACHE/rootfs-IMAGE-STAMP.tar``: the pristine root file system, built once.
- ``$ORCHESTRA_SANDBOX_STATE/hosts.json``: one entry per host (address, PID, ...).
- ``$ORCHESTRA_SANDBOX_STATE/NAME/rootfs``: the host's disk; ``NAME/console.log``: its console.
- ``$ORCHESTRA_SANDBOX_STATE/id_ed25519``: the key that logs in as ``ubuntu`` on every host.

Everything here needs root: network namespaces, nftables and systemd-nspawn do.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

DEFAULT_CACHE_DIR = "/var/cache/orchestra-infra"
DEFAULT_STATE_DIR = "/var/lib/orchestra-infra/sandbox"

# Bump when the image customisation below changes; the debootstrap command is hashed into the
# tarball name as well, so a changed package list or mirror rebuilds the cache by itself.
IMAGE_RECIPE_VERSION = 1
BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "sudo",
    "ca-certificates",
    "iproute2",
)
IMAGE_SUITES = {"debian12": "bookworm", "ubuntu2204": "jammy"}
UBUNTU_COMPONENTS = "main restricted universe multiverse"

SANDBOX_SUBNET = ipaddress.ip_network("10.213.0.0/24")
SLOT_PREFIX = 30
NAT_TABLE = "orchestra_sandbox"
NETNS_PREFIX = "orch-"
VETH_PREFIX = "orchsb"
NETNS_DIR = Path("/run/netns")

USER = "ubuntu"
BUILD_TIMEOUT = 1800.0
BOOT_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0
KILL_TIMEOUT = 10.0
POLL_INTERVAL = 0.5

# Numeric owners: the image's users are not this machine's. Extended attributes carry file
# capabilities.
TAR_FLAGS = ("--numeric-owner", "--xattrs", "--xattrs-include=*")

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")

# Debian package providing each command the sandbox runs on this machine.
REQUIRED_TOOLS = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "nft": "nftables",
    "ip": "iproute2",
    "ssh-keygen": "openssh-client",
    "ssh": "openssh-client",
    "tar": "tar",
}


class SandboxError(RuntimeError):
    """A sandbox operation failed; the message says what to do about it."""


@dataclass(frozen=True)
class SandboxHost:
    name: str
    address: str
    image: str
    ssh_key: str
    user: str = USER


# --- locations ---------------------------------------------------------------------------------


def cache_dir() -> Path:
    return Path(os.environ.get("ORCHESTRA_SANDBOX_CACHE", DEFAULT_CACHE_DIR))


def state_dir() -> Path:
    return Path(os.environ.get("ORCHESTRA_SANDBOX_STATE", DEFAULT_STATE_DIR))


def state_file() -> Path:
    return state_dir() / "hosts.json"


def ssh_key_path() -> Path:
    return state_dir() / "id_ed25519"


def host_dir(name: str) -> Path:
    return state_dir() / name


def namespace_for(name: str) -> str:
    return f"{NETNS_PREFIX}{name}"


# --- checks ------------------------------------------------------------------------------------


def require_root() -> None:
    if os.geteuid() != 0:
        raise SandboxError(
            "sandbox hosts need root (network namespaces, nftables, systemd-nspawn): "
            "run this command as root"
        )


def missing_tools() -> dict[str, str]:
    """Each required command that is not on PATH, with the Debian package that provides it."""
    return {tool: pkg for tool, pkg in REQUIRED_TOOLS.items() if shutil.which(tool) is None}


def check_tools() -> None:
    missing = missing_tools()
    if missing:
        listed = ", ".join(f"{tool} (package {pkg})" for tool, pkg in missing.items())
        packages = " ".join(sorted(set(missing.values())))
        raise SandboxError(f"missing tools: {listed}; install with: apt-get install {packages}")


def validate_name(name: str) -> None:
    # The name becomes a hostname, a machine name and part of a network namespace name.
    if not NAME_RE.match(name):
        raise SandboxError(
            f"invalid sandbox host name {name!r}: use 1-32 lowercase letters, digits and '-', "
            "not starting or ending with '-'"
        )


def default_names(count: int) -> list[str]:
    if count < 1:
        raise SandboxError(f"--hosts must be at least 1, got {count}")
    return [f"orch-{i}" for i in range(1, count + 1)]


# --- running commands --------------------------------------------------------------------------


def _run(argv: list[str], timeout: float = 600, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run argv with check=True; a failure names the command and carries the tail of its output."""
    try:
        return subprocess.run(
            argv, check=True, capture_output=True, text=True, timeout=timeout, **kwargs
        )
    except subprocess.CalledProcessError as e:
        output = "\n".join(s.strip() for s in (e.stderr, e.stdout) if s and s.strip())
        raise SandboxError(
            f"command failed (exit {e.returncode}): {shlex.join(argv)}\n{output[-3000:]}"
        ) from e
    except subprocess.TimeoutExpired as e:
        raise SandboxError(f"command timed out after {timeout:.0f} s: {shlex.join(argv)}") from e
    except FileNotFoundError as e:
        raise SandboxError(f"command not found: {argv[0]} (see check_tools())") from e


# --- addresses ---------------------------------------------------------------------------------


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


# --- state -------------------------------------------------------------------------------------


def read_state(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """Hosts by name; a missing state file means no hosts."""
    path = path or state_file()
    try:
        hosts = json.loads(path.read_text())["hosts"]
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError) as e:
        raise SandboxError(f"corrupt sandbox state file {path}: {e}; fix or delete it") from e
    return {h["name"]: h for h in hosts}


def write_state(hosts: Mapping[str, Mapping[str, Any]], path: Path | None = None) -> None:
    """Replace the state file atomically, so a crash never leaves half a file."""
    path = path or state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"hosts": [hosts[n] for n in sorted(hosts)]}, indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".hosts.", suffix=".json")
    with os.fdopen(fd, "w") as f:
        f.write(body)
    os.chmod(tmp, 0o644)  # no secrets in it; status and inventories need not be root
    os.replace(tmp, path)


class _State:
    """The state file, shared by the threads that boot hosts in parallel."""

    def __init__(self) -> None:
        self.hosts = read_state()
        self._lock = threading.Lock()

    def put(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.hosts[entry["name"]] = entry
            write_state(self.hosts)

    def update(self, name: str, **fields: Any) -> None:
        with self._lock:
            self.hosts[name].update(fields)
            write_state(self.hosts)

    def remove(self, name: str) -> None:
        with self._lock:
            self.hosts.pop(name, None)
            write_state(self.hosts)


@contextlib.contextmanager
def _exclusive() -> Iterator[None]:
    """Serialise commands that change hosts (two concurrent `up`s would race for the same names).

    Public functions take it once and never call each other: flock is not re-entrant across
    separate opens, so nesting would deadlock.
    """
    state_dir().mkdir(parents=True, exist_ok=True)
    with open(state_dir() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def new_entry(name: str, image: str, slot: int) -> dict[str, Any]:
    host_end, address = slot_addresses(slot)
    return {
        "name": name,
        "image": image,
        "address": address,
        "host_address": host_end,
        "namespace": namespace_for(name),
        "veth": veth_name(slot),
        "pid": None,
        "rootfs": str(host_dir(name) / "rootfs"),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


# --- root file system image --------------------------------------------------------------------


def debootstrap_command(image: str, target: str, env: Mapping[str, str] | None = None) -> list[str]:
    """The debootstrap argv for image; Ubuntu needs an archive URL from SANDBOX_MIRROR."""
    env = os.environ if env is None else env
    if image not in IMAGE_SUITES:
        raise SandboxError(f"unknown image {image!r}: choose one of {', '.join(IMAGE_SUITES)}")
    argv = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(BASE_PACKAGES)}",
        IMAGE_SUITES[image],
        target,
    ]
    if image == "ubuntu2204":
        argv.append(ubuntu_mirror(env))
    # Debian: no mirror argument, so debootstrap uses its own default mirror.
    return argv


def ubuntu_mirror(env: Mapping[str, str]) -> str:
    mirror = env.get("SANDBOX_MIRROR", "").strip()
    if not mirror:
        raise SandboxError(
            "image ubuntu2204 needs an Ubuntu archive URL: set SANDBOX_MIRROR to the mirror "
            "to build from (for example SANDBOX_MIRROR=http://MIRROR/ubuntu)"
        )
    return mirror


def ubuntu_sources_list(mirror: str) -> str:
    suite = IMAGE_SUITES["ubuntu2204"]
    return "".join(
        f"deb {mirror} {s} {UBUNTU_COMPONENTS}\n"
        for s in (suite, f"{suite}-updates", f"{suite}-security")
    )


def image_tarball(image: str, env: Mapping[str, str] | None = None) -> Path:
    """Cache path of image, stamped with the recipe so a changed recipe means a new file."""
    recipe = json.dumps([IMAGE_RECIPE_VERSION, debootstrap_command(image, "TARGET", env)])
    stamp = hashlib.sha256(recipe.encode()).hexdigest()[:10]
    return cache_dir() / f"rootfs-{image}-v{IMAGE_RECIPE_VERSION}-{stamp}.tar"


def ensure_image(image: str) -> Path:
    """The cached root file system tarball for image, built first if missing."""
    tarball = image_tarball(image)
    if not tarball.exists():
        build_image(image, tarball)
    return tarball


def build_image(image: str, tarball: Path) -> None:
    """Build into a temporary folder and rename into place: an interrupted build leaves no cache."""
    tarball.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_builds(tarball.parent)
    work = Path(tempfile.mkdtemp(dir=tarball.parent, prefix=".build-"))
    try:
        rootfs = work / "rootfs"
        _run(debootstrap_command(image, str(rootfs)), timeout=BUILD_TIMEOUT)
        customise_image(rootfs, image)
        partial = work / tarball.name
        _run(["tar", *TAR_FLAGS, "-C", str(rootfs), "-cf", str(partial), "."])
        os.replace(partial, tarball)
    finally:
        # Not rmtree alone: a killed debootstrap can leave /proc, /sys or /dev mounted inside.
        _remove_tree(work)
    for stale in tarball.parent.glob(f"rootfs-{image}-*.tar"):
        if stale != tarball:
            stale.unlink()


def remove_abandoned_builds(cache: Path) -> None:
    """Build folders of a killed process; older than any build can run, so none is in use."""
    cutoff = time.time() - 2 * BUILD_TIMEOUT
    for work in cache.glob(".build-*"):
        if work.stat().st_mtime < cutoff:
            _remove_tree(work)


def customise_image(rootfs: Path, image: str) -> None:
    """What every host shares: the ubuntu user, DNS, a fresh-instance apt state."""
    # This machine resolves the registries through its own resolv.conf and hosts file.
    _replace_file(rootfs / "etc/resolv.conf", Path("/etc/resolv.conf").read_text())
    _replace_file(rootfs / "etc/hosts", Path("/etc/hosts").read_text())
    useradd = ["useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo", USER]
    _run(["chroot", str(rootfs), *useradd])
    _replace_file(rootfs / "etc/sudoers.d/90-ubuntu", f"{USER} ALL=(ALL) NOPASSWD:ALL\n", 0o440)
    if image == "ubuntu2204":
        sources = ubuntu_sources_list(ubuntu_mirror(os.environ))
        _replace_file(rootfs / "etc/apt/sources.list", sources)
    # Identity is per host (set when a host is created): no host may share these.
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    _replace_file(rootfs / "etc/hostname", "localhost\n")
    _replace_file(rootfs / "etc/machine-id", "")
    dbus_id = rootfs / "var/lib/dbus/machine-id"
    dbus_id.unlink(missing_ok=True)
    dbus_id.symlink_to("/etc/machine-id")
    # A fresh instance has no package lists: the deploy must run apt-get update itself, as it
    # would have to on a real one. The downloaded .debs only make the tarball bigger.
    _run(["chroot", str(rootfs), "apt-get", "clean"])
    for lists in (rootfs / "var/lib/apt/lists").glob("*"):
        if lists.is_file():
            lists.unlink()


def _replace_file(path: Path, content: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # may be a symlink into the host's own files
    path.write_text(content)
    path.chmod(mode)


# --- per-host disk -----------------------------------------------------------------------------


def ensure_keypair() -> Path:
    key = ssh_key_path()
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        comment = "orchestra-sandbox"
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)])
    key.chmod(0o600)
    return key


def create_rootfs(entry: Mapping[str, Any], tarball: Path) -> None:
    """Unpack a fresh disk for the host, then give it its own identity.

    Unpacked beside its final place and renamed, so an existing rootfs is always a complete one.
    """
    rootfs = Path(entry["rootfs"])
    staging = rootfs.with_name("rootfs.new")
    _remove_tree(staging)
    staging.mkdir(parents=True)
    _run(["tar", *TAR_FLAGS, "-C", str(staging), "-xpf", str(tarball)])
    personalise_rootfs(staging, entry["name"])
    _remove_tree(rootfs)
    os.replace(staging, rootfs)


def personalise_rootfs(rootfs: Path, name: str) -> None:
    _replace_file(rootfs / "etc/hostname", f"{name}\n")
    with open(rootfs / "etc/hosts", "a") as hosts:
        hosts.write(f"127.0.1.1\t{name}\n")  # sudo resolves the hostname on every call
    # A fixed machine ID keeps journald's files across reboots and avoids systemd's first-boot
    # mode, which would apply unit presets and could enable services a cloud image does not run.
    _replace_file(rootfs / "etc/machine-id", uuid.uuid4().hex + "\n", 0o444)
    _run(["chroot", str(rootfs), "ssh-keygen", "-A"])
    install_authorized_key(rootfs, ssh_key_path().with_suffix(".pub").read_text())


def install_authorized_key(rootfs: Path, public_key: str) -> None:
    # Installed per host rather than baked into the cached image: the cache outlives the state
    # folder that holds the key, and a regenerated key must still log in.
    home = rootfs / "home" / USER
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    keys = ssh_dir / "authorized_keys"
    keys.write_text(public_key)
    keys.chmod(0o600)
    uid, gid = home.stat().st_uid, home.stat().st_gid
    for path in (ssh_dir, keys):
        os.chown(path, uid, gid)


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return sorted((p for p in points if (p + "/").startswith(prefix)), reverse=True)


def _remove_tree(path: Path) -> None:
    """rmtree that first unmounts whatever is mounted below: it must never descend into a mount."""
    if not path.exists():
        return
    for point in _mounts_under(path):
        _run(["umount", "--lazy", point])
    if _mounts_under(path):
        raise SandboxError(f"refusing to delete {path}: still has mounts below it")
    shutil.rmtree(path)


# --- network -----------------------------------------------------------------------------------


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
    _run(["nft", "-f", "-"], input=script)


def remove_nat() -> None:
    if NAT_TABLE in _run(["nft", "list", "tables", "ip"]).stdout.split():
        _run(["nft", "delete", "table", "ip", NAT_TABLE])


def create_network(entry: Mapping[str, Any]) -> None:
    """A namespace whose eth0 is one end of a veth pair; this machine holds the other end."""
    ns, veth = entry["namespace"], entry["veth"]
    _run(["ip", "netns", "add", ns])
    _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
    _run(["ip", "addr", "add", f"{entry['host_address']}/{SLOT_PREFIX}", "dev", veth])
    _run(["ip", "link", "set", veth, "up"])
    _run(["ip", "-n", ns, "addr", "add", f"{entry['address']}/{SLOT_PREFIX}", "dev", "eth0"])
    _run(["ip", "-n", ns, "link", "set", "lo", "up"])
    _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
    _run(["ip", "-n", ns, "route", "add", "default", "via", entry["host_address"]])


def remove_network(namespace: str, veth: str | None) -> None:
    """Delete the namespace (which destroys the veth pair) and a veth left without one."""
    if (NETNS_DIR / namespace).exists():
        # Also unlinks a namespace file that lost its mount when the machine restarted.
        _run(["ip", "netns", "delete", namespace])
    if veth:
        remove_veth(veth)


def remove_veth(veth: str) -> None:
    link = Path("/sys/class/net", veth)
    if not link.exists():
        return
    try:
        _run(["ip", "link", "delete", veth])
    except SandboxError:
        # Deleting the namespace also destroys the pair, but asynchronously: it may have just gone.
        if not _wait_until(lambda: not link.exists(), KILL_TIMEOUT):
            raise


def namespace_pids(namespace: str) -> list[int]:
    if not (NETNS_DIR / namespace).exists():
        return []
    result = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True)
    return [int(p) for p in result.stdout.split()]


def sandbox_namespaces() -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(NETNS_PREFIX))


def sandbox_veths() -> list[str]:
    pattern = re.compile(VETH_PREFIX + r"\d+")
    return sorted(p.name for p in Path("/sys/class/net").iterdir() if pattern.fullmatch(p.name))


# --- processes ---------------------------------------------------------------------------------


def _directory_flag(rootfs: str) -> str:
    return f"--directory={rootfs}"


def nspawn_running(pid: int | None, rootfs: str) -> bool:
    """Whether pid is our systemd-nspawn for rootfs (not a PID reused by something else)."""
    if not pid:
        return False
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if this process started it and it has exited
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return argv[0].endswith(b"systemd-nspawn") and _directory_flag(rootfs).encode() in argv


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(POLL_INTERVAL)
    return predicate()


def stop_container(entry: Mapping[str, Any]) -> None:
    """SIGTERM makes nspawn ask the container's systemd for a clean shutdown; SIGKILL if it hangs.

    Then anything still in the host's namespace (a container orphaned by a crash) is killed, so
    no process of the host survives.
    """
    pid, rootfs = entry.get("pid"), entry["rootfs"]
    if nspawn_running(pid, rootfs):
        _signal(pid, signal.SIGTERM)
        if not _wait_until(lambda: not nspawn_running(pid, rootfs), STOP_TIMEOUT):
            _signal(pid, signal.SIGKILL)
            _wait_until(lambda: not nspawn_running(pid, rootfs), KILL_TIMEOUT)
    ns = entry["namespace"]
    for leftover in namespace_pids(ns):
        _signal(leftover, signal.SIGKILL)
    if not _wait_until(lambda: not namespace_pids(ns), KILL_TIMEOUT):
        raise SandboxError(f"processes in {ns} survived SIGKILL: {namespace_pids(ns)}")


def nspawn_command(entry: Mapping[str, Any]) -> list[str]:
    return [
        "systemd-nspawn",
        _directory_flag(entry["rootfs"]),
        "--boot",
        # This machine has no systemd bus to register with or to get a scope unit from.
        "--register=no",
        "--keep-unit",
        f"--machine={entry['name']}",
        f"--network-namespace-path={NETNS_DIR / entry['namespace']}",
        # With a namespace of our own, --private-network only changes privileges: the container
        # keeps CAP_NET_ADMIN and a writable /proc/sys/net, which nft and net.* sysctls need
        # (without it, nft fails with "Operation not permitted").
        "--private-network",
        # The console (boot messages) goes to the log file; stdin is not a terminal.
        "--console=read-only",
        # Keep the container's journal inside the container, never linked into this machine.
        "--link-journal=no",
        # A cloud instance owns its /etc/localtime and /etc/resolv.conf; by default nspawn
        # rewrites both at every boot, which a deploy would then see as drift.
        "--timezone=off",
        "--resolv-conf=off",
    ]


def start_container(entry: Mapping[str, Any]) -> int:
    log = host_dir(entry["name"]) / "console.log"
    with open(log, "ab") as out:
        out.write(f"\n--- boot {datetime.now(timezone.utc).isoformat()} ---\n".encode())
        out.flush()
        # A session of its own (setsid), so it outlives this process and its terminal.
        process = subprocess.Popen(
            nspawn_command(entry),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process.pid


# --- readiness and SSH -------------------------------------------------------------------------


def ssh_base(address: str, batch: bool = False) -> list[str]:
    """ssh argv up to the destination; batch: never prompt, give up on a silent host."""
    # Every host is new and rebuilt often: remembering host keys would only raise alarms.
    options = ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "LogLevel=ERROR"]
    if batch:
        options += ["BatchMode=yes", "ConnectTimeout=10"]
    flags = [arg for option in options for arg in ("-o", option)]
    return ["ssh", "-i", str(ssh_key_path()), *flags, f"{USER}@{address}"]


def ssh_banner(address: str, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((address, 22), timeout=timeout) as conn:
            return conn.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def system_state(address: str) -> str:
    """`systemctl is-system-running` on the host over SSH ('' when SSH does not answer yet).

    Through sudo, so a host counts as ready only when a deploy could use it: key, user, sudoers.
    """
    argv = [*ssh_base(address, batch=True), "sudo -n systemctl is-system-running"]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return ""
    return result.stdout.strip()


def wait_until_ready(entry: Mapping[str, Any], timeout: float = BOOT_TIMEOUT) -> None:
    """Until sshd answers and systemd reports running (or degraded), within timeout."""
    name, address, pid = entry["name"], entry["address"], entry["pid"]
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        if not nspawn_running(pid, entry["rootfs"]):
            raise SandboxError(f"systemd-nspawn exited during boot\n{console_tail(name)}")
        if ssh_banner(address):
            state = system_state(address)
            if state in ("running", "degraded"):
                return
        time.sleep(POLL_INTERVAL)
    raise SandboxError(
        f"not ready after {timeout:.0f} s (system state {state or 'unknown'}, "
        f"ssh banner {'yes' if ssh_banner(address) else 'no'})\n{console_tail(name)}"
    )


def console_tail(name: str, lines: int = 20) -> str:
    log = host_dir(name) / "console.log"
    if not log.exists():
        return ""
    tail = log.read_text(errors="replace").splitlines()[-lines:]
    return f"last console lines ({log}):\n" + "\n".join(tail)


# --- host lifecycle ----------------------------------------------------------------------------


def boot(entry: Mapping[str, Any], state: _State, tarball: Path | None) -> None:
    """Bring a stopped host up: a fresh disk when tarball is given, network, nspawn, wait."""
    name = entry["name"]
    host_dir(name).mkdir(parents=True, exist_ok=True)
    if tarball is not None:
        create_rootfs(entry, tarball)
    # A booting host gets a fresh network, as after a real power cycle.
    remove_network(entry["namespace"], entry["veth"])
    create_network(entry)
    state.update(name, pid=start_container(entry))
    wait_until_ready(state.hosts[name])


def destroy(entry: Mapping[str, Any]) -> None:
    stop_container(entry)
    remove_network(entry["namespace"], entry.get("veth"))
    _remove_tree(host_dir(entry["name"]))


def _boot_all(jobs: list[tuple[dict[str, Any], Path | None]], state: _State) -> None:
    """Boot hosts in parallel; every failure is reported, not just the first."""
    if not jobs:
        return
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {entry["name"]: pool.submit(boot, entry, state, tb) for entry, tb in jobs}
    errors = [f"{name}: {f.exception()}" for name, f in futures.items() if f.exception()]
    if errors:
        raise SandboxError("\n".join(errors))


def _to_host(entry: Mapping[str, Any]) -> SandboxHost:
    return SandboxHost(
        name=entry["name"],
        address=entry["address"],
        image=entry["image"],
        ssh_key=str(ssh_key_path()),
    )


def _is_running(entry: Mapping[str, Any]) -> bool:
    return nspawn_running(entry.get("pid"), entry["rootfs"])


# --- public API --------------------------------------------------------------------------------


def up(
    count: int = 1, names: list[str] | None = None, image: str = "debian12"
) -> list[SandboxHost]:
    """Make the named hosts (default orch-1..orch-COUNT) run; running ones are left alone.

    A host whose process died (crash, machine restart) boots again from its disk if it has one.
    """
    require_root()
    check_tools()
    names = default_names(count) if names is None else list(dict.fromkeys(names))
    for name in names:
        validate_name(name)
    image_tarball(image)  # rejects an unknown image, or Ubuntu without a mirror, up front
    with _exclusive():
        state = _State()
        for name in names:
            known = state.hosts.get(name)
            if known and known["image"] != image:
                raise SandboxError(
                    f"{name} exists with image {known['image']}, not {image}: "
                    f"run `orchestra-infra sandbox down {name}` first"
                )
        ensure_keypair()
        ensure_nat()
        jobs = []
        for name in names:
            known = state.hosts.get(name)
            if known and _is_running(known):
                continue
            if known:
                stop_container(known)  # whatever a crashed run left in its namespace
                has_disk = Path(known["rootfs"]).is_dir()
                jobs.append((known, None if has_disk else ensure_image(image)))
            else:
                others = (h["address"] for h in state.hosts.values())
                entry = new_entry(name, image, allocate_slot(others))
                stop_container(entry)
                state.put(entry)  # recorded before anything exists, so `down` can find it
                jobs.append((entry, ensure_image(image)))
        _boot_all(jobs, state)
        return [_to_host(state.hosts[name]) for name in names]


def down(names: list[str] | None = None) -> None:
    """Stop and delete hosts (all of them when names is None), leaving nothing behind.

    Also cleans what a crashed run left: namespaces, veths and folders without a state entry.
    One host that cannot be cleaned does not stop the others from being cleaned.
    """
    require_root()
    for name in names or []:
        validate_name(name)
    with _exclusive():
        state = _State()
        targets = sorted(set(state.hosts) | _orphan_names()) if names is None else names
        errors = []
        for name in targets:
            try:
                destroy(state.hosts.get(name) or _placeholder_entry(name))
            except SandboxError as e:
                errors.append(f"{name}: {e}")
                continue
            state.remove(name)
        if names is None:
            for veth in sandbox_veths():
                remove_veth(veth)
        if not state.hosts and not errors:
            remove_nat()
        if errors:
            raise SandboxError("\n".join(errors))


def _orphan_names() -> set[str]:
    """Hosts that left a namespace or a folder but no state entry."""
    names = {ns[len(NETNS_PREFIX) :] for ns in sandbox_namespaces()}
    if state_dir().is_dir():
        names |= {p.name for p in state_dir().iterdir() if p.is_dir()}
    return {n for n in names if NAME_RE.match(n)}


def _placeholder_entry(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace_for(name),
        "veth": None,
        "pid": None,
        "rootfs": str(host_dir(name) / "rootfs"),
    }


def status() -> list[dict[str, Any]]:
    return [
        {
            "name": e["name"],
            "address": e["address"],
            "image": e["image"],
            "running": _is_running(e),
            "pid": e.get("pid"),
        }
        for e in read_state().values()
    ]


def reboot(name: str) -> SandboxHost:
    """Shut the host down cleanly and boot it again from the same disk."""
    require_root()
    with _exclusive():
        state = _State()
        entry = _known(state.hosts, name)
        if not Path(entry["rootfs"]).is_dir():
            raise SandboxError(f"{name} has no disk left: run `orchestra-infra sandbox up` again")
        stop_container(entry)
        ensure_nat()  # gone if this machine restarted since the host was created
        boot(entry, state, tarball=None)
        return _to_host(state.hosts[name])


def ssh_command(name: str) -> list[str]:
    """argv for an interactive SSH session as ubuntu on the host."""
    return ssh_base(_known(read_state(), name)["address"])


def run(
    name: str, command: str, sudo: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run a shell command on the host over SSH (as root through sudo by default)."""
    remote = f"sudo -n sh -c {shlex.quote(command)}" if sudo else command
    argv = [*ssh_base(_known(read_state(), name)["address"], batch=True), remote]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def inventory_hosts() -> list[tuple[str, dict[str, Any]]]:
    """(address, host data) of each running host, in the form pyinfra inventories take."""
    key = str(ssh_key_path())
    return [
        (
            e["address"],
            {
                "ssh_user": USER,
                "ssh_key": key,
                "ssh_strict_host_key_checking": "off",
                "ssh_known_hosts_file": "/dev/null",
                "sandbox_name": e["name"],
            },
        )
        for e in read_state().values()
        if _is_running(e)
    ]


def _known(hosts: Mapping[str, dict[str, Any]], name: str) -> dict[str, Any]:
    if name not in hosts:
        known = ", ".join(sorted(hosts)) or "none"
        raise SandboxError(f"no sandbox host named {name!r} (known: {known})")
    return hosts[name]
