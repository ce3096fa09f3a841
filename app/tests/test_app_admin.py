"""app/modern-admin: server.js, run by the machine's Node on 127.0.0.1 over a small dist/.

Skipped when there is no node. The React build itself is checked at deploy time
(npm ci && npm run build); these tests need no npm packages.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ADMIN = Path(__file__).resolve().parents[1] / "modern-admin"
NODE = shutil.which("node")
START_TIMEOUT = 10.0
POLL_INTERVAL = 0.05
# Never through a proxy from the environment: test traffic stays on loopback.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with _OPENER.open(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture
def admin(tmp_path):
    """server.js next to a dist/ like the one Vite builds, serving on a free port."""
    for name in ("server.js", "overview.js"):
        shutil.copy(ADMIN / name, tmp_path / name)
    (tmp_path / "dist" / "assets").mkdir(parents=True)
    (tmp_path / "dist" / "index.html").write_text("<!doctype html><div id=root></div>")
    (tmp_path / "dist" / "assets" / "index-abc123.js").write_text("console.log(1)")
    (tmp_path / "secret.txt").write_text("outside dist")
    port = free_port()
    process = subprocess.Popen([NODE, "server.js"], cwd=tmp_path, env={"PORT": str(port)},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    try:
        for _ in range(int(START_TIMEOUT / POLL_INTERVAL) + 1):
            try:
                fetch(base + "/")
                break
            except (urllib.error.URLError, OSError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"server.js did not start: {process.stdout.read()}") from None
                time.sleep(POLL_INTERVAL)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_server_js_is_valid_javascript():
    subprocess.run([NODE, "--check", str(ADMIN / "server.js")], check=True)


def test_the_page_is_served_and_never_cached(admin):
    status, headers, body = fetch(admin + "/")
    assert status == 200 and body.startswith(b"<!doctype html>")
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Cache-Control"] == "no-cache"


def test_hashed_assets_are_cached_forever(admin):
    status, headers, body = fetch(admin + "/assets/index-abc123.js")
    assert status == 200 and body == b"console.log(1)"
    assert headers["Content-Type"].startswith("text/javascript")
    assert "immutable" in headers["Cache-Control"]


def test_app_routes_get_the_page_and_missing_files_404(admin):
    assert fetch(admin + "/services/api")[2].startswith(b"<!doctype html>")
    assert fetch(admin + "/assets/missing.js")[0] == 404


@pytest.mark.parametrize(("path", "expected"), [
    ("/../secret.txt", 404),  # the URL parser already removes the dot segments
    ("/%2e%2e/secret.txt", 404),
    ("/assets/..%2f..%2fsecret.txt", 404),  # an encoded slash is no separator in a URL
    ("/%00", 400),
    ("/%E0%A4%A", 400),  # not decodable
])
def test_nothing_outside_dist_is_served(admin, path, expected):
    status, _, body = fetch(admin + path)
    assert (status, b"outside dist" in body) == (expected, False)


def test_only_get_and_head(admin):
    assert fetch(admin + "/", "HEAD")[0] == 200
    status, headers, _ = fetch(admin + "/", "POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"


def test_it_refuses_to_start_without_a_build(tmp_path):
    for name in ("server.js", "overview.js"):
        shutil.copy(ADMIN / name, tmp_path / name)
    result = subprocess.run([NODE, "server.js"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=10, env={"PORT": str(free_port())})
    assert result.returncode == 1 and "npm ci && npm run build" in result.stderr


def test_the_lock_file_names_no_registry():
    lock = json.loads((ADMIN / "package-lock.json").read_text())
    assert lock["lockfileVersion"] == 3
    assert not [name for name, entry in lock["packages"].items() if "resolved" in entry]
