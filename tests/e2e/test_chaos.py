"""The chaos soak, short (`orchestra-infra chaos`): 3 minutes of load through the edge, with
the quickest fault classes (kill, stop, restart: three faults with this seed), on the
provisioned target. Every acknowledged write must be read back, the requests that did not
need what was down must meet 99.9 %, and every fault must recover by itself. The 30-minute
soak is a benchmark (docs/benchmarks.md), run by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .conftest import REPO, WEBHOOK_PORT

pytestmark = pytest.mark.e2e

MINUTES = 3
SEED = 16  # a PostgreSQL restart, kill -9 of an MCP server, Weaviate stopped


def test_a_short_soak_loses_nothing_and_keeps_the_promise(target, provisioned):
    figures = REPO / "build" / "e2e-figures"
    figures.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "orchestra_infra", "chaos", "sandbox", "--minutes", str(MINUTES),
         "--seed", str(SEED), "--every", "20", "--faults", "kill,stop,restart",
         "--alerts-port", str(WEBHOOK_PORT), "--json", "--plot", str(figures / "chaos.png")],
        cwd=REPO, capture_output=True, text=True, timeout=MINUTES * 60 + 600,
        env={**os.environ, "ORCHESTRA_SANDBOX_HOSTS": target.name})
    (figures / "chaos.json").write_text(result.stdout)
    (figures / "chaos.log").write_text(result.stderr)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    verdict = json.loads(result.stdout)
    print("\n" + result.stderr + json.dumps({k: verdict[k] for k in (
        "availability", "unaffected_availability", "latency_seconds", "per_fault_class",
        "acknowledged_writes", "lost_acknowledged_writes")}, indent=2))
    assert verdict["acknowledged_writes"] > 100
    assert verdict["lost_acknowledged_writes"] == {"postgresql": 0, "weaviate": 0}
    assert len(verdict["faults"]) >= 3
    assert all(f["alerts"] is not None for f in verdict["faults"])
    assert verdict["passed"], verdict["problems"]
