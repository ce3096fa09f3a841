"""What a bare host of each distro receives from the reference configuration, byte for byte.

capture.py runs deploy.py against pyinfra's @fake connector (nothing is touched) and prints
every command and every uploaded file in order. A change to the output is either intended,
and then the golden file is rewritten and the difference reviewed in the commit:

    ORCHESTRA_UPDATE_GOLDEN=1 python -m pytest tests/unit/test_golden.py

or it is a regression in what hosts receive. The same capture with the four roots
(install_root, config_root, log_root, state_root) moved proves no path keeps a default one.
"""

import difflib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestra_infra.config import read_group_data

HERE = Path(__file__).parent / "golden"
ROOT = HERE.parent.parent.parent
# group_data/all.py's roots, and where the second capture moves them.
DEFAULT_ROOTS = {"install_root": "/opt/orchestra", "config_root": "/etc/orchestra",
                 "log_root": "/var/log/orchestra", "state_root": "/var/lib/orchestra-infra"}
OTHER_ROOTS = {"install_root": "/srv/orch-app", "config_root": "/srv/orch-etc",
               "log_root": "/srv/orch-log", "state_root": "/srv/orch-state"}


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


def test_the_default_roots_are_group_data_defaults():
    data = read_group_data(ROOT / "group_data" / "all.py")
    assert {key: data[key] for key in DEFAULT_ROOTS} == DEFAULT_ROOTS


@pytest.mark.parametrize("distro", ["ubuntu2204", "debian12"])
def test_every_path_follows_the_roots(distro):
    """No command or file keeps a default root when the roots are moved elsewhere."""
    plan = _capture(distro, OTHER_ROOTS)
    lines = plan.splitlines()
    for key, default in DEFAULT_ROOTS.items():
        stray = [line for line in lines if default in line]
        assert not stray, f"{key} {default} is still used:\n" + "\n".join(stray[:20])
    for key, moved in OTHER_ROOTS.items():
        assert moved in plan, f"{key} {moved} is never used"
