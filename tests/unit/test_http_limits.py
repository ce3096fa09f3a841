"""Every HTTP request a host makes for the deploy ends: a connect timeout and a total limit.

Read from what hosts really receive (the golden plans of both distros) and from every shell
template, so a new `curl` without limits fails here, wherever it is added.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from operations import system

ROOT = Path(__file__).resolve().parents[2]
# A curl invocation: `curl -...` to the end of its command (a pipe, `;`, `&&`, `)`, newline),
# continuation lines included; comment lines (prose about curl) are left out first.
CURL = re.compile(r"(?<![\w./-])curl\s+-(?:[^;|&)\n]|\\\n)*")


def curls(text: str) -> list[str]:
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    return [m.group(0) for m in CURL.finditer(code)]


def limited(command: str) -> bool:
    return "--connect-timeout" in command and "--max-time" in command


@pytest.mark.parametrize("plan", ["ubuntu2204.txt", "debian12.txt"])
def test_every_curl_a_host_receives_has_limits(plan):
    text = (ROOT / "tests" / "unit" / "golden" / plan).read_text()
    found = curls(text)
    assert len(found) >= 5  # health waits, preflight, signing keys, restore, alerts
    assert [c for c in found if not limited(c)] == []


def test_every_curl_in_a_template_has_limits():
    unlimited = []
    for path in sorted((ROOT / "templates").rglob("*.j2")):
        for command in curls(path.read_text()):
            if not limited(command) and "{{ curl_limits }}" not in command:
                unlimited.append(f"{path.relative_to(ROOT)}: {command.strip()[:100]}")
    assert unlimited == []


def test_wait_healthy_gives_up_on_a_service_that_never_answers(tmp_path):
    """A listener that accepts and never answers (what a stopped process looks like from
    outside): the wait ends after its timeout plus one request's limit, naming the program
    and curl's error, and runs the failure hook."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        script = system.wait_healthy("api-1", port, "/health", 1,
                                     on_failure="echo LOG-TAIL >&2; ")
        run = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert f"api-1 is not healthy at http://127.0.0.1:{port}/health after 1 s:" in run.stderr
    assert "curl: (28)" in run.stderr  # curl's own "timed out"
    assert "LOG-TAIL" in run.stderr


def test_wait_healthy_returns_as_soon_as_the_service_answers(tmp_path):
    import http.server
    import threading

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        script = system.wait_healthy("api-1", server.server_port, "/health", 30)
        run = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
    finally:
        server.shutdown()
    assert (run.returncode, run.stderr) == (0, "")


def test_curl_limits_are_shell_words():
    assert shlex.split(system.curl_limits(900)) == ["--connect-timeout", "5", "--max-time", "900"]
    assert shlex.split(system.curl_limits(2)) == ["--connect-timeout", "2", "--max-time", "2"]
