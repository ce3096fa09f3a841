"""Refusals while planning: the whole deploy.py against pyinfra's @fake connector
(tests/unit/golden/capture.py) stops before any change; only facts were read, nothing sent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WRITES = ("apt-get", "useradd", "mkdir", "chmod", "chown", "systemctl", "install -", "mv ")


def capture(data: dict | None = None, responses: list | None = None,
            distro: str = "ubuntu2204") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ORCHESTRA_GOLDEN_DATA", None)
    if data:
        env["ORCHESTRA_GOLDEN_DATA"] = json.dumps(data)
    if responses:
        env["ORCHESTRA_GOLDEN_RESPONSES"] = json.dumps(responses)
    return subprocess.run([sys.executable, str(ROOT / "tests/unit/golden/capture.py"), distro],
                          capture_output=True, text=True, timeout=300, env=env)


def assert_nothing_changed(run: subprocess.CompletedProcess) -> None:
    assert run.returncode != 0
    assert "nothing was changed" in run.stderr
    sent = run.stdout.splitlines()
    assert [line for line in sent if line.startswith("> ")] == []  # no file uploaded
    assert [line for line in sent if line.startswith("$ ")
            and any(word in line for word in WRITES)] == []
    assert any(line.startswith("$ ") for line in sent)  # it did get as far as reading facts


def test_a_source_with_links_out_of_its_tree_is_never_uploaded(tmp_path):
    for path, text in (("app/api/main.py", "VERSION = 1\n"),
                       ("secrets/ENV.yaml", "postgres_password: hunter2\n")):
        (tmp_path / path).parent.mkdir(parents=True)
        (tmp_path / path).write_text(text)
    source = tmp_path / "app"
    (source / "env.yaml").symlink_to("../secrets/ENV.yaml")
    (source / "ssh").symlink_to(Path.home() / ".ssh")
    run = capture({"app_source": str(source)})
    assert_nothing_changed(run)
    assert "env.yaml -> ../secrets/ENV.yaml: leads out of the source tree" in run.stderr
    assert f"ssh -> {Path.home()}/.ssh: an absolute link" in run.stderr
    assert "hunter2" not in run.stdout + run.stderr


def test_a_host_recorded_for_another_environment_is_refused():
    run = capture(responses=[["orchestra-infra/environment", "staging"]])
    assert_nothing_changed(run)
    assert ("@fake/golden serves environment 'staging' (recorded in "
            "/var/lib/orchestra-infra/environment), not 'golden': nothing was changed") \
        in run.stderr


def test_a_host_recorded_for_this_environment_is_deployed():
    run = capture(responses=[["orchestra-infra/environment", "golden"]])
    assert run.returncode == 0, run.stderr[-2000:]
    assert "> /var/lib/orchestra-infra/environment.orchestra-new\ngolden\n" in run.stdout
