"""``orchestra-infra drift ENV``: does every host still match the repository?

The preview an operator would type (``pyinfra inventories/ENV.py deploy.py --dry --diff
--json``, with change detection on, no ``-y``) is run against every host of ENV; its plan
names each operation that would change something on each host, and the diffs pyinfra and
operations/render.py print (secret values already masked there) are gathered per host and
file. Every secret value of ENV is masked once more in whatever is shown, whoever printed it.

Exit 0: nothing would change; 1: something would (drift); 2: the preview failed.

``--alert`` sends the summary to the webhook (secret ``alert_webhook_url``, Slack-compatible
``{"text": ...}``) and the e-mail addresses (``alert_email_to`` through ``alert_smtp_host``)
Monit's alerts use, from the control machine, once per new drift or new failure of the check
(exit 2: a host out of reach, a failed preview): the last one reported is fingerprinted in
``$XDG_STATE_HOME/orchestra-infra/drift-ENV.json`` (default ``~/.local/state``); a clean run
forgets it, so the next drift or failure is reported again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .pyinfra_run import run_pyinfra

EXIT_CLEAN, EXIT_DRIFT, EXIT_ERROR = 0, 1, 2
MASK = "********"
# Shorter values would mask ordinary words; every generated secret is much longer.
MIN_SECRET_LENGTH = 8

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_DIFF_HEAD = re.compile(
    r"^\[(?P<host>[^\]]+)\]\s+(?P<what>Will (?:modify|create|[Rr]emove lines in|replace lines "
    r"in)) (?P<path>\S+)\s*$")


@dataclass
class HostDrift:
    operations: list[str] = field(default_factory=list)
    # would run if an earlier one changes something (restarts, reloads): in the JSON only
    conditional: list[str] = field(default_factory=list)
    diffs: dict[str, str] = field(default_factory=dict)     # path -> masked unified diff

    @property
    def drifted(self) -> bool:
        return bool(self.operations)


@dataclass
class Report:
    env: str
    hosts: dict[str, HostDrift]
    error: str | None = None

    @property
    def drifted(self) -> bool:
        return any(h.drifted for h in self.hosts.values())

    @property
    def exit_code(self) -> int:
        if self.error:
            return EXIT_ERROR
        return EXIT_DRIFT if self.drifted else EXIT_CLEAN

    def fingerprint(self) -> str:
        """The same drift (or the same failure) gives the same value, whenever it is seen."""
        canonical = {"error": self.error} if self.error else {
            name: {"operations": sorted(h.operations), "diffs": h.diffs}
            for name, h in sorted(self.hosts.items()) if h.drifted}
        return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()

    def as_json(self) -> dict:
        return {"env": self.env, "drift": self.drifted, "error": self.error,
                "fingerprint": self.fingerprint() if self.drifted else None,
                "hosts": {name: {"drift": h.drifted, "operations": h.operations,
                                 "conditional": h.conditional, "diffs": h.diffs}
                          for name, h in sorted(self.hosts.items())}}

    def summary(self) -> str:
        """A few lines: which hosts drifted, and in what."""
        if self.error:
            return f"{self.env}: drift check failed: {self.error}"
        drifted = {n: h for n, h in sorted(self.hosts.items()) if h.drifted}
        if not drifted:
            return f"{self.env}: no drift on {len(self.hosts)} host(s)"
        lines = [f"{self.env}: drift on {len(drifted)} of {len(self.hosts)} host(s)"]
        for name, h in drifted.items():
            lines.append(f"[{name}] {len(h.operations)} operation(s) would change: "
                         + "; ".join(h.operations))
        return "\n".join(lines)

    def text(self) -> str:
        """The summary, then every diff."""
        lines = [self.summary()]
        for name, h in sorted(self.hosts.items()):
            if not h.drifted:
                continue
            lines.append("")
            lines.append(f"[{name}]")
            lines += [f"  changes: {op}" for op in h.operations]
            for path, diff in h.diffs.items():
                lines.append(f"  --- {path}")
                lines += [f"  {line}" for line in diff.splitlines()]
        return "\n".join(lines)


def mask(text: str, secrets: Iterable[str]) -> str:
    for value in sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len,
                        reverse=True):
        text = text.replace(value, MASK)
    return text


def parse_diffs(stderr: str) -> dict[str, dict[str, str]]:
    """pyinfra's ``--diff`` output -> {host: {path: diff}}."""
    found: dict[str, dict[str, str]] = {}
    current: list[str] | None = None
    for raw in _ANSI.sub("", stderr).splitlines():
        head = _DIFF_HEAD.match(raw.strip())
        if head:
            current = []
            found.setdefault(head["host"], {})[head["path"]] = current  # type: ignore[assignment]
            continue
        if current is not None and raw.startswith("  ") and raw.strip():
            current.append(raw[2:])
        else:
            current = None
    return {host: {path: "\n".join(lines) for path, lines in diffs.items()}  # type: ignore[misc]
            for host, diffs in found.items()}


