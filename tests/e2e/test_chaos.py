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
SEED = 16  # kill -9 of nginx's master, of mcp-task and of mcp-monitor (two instances each)


@pytest.fixture(scope="module")
def soak(target, provisioned) -> dict:
    """One 3-minute soak; its verdict, outcomes, log and plot go to build/e2e-figures/."""
    figures = REPO / "build" / "e2e-figures"
    figures.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "orchestra_infra", "chaos", "sandbox", "--minutes", str(MINUTES),
         "--seed", str(SEED), "--every", "20", "--faults", "kill,stop,restart",
         "--alerts-port", str(WEBHOOK_PORT), "--json", "--plot", str(figures / "chaos.png"),
         "--outcomes", str(figures / "chaos-outcomes.jsonl")],
        cwd=REPO, capture_output=True, text=True, timeout=MINUTES * 60 + 600,
        env={**os.environ, "ORCHESTRA_SANDBOX_HOSTS": target.name})
    (figures / "chaos.json").write_text(result.stdout)
    (figures / "chaos.log").write_text(result.stderr)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    verdict = json.loads(result.stdout)
    print("\n" + result.stderr + json.dumps({k: verdict[k] for k in (
        "availability", "unaffected_availability", "latency_seconds", "per_fault_class",
        "acknowledged_writes", "lost_acknowledged_writes")}, indent=2))
    return verdict


def test_a_short_soak_loses_no_acknowledged_write(soak):
    assert soak["acknowledged_writes"] > 100
    assert soak["lost_acknowledged_writes"] == {"postgresql": 0, "weaviate": 0}


def test_every_fault_recovers_by_itself_and_is_counted(soak):
    assert len(soak["faults"]) >= 3
    for fault in soak["faults"]:
        assert fault["recovery_seconds"] is not None, fault
        assert fault["status_ok_after"] is True, fault
        assert fault["alerts"] is not None, fault


# Once missed by a few window-edge 503s (99.81 %: an API instance waited out its reconnect
# backoff after a killed store was back); since a refused connection is tried again 0.1 s
# later (app/api/backoff.py), the same run measures 100 %.
def test_the_requests_that_did_not_need_what_was_down_meet_the_promise(soak):
    assert soak["unaffected_availability"] >= 0.999, soak["problems"]
