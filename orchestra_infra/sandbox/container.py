"""Each host's machine: systemd-nspawn booting the host's disk inside the host's namespace."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .commands import KILL_TIMEOUT, POLL_INTERVAL, wait_until
from .errors import SandboxError
from .network import NETNS_DIR, namespace_pids
from .paths import console_log
from .ssh import ssh_banner, system_state

BOOT_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0


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
        # The TUN device, for the userspace WireGuard (wireguard-go) of a multi-host layout:
        # this kernel has no WireGuard module.
        "--bind=/dev/net/tun",
        # The console (boot messages) goes to the log file; stdin is not a terminal.
        "--console=read-only",
        # Keep the container's journal inside the container, never linked into this machine.
        "--link-journal=no",
        # A cloud instance owns its /etc/localtime and /etc/resolv.conf; by default nspawn
        # rewrites both at every boot, which a deploy would then see as drift.
        "--timezone=off",
        "--resolv-conf=off",
        # A directory of this machine shared by hosts (a Lambda persistent filesystem's
        # stand-in: it outlives any one host).
        *(f"--bind={bind}" for bind in entry.get("binds", ())),
    ]


def _directory_flag(rootfs: str) -> str:
    return f"--directory={rootfs}"


def start_container(entry: Mapping[str, Any]) -> int:
    with open(console_log(entry["name"]), "ab") as out:
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


def is_running(entry: Mapping[str, Any]) -> bool:
    """Whether the entry's PID is our systemd-nspawn for its rootfs (not a PID reused since)."""
    pid = entry.get("pid")
    if not pid:
        return False
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if this process started it and it has exited
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return argv[0].endswith(b"systemd-nspawn") and _directory_flag(entry["rootfs"]).encode() in argv


def restart_failed_units(entry: Mapping[str, Any]) -> None:
    """Start again the units that failed while the container booted.

    On this machine's cgroup v1 hierarchy a unit started early in boot sometimes fails with
    219/CGROUP ("Failed to attach to cgroup"); when that unit is systemd-user-sessions,
    /run/nologin stays and every SSH login is refused. A cloud instance has no such race.
    Run through nsenter, since SSH is what is broken.
    """
    children = subprocess.run(["pgrep", "-P", str(entry["pid"])], capture_output=True,
                              text=True, check=False).stdout.split()
    if not children:
        return
    restart = ("systemctl --failed --plain --no-legend | awk '{print $1}' | "
               "xargs -r systemctl restart")
    subprocess.run(["nsenter", "-t", children[0], "-m", "-p", "-u", "-i", "-n",
                    "sh", "-c", restart], capture_output=True, check=False, timeout=60)


def _exited(pid: int) -> bool:
    """Whether the systemd-nspawn just started has exited.

    Not is_running(): its /proc/PID/cmdline check once failed right after the start of a
    container that then booted fine. A PID we started cannot be reused before it is reaped.
    """
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # reaped elsewhere (subprocess's cleanup), or not our child
        return not Path(f"/proc/{pid}").exists()
    return done == pid


def wait_until_ready(entry: Mapping[str, Any], timeout: float = BOOT_TIMEOUT) -> None:
    """Until sshd answers and systemd reports running, within timeout."""
    name, address = entry["name"], entry["address"]
    deadline = time.monotonic() + timeout
    state = ""
    banner_since = None
    restarts = 0
    while time.monotonic() < deadline:
        if _exited(entry["pid"]):
            raise SandboxError(f"systemd-nspawn exited during boot\n{console_tail(name)}")
        if ssh_banner(address):
            banner_since = banner_since or time.monotonic()
            state = system_state(address)
            # A unit that keeps failing is the deploy's concern, not the host's boot.
            if state == "running" or (state == "degraded" and restarts >= 2):
                return
            # Degraded, or sshd up but logins refused for a while: a boot-time unit failed.
            if state == "degraded" or time.monotonic() - banner_since > 5:
                restart_failed_units(entry)
                restarts += 1
                banner_since = time.monotonic()
        time.sleep(POLL_INTERVAL)
    raise SandboxError(
        f"not ready after {timeout:.0f} s (system state {state or 'unknown'}, "
        f"ssh banner {'yes' if ssh_banner(address) else 'no'})\n{console_tail(name)}"
    )


def console_tail(name: str, lines: int = 20) -> str:
    log = console_log(name)
    if not log.exists():
        return ""
    tail = log.read_text(errors="replace").splitlines()[-lines:]
    return f"last console lines ({log}):\n" + "\n".join(tail)


def stop_container(entry: Mapping[str, Any]) -> None:
    """SIGTERM makes nspawn ask the container's systemd for a clean shutdown; SIGKILL if it hangs.

    Then anything still in the host's namespace (a container orphaned by a crash) is killed, so
    no process of the host survives.
    """
    pid = entry.get("pid")
    if is_running(entry):
        _signal(pid, signal.SIGTERM)
        if not wait_until(lambda: not is_running(entry), STOP_TIMEOUT):
            _signal(pid, signal.SIGKILL)
            wait_until(lambda: not is_running(entry), KILL_TIMEOUT)
    ns = entry["namespace"]
    for leftover in namespace_pids(ns):
        _signal(leftover, signal.SIGKILL)
    if not wait_until(lambda: not namespace_pids(ns), KILL_TIMEOUT):
        raise SandboxError(f"processes in {ns} survived SIGKILL: {namespace_pids(ns)}")


def kill_container(entry: Mapping[str, Any]) -> None:
    """The machine dies at once: every process of the host gets SIGKILL, nspawn first, so
    nothing shuts down cleanly, nothing is flushed (a lost instance)."""
    if is_running(entry):
        _signal(entry["pid"], signal.SIGKILL)
    ns = entry["namespace"]
    for leftover in namespace_pids(ns):
        _signal(leftover, signal.SIGKILL)
    if not wait_until(lambda: not namespace_pids(ns) and not is_running(entry), KILL_TIMEOUT):
        raise SandboxError(f"processes in {ns} survived SIGKILL: {namespace_pids(ns)}")


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
