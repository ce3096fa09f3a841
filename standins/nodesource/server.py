"""The nodesource-standin server: the built site root over HTTP, to this machine and the sandbox
hosts only, and its life cycle as a detached process (ensure_server, stop_server, a pid file in
the state folder). ``main`` is the command line, ``python -m standins.nodesource``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import ipaddress
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterable
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from orchestra_infra.sandbox.commands import KILL_TIMEOUT, wait_until
from orchestra_infra.sandbox.errors import SandboxError
from orchestra_infra.sandbox.network import SANDBOX_SUBNET

from .repository import (
    KEY_PATH,
    NODE_VERSION,
    STANDIN_PORT,
    SUITE,
    _major,
    build_repository,
)

# The address check: this machine and the sandbox hosts, nobody else on its networks.
ALLOWED_NETWORKS = (ipaddress.ip_network("127.0.0.0/8"), SANDBOX_SUBNET)

PID_FILE = "nodesource-standin.pid"
LOG_FILE = "nodesource-standin.log"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
POLL_INTERVAL = 0.1
PROBE_TIMEOUT = 2.0
# Never through a proxy from the environment: the probe talks to this machine.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --- the server ---------------------------------------------------------------------------------


def allowed_client(address: str, networks: Iterable = ALLOWED_NETWORKS) -> bool:
    """Whether the server answers address: this machine and the sandbox hosts only, although
    it listens on every interface (the hosts' veth ends come and go)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


class _Handler(SimpleHTTPRequestHandler):
    """Static files, GET and HEAD only (the base class answers 501 to the rest), no listings."""

    server_version = "nodesource-standin"
    sys_version = ""
    timeout = 60  # a client that stops talking does not hold a thread forever

    def do_GET(self) -> None:
        if self._allowed():
            super().do_GET()

    def do_HEAD(self) -> None:
        if self._allowed():
            super().do_HEAD()

    def list_directory(self, path):
        self.send_error(404)
        return None

    def _allowed(self) -> bool:
        if allowed_client(self.client_address[0], self.server.allowed_networks):
            return True
        self.send_error(403, "nodesource-standin answers this machine and sandbox hosts only")
        return False


def make_server(root: Path, host: str = "0.0.0.0", port: int = STANDIN_PORT,
                networks: Iterable = ALLOWED_NETWORKS) -> ThreadingHTTPServer:
    """The server for root, bound and not yet serving (port 0: any free port)."""
    root = Path(root)
    if not (root / KEY_PATH).is_file():
        raise SandboxError(f"{root} is not a nodesource-standin site root (no {KEY_PATH})")
    server = ThreadingHTTPServer((host, port), functools.partial(_Handler, directory=str(root)))
    server.allowed_networks = tuple(networks)  # type: ignore[attr-defined]
    return server


def serve_forever(root: Path, port: int, pid_file: Path | None = None) -> None:
    """Serve root on every interface until killed.

    With pid_file, detach first: bind (so a port in use fails here, for the caller to see),
    fork, write the child's pid to pid_file and return in the parent; the child starts a
    session of its own and serves. The caller waits for the parent only, and the server is
    nobody's child to reap."""
    server = make_server(root, "0.0.0.0", port)
    if pid_file is not None:
        child = os.fork()  # a fresh process, no threads yet: forking is safe
        if child:
            server.socket.close()
            _write_pid(Path(pid_file), child)
            return
        os.setsid()
    with server:
        print(f"nodesource-standin (NOT NodeSource): pid {os.getpid()} serving {root} "
              f"on port {port}", file=sys.stderr, flush=True)
        server.serve_forever()


# --- the detached server's life cycle -----------------------------------------------------------


def ensure_server(cache_dir: Path, state_dir: Path, port: int = STANDIN_PORT) -> int:
    """Build the repository for NODE_VERSION if needed and make sure a detached server serves it
    on port; returns the port. A server that serves something else, or does not answer, is
    replaced."""
    root = build_repository(cache_dir, NODE_VERSION)
    pid = _server_pid(state_dir)
    if pid is not None and _serves(pid, root, port) and _answers(root, port):
        return port
    stop_server(state_dir)
    _start(root, port, Path(state_dir))
    return port


def stop_server(state_dir: Path) -> None:
    """Stop the detached server, if one runs: SIGTERM, then SIGKILL, each wait bounded. A pid
    file naming a process that is gone, or is something else, is just removed."""
    pid_file = Path(state_dir) / PID_FILE
    pid = _server_pid(state_dir)
    if pid is not None:
        for sig, timeout in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, KILL_TIMEOUT)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            if wait_until(lambda: not _is_standin(pid), timeout, POLL_INTERVAL):
                break
        else:
            raise SandboxError(f"nodesource-standin (pid {pid}) did not stop")
    pid_file.unlink(missing_ok=True)


def _start(root: Path, port: int, state_dir: Path) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    log, pid_file = state_dir / LOG_FILE, state_dir / PID_FILE
    argv = [sys.executable, "-m", "standins.nodesource", "serve",
            "--root", str(root), "--port", str(port), "--pid-file", str(pid_file)]
    with open(log, "ab") as out:
        # The repository's folder as cwd, so `-m` finds the package that started it.
        launcher = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                  cwd=Path(__file__).resolve().parents[2],
                                  timeout=START_TIMEOUT, check=False)
    if launcher.returncode == 0 and wait_until(lambda: _answers(root, port), START_TIMEOUT,
                                               POLL_INTERVAL):
        return
    stop_server(state_dir)
    tail = log.read_text(errors="replace")[-2000:]
    raise SandboxError(f"nodesource-standin did not start on port {port} (log: {log}):\n{tail}")


def _server_pid(state_dir: Path) -> int | None:
    """The pid in the pid file, if that process is a nodesource-standin server."""
    try:
        pid = int((Path(state_dir) / PID_FILE).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _is_standin(pid) else None


def _is_standin(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is ours (a test's), or it stays a zombie
    return "standins.nodesource" in _cmdline(pid)


def _serves(pid: int, root: Path, port: int) -> bool:
    args = _cmdline(pid)
    return _option(args, "--root") == str(root) and _option(args, "--port") == str(port)


def _option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args[:-1] else None


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return raw.decode(errors="replace").split("\0")[:-1]  # a zombie's is empty


def _answers(root: Path, port: int) -> bool:
    """Whether port serves root: its InRelease, unique to each build, comes back unchanged."""
    path = f"node_{_major(NODE_VERSION)}.x/dists/{SUITE}/InRelease"
    try:
        with _OPENER.open(f"http://127.0.0.1:{port}/{path}", timeout=PROBE_TIMEOUT) as response:
            return response.read() == (root / path).read_bytes()
    except OSError:  # URLError, a reset, a timeout, a missing file
        return False


def _write_pid(path: Path, pid: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(f"{pid}\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m standins.nodesource",
        description="NodeSource-shaped apt repository for the sandbox. NOT NodeSource.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve a built site root over HTTP")
    serve.add_argument("--root", type=Path, required=True)
    serve.add_argument("--port", type=int, default=STANDIN_PORT)
    serve.add_argument("--pid-file", type=Path, help="detach, and write the server's pid here")
    build = commands.add_parser("build", help="build the site root, print its path")
    build.add_argument("--cache-dir", type=Path, required=True)
    build.add_argument("--version", default=NODE_VERSION)
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve_forever(args.root, args.port, args.pid_file)
    else:
        print(build_repository(args.cache_dir, args.version))

