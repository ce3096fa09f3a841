"""How each fault is done on the host: templates/chaos/scripts/fault.sh.j2, run as root over
SSH (``status_hosts.run_script``); every name in it comes from the service catalogue."""

from __future__ import annotations

from operations import render
from orchestra_infra.catalog import SUPERVISORCTL, SYSTEMCTL, Service

FILL_FILE = "/var/tmp/orchestra-chaos-fill"
# The root volume is filled to this percentage (the disk alert fires above 85 %).
FILL_PERCENT = 90


def script(kind: str, service: Service | None, hold: int, fill_max_bytes: int) -> str:
    """The shell script that injects one fault (or, for ``cleanup``, undoes a soak's
    leftovers); it prints what it did on one line."""
    process = {}
    if service is not None:
        process = {"name": service.name, "manager": service.manager, "unit": service.unit,
                   "pidfile": service.pidfile, "matching": service.matching}
    return render.script("chaos/scripts/fault.sh.j2", kind=kind, hold=int(hold),
                         fill_max_bytes=int(fill_max_bytes), percent=FILL_PERCENT,
                         fill_file=FILL_FILE, systemctl=SYSTEMCTL, supervisorctl=SUPERVISORCTL,
                         **process)


def cleanup_script() -> str:
    return script("cleanup", None, 0, 0)


# The alert receiver (templates/chaos/scripts/alerts.sh.j2): each POST body on one line,
# after the time it arrived.
_RECEIVER = """import http.server, sys, time
port, path = int(sys.argv[1]), sys.argv[2]
class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(path, "ab") as log:
            log.write(b"%.3f " % time.time() + body.replace(b"\\n", b" ") + b"\\n")
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Receiver).serve_forever()
"""


def alerts_script(action: str, port: int = 0, max_seconds: int = 0) -> str:
    """Start the soak's alert receiver on the victim (``start``), start it again after a
    reboot with what it had (``resume``), or print what it got and stop it (``read``)."""
    return render.script("chaos/scripts/alerts.sh.j2", action=action, port=int(port),
                         max_seconds=int(max_seconds), receiver=_RECEIVER)