def parse(env: str, stdout: str, stderr: str, secrets: Iterable[str] = (),
          hosts: Iterable[str] = ()) -> Report:
    """The preview's JSON plan (stdout) and its log (stderr) -> a Report; ``hosts``: every
    host of the inventory (the plan names only those with something to do)."""
    secrets, all_hosts = list(secrets), list(hosts)
    try:
        plan = json.loads(stdout)["plan"]
    except (ValueError, KeyError, TypeError):
        tail = [line for line in _ANSI.sub("", stderr).splitlines() if line.strip()][-5:]
        return Report(env, {}, error=mask("the preview printed no plan: " + " / ".join(tail),
                                          secrets))
    hosts = {name: HostDrift() for name in all_hosts}
    for op in plan:
        name = mask(op["name"], secrets)
        for host in op.get("hosts_with_change", []):
            hosts.setdefault(host, HostDrift()).operations.append(name)
        for host in op.get("hosts_with_conditional_change", []):
            hosts.setdefault(host, HostDrift()).conditional.append(name)
    for host, diffs in parse_diffs(stderr).items():
        hosts.setdefault(host, HostDrift()).diffs.update(
            {path: mask(diff, secrets) for path, diff in diffs.items()})
    return Report(env, hosts)


def preview(env: str, data: list[str]) -> subprocess.CompletedProcess:
    data_args = [arg for pair in data for arg in ("--data", pair)]
    return run_pyinfra(env, "deploy.py", "--dry", "--diff", "--json", *data_args, yes=False,
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)


def check(env: str, data: list[str], secrets: Iterable[str], hosts: Iterable[str] = (),
          run: Callable[[str, list[str]], subprocess.CompletedProcess] = preview) -> Report:
    result = run(env, data)
    report = parse(env, result.stdout, result.stderr, secrets, hosts)
    if result.returncode != 0 and not report.error:
        tail = [line for line in _ANSI.sub("", result.stderr).splitlines() if line.strip()][-5:]
        report.error = mask(f"pyinfra exited {result.returncode}: " + " / ".join(tail), secrets)
    return report


# --- alerts ----------------------------------------------------------------------------------

def state_file(env: str) -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "orchestra-infra" / f"drift-{env}.json"


def should_alert(report: Report, path: Path) -> bool:
    """True once per new drift or new failure of the check (a host out of reach must not
    silence a scheduled check); remembers it, and forgets it when there is neither."""
    if not report.error and not report.drifted:
        path.unlink(missing_ok=True)
        return False
    fingerprint = report.fingerprint()
    try:
        if json.loads(path.read_text()).get("fingerprint") == fingerprint:
            return False
    except (OSError, ValueError, AttributeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"fingerprint": fingerprint, "reported": time.time()}) + "\n")
    tmp.replace(path)
    return True


def send_webhook(url: str, text: str, timeout: float = 10) -> None:
    import urllib.request

    request = urllib.request.Request(url, data=json.dumps({"text": text}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (https, validated)
        response.read(1024)


def send_email(host: str, port: int, sender: str, to: list[str], subject: str, text: str,
               timeout: float = 30) -> None:
    import smtplib
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, ", ".join(to), subject
    message.set_content(text)
    with smtplib.SMTP(host, port, timeout=timeout) as smtp:
        smtp.send_message(message)


def alert(report: Report, webhook: str | None, email: dict | None,
          echo: Callable[[str], None]) -> bool:
    """Send the summary where Monit's alerts go; False when a channel failed."""
    ok = True
    text = report.summary()
    if webhook:
        try:
            send_webhook(webhook, text)
            echo("drift alert sent to the webhook")
        except OSError as e:
            echo(f"drift alert: the webhook failed: {e}")
            ok = False
    if email and email.get("to"):
        try:
            send_email(email["host"], email["port"], email["sender"], email["to"],
                       f"[orchestra-infra] drift on {report.env}", text)
            echo(f"drift alert mailed to {', '.join(email['to'])}")
        except OSError as e:
            echo(f"drift alert: e-mail failed: {e}")
            ok = False
    if not webhook and not (email and email.get("to")):
        echo("drift alert: no webhook (alert_webhook_url) and no alert_email_to: nothing sent")
    return ok
