"""Waits that end and hosts that know their environment, on a provisioned sandbox host.

- A health wait (``system.wait_healthy``, what the rolling restart, Weaviate's start and the
  restore run) against an API instance stopped with SIGSTOP (it accepts connections and never
  answers) fails with a message naming it, within its limit; the duration is printed for
  docs/benchmarks.md, not asserted beyond the outer bound.
- A host recorded as another environment is refused by deploy.py before any change.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from operations import base, system
from orchestra_infra import sandbox
from orchestra_infra.config import environment_data

from .conftest import REPO, converge, on, pyinfra

pytestmark = pytest.mark.e2e

SANDBOX = SimpleNamespace(**environment_data("sandbox"))
API_1 = ("orchestra:api-1", 8001, "/api/health/")
WAIT = 5  # the wait's own timeout, seconds
# The wait ends within WAIT + one request's limit + the 1 s pause; the rest is SSH and slack.
OUTER_BOUND = WAIT + system.HEALTH_REQUEST_TIME + 1 + 20


def test_a_health_wait_against_a_stopped_instance_ends_with_a_message(target, provisioned):
    program, port, path = API_1
    pid = on(target, f"supervisorctl pid {program}").strip()
    assert pid.isdigit() and pid != "0"
    script = system.wait_healthy("api-1", port, path, WAIT, on_failure="echo LOG-TAIL >&2; ")
    on(target, f"kill -STOP {pid}")
    try:
        started = time.monotonic()
        result = sandbox.run(target.name, script, timeout=OUTER_BOUND)
        took = time.monotonic() - started
    finally:
        on(target, f"kill -CONT {pid}")
    print(f"hung-service wait: api-1 SIGSTOPped, wait_healthy(timeout={WAIT}) ended after "
          f"{took:.1f} s (rc {result.returncode}): {result.stderr.strip().splitlines()[0]}")
    assert result.returncode == 1
    assert f"api-1 is not healthy at http://127.0.0.1:{port}{path} after {WAIT} s:" in \
        result.stderr
    assert "curl: (28)" in result.stderr  # curl's "timed out": the limit, not a refusal
    assert "LOG-TAIL" in result.stderr
    # Healthy again once continued: the same wait passes.
    again = sandbox.run(target.name, system.wait_healthy("api-1", port, path, 30), timeout=60)
    assert again.returncode == 0, again.stderr


def test_a_host_of_another_environment_is_refused_before_any_change(target, provisioned):
    record = base.environment_record(SANDBOX)
    assert on(target, f"cat {record}") == "sandbox\n"
    on(target, f"echo prod > {record}")
    try:
        before = on(target, f"stat -c %Y {record} /etc/orchestra/api.env")
        run = pyinfra(target, "-y")
        assert run.returncode != 0
        assert (f"serves environment 'prod' (recorded in {record}), not 'sandbox': nothing was "
                "changed") in run.stderr
        assert on(target, f"stat -c %Y {record} /etc/orchestra/api.env") == before
        # reprovision reads the record before it touches hosts/ENV or the host.
        started = time.monotonic()
        chain = subprocess.run(
            [sys.executable, "-m", "orchestra_infra", "reprovision", "sandbox", "-y",
             "--address", target.address], cwd=REPO, capture_output=True, text=True, timeout=300,
            stdin=subprocess.DEVNULL, env={**os.environ, "ORCHESTRA_SANDBOX_HOSTS": target.name})
        print(f"reprovision onto a host of another environment: refused after "
              f"{time.monotonic() - started:.1f} s")
        assert chain.returncode != 0
        assert "--> environment" in chain.stdout and "--> deploy" not in chain.stdout
        assert "serves environment 'prod'" in chain.stdout + chain.stderr
        assert on(target, f"stat -c %Y {record} /etc/orchestra/api.env") == before
    finally:
        on(target, f"echo sandbox > {record}")
    assert converge(target).totals["success"] == 0  # and the host is as converged as before
