"""Drive the admin page in a real headless Chromium (the distro's), as an operator opens it.

Run by tests/e2e/test_admin_dashboard.py in a process of its own (pyinfra's CLI, imported by
the e2e session, patches the interpreter with gevent; Playwright must not meet it). The
request arrives on stdin as one JSON line (the edge password included: never on a command
line); the script prints ``ready`` and a JSON line of what the page shows, then waits for a
line naming a service that was just stopped (``SERVICE``, or ``HOST SERVICE`` on a page of
several hosts), and prints a JSON line with how long the page took to turn its row red.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def shown(page) -> dict:
    return page.evaluate("""() => ({
        rows: [...document.querySelectorAll("tr[data-service]")].map((tr) => ({
            host: tr.closest("[data-host]")?.dataset.host || null,
            service: tr.dataset.service, health: tr.dataset.health,
            cells: [...tr.cells].map((td) => td.innerText)})),
        graphs: [...document.querySelectorAll("[data-graph]")].map((f) => ({
            id: f.dataset.graph, caption: f.querySelector("figcaption").innerText,
            paths: f.querySelectorAll("path").length})),
        alerts: document.querySelector(".alerts")?.innerText || null,
        summary: document.querySelector(".glance")?.innerText || null,
        title: document.title,
    })""")


def main() -> None:
    request = json.loads(sys.stdin.readline())
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS,
            ignore_https_errors=True, viewport={"width": 1280, "height": 1800},
            http_credentials={"username": request["user"], "password": request["password"]})
        page = context.new_page()
        page.goto(request["url"], wait_until="networkidle", timeout=60_000)
        page.wait_for_selector("tr[data-service]", timeout=60_000)
        # Attached, not visible: on a host provisioned a minute ago a graph has one point,
        # a path of no extent, which Playwright never counts as visible.
        page.wait_for_selector("[data-graph] path", state="attached", timeout=60_000)
        page.screenshot(path=request["screenshot"], full_page=True)
        print("ready", flush=True)
        print(json.dumps(shown(page)), flush=True)
        *host, service = sys.stdin.readline().split()
        scope = f'[data-host="{host[0]}"] ' if host else ""
        started = time.monotonic()
        page.wait_for_selector(f'{scope}tr[data-service="{service}"][data-health="fail"]',
                               timeout=request["red_within_ms"])
        seconds = time.monotonic() - started
        page.screenshot(path=request["screenshot_stopped"], full_page=True)
        print(json.dumps({"red_after_seconds": round(seconds, 1), **shown(page)}), flush=True)
        context.close()


if __name__ == "__main__":
    main()
