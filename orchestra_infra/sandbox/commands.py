"""Running this machine's commands, and waiting for what they set off to finish."""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Callable
from typing import Any

from .errors import SandboxError

POLL_INTERVAL = 0.5
# How long the kernel may take to finish a SIGKILL, or a deletion it completes asynchronously.
KILL_TIMEOUT = 10.0


def run_command(
    argv: list[str], timeout: float = 600, **kwargs: Any
) -> subprocess.CompletedProcess:
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


def wait_until(
    predicate: Callable[[], bool], timeout: float, interval: float = POLL_INTERVAL
) -> bool:
    """Poll predicate every interval seconds until it holds or timeout passes; whether it holds
    in the end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
