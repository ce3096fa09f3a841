"""What a bare host of each distro receives from the reference configuration, byte for byte.

capture.py runs deploy.py against pyinfra's @fake connector (nothing is touched) and prints
every command and every uploaded file in order. A change to the output is either intended,
and then the golden file is rewritten and the difference reviewed in the commit:

    ORCHESTRA_UPDATE_GOLDEN=1 python -m pytest tests/unit/test_golden.py

or it is a regression in what hosts receive.
"""

import difflib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "golden"
ROOT = HERE.parent.parent.parent


def _capture(distro: str, data: dict | None = None) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ORCHESTRA_GOLDEN_DATA", None)
    if data:
        env["ORCHESTRA_GOLDEN_DATA"] = json.dumps(data)
    run = subprocess.run([sys.executable, str(HERE / "capture.py"), distro],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


@pytest.mark.parametrize("distro", ["ubuntu2204", "debian12"])
def test_bare_host_receives_the_golden_plan(distro):
    plan = _capture(distro)
    golden = HERE / f"{distro}.txt"
    if os.environ.get("ORCHESTRA_UPDATE_GOLDEN"):
        golden.write_text(plan)
    diff = list(difflib.unified_diff(golden.read_text().splitlines(), plan.splitlines(),
                                     f"golden/{distro}.txt", "now", lineterm="", n=2))
    assert not diff, "\n".join(diff[:120])
