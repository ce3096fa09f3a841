"""Run deploy.py against pyinfra's @fake connector and print every command and file it sends.

    python tests/unit/golden/capture.py ubuntu2204|debian12 > out.txt
    ORCHESTRA_GOLDEN_DATA='{"log_root": "/srv/log"}' python tests/unit/golden/capture.py debian12
    ORCHESTRA_GOLDEN_SECRETS='{"monit_password": "..."}' ...   # secrets besides the fixed ones
    ORCHESTRA_GOLDEN_RESPONSES='[["^cat /var/lib/orchestra-infra/ports.json", "{}"]]' ...

No host is touched: the @fake connector answers the facts from the table below (a bare
host of that distro) and records the rest. The output is what a bare host of that distro
would receive from the reference configuration (``golden.py``, which
``ORCHESTRA_GOLDEN_DATA`` overrides), in order, with the per-run random parts (temporary
file names, salts) replaced by fixed text.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys

from pyinfra.connectors import fake
from pyinfra.connectors.util import CommandOutput, OutputLine

RECORD: list[str] = []
OS_RELEASE = {
    "ubuntu2204": 'NAME="Ubuntu"\nVERSION_ID="22.04"\nVERSION_CODENAME=jammy\nID=ubuntu\n'
                  'ID_LIKE=debian\nUBUNTU_CODENAME=jammy\n',
    "debian12": 'NAME="Debian GNU/Linux"\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n'
                'ID=debian\n',
}

# What a bare host answers (first match wins; anything else: success, no output).
RESPONSES: list[tuple[str, str]] = [
    (r"^ss -Htlnp", 'LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:(("sshd",pid=500,fd=3))\n---\n'
                    "500 root sshd"),
    (r"findmnt -n -o TARGET --target", "/\n" * 9),
    (r"^command -v useradd", "/usr/sbin/useradd"),
    (r"FROM pg_authid WHERE rolcanlogin", "postgres|t|"),
    (r"orchestra-restic cat config", "error 10"),
    (r"^uname -s$", "Linux"),
    (r"^uname -m$", "x86_64"),
    (r"^cat /etc/group$", "root:x:0:\nsudo:x:27:ubuntu\nubuntu:x:1000:"),
    (r"^hostname", "golden"),
    (r"vmstat -s", "      8388608 K total memory\n"),
    (r"^nproc|nproc$", "4"),
    (r"echo taken", "taken"),  # the run lock is free (operations/runlock.py)
]


def _snapshot(text: str) -> str | None:
    """HostSnapshot on a bare host: no file, no directory, no unit of ours."""
    if "; do if [ -" not in text and "for u in" not in text:
        return None
    lines = []
    for words in re.findall(r"for p in ([^;]*); do if \[ -f", text):
        lines += [f"F\t{p}\t-" for p in shlex.split(words)]
    for words in re.findall(r"for p in ([^;]*); do if \[ -d", text):
        lines += [f"D\t{p}\t-" for p in shlex.split(words)]
    for words in re.findall(r"for u in ([^;]*); do printf", text):
        units = shlex.split(words)
        lines += [f"N\t{u}" for u in units]
        lines += ["U\tActiveState=inactive", "U\tUnitFileState=", "U\t"] * len(units)
    return "\n".join(lines)


def _run_shell_command(self, command, print_output=False, print_input=False, **arguments):
    text = command if isinstance(command, str) else command.get_masked_value()
    RECORD.append(f"{_who(self)}$ {text}")
    output = _snapshot(text)
    if output is not None:
        return True, CommandOutput([OutputLine("stdout", line) for line in output.splitlines()])
    for pattern, output in RESPONSES:
        if re.search(pattern, text):
            return True, CommandOutput([OutputLine("stdout", line) for line in output.splitlines()])
    return True, CommandOutput([])


def _who(connector) -> str:
    """The host's name before each record of a multi-host capture (nothing for one host)."""
    return f"[{connector.host.name}] " if os.environ.get("ORCHESTRA_GOLDEN_LAYOUT") else ""


def _put_file(self, filename_or_io, remote_filename, remote_temp_filename=None,
              print_output=False, print_input=False, **arguments):
    if hasattr(filename_or_io, "read"):
        filename_or_io.seek(0)
        data = filename_or_io.read()
    else:
        with open(filename_or_io, "rb") as f:
            data = f.read()
    if isinstance(data, bytes):
        try:
            data = data.decode()
        except UnicodeDecodeError:
            data = "<binary>"
    RECORD.append(f"{_who(self)}> {remote_filename}\n{data}\n<")
    return True


def _environment() -> None:
    """Fixed secrets (the same for every capture), and no caller's secrets or delays."""
    from orchestra_infra import secrets

    for key in [k for k in os.environ if k.startswith("ORCHESTRA_SECRET_")]:
        del os.environ[key]
    for spec in secrets.SPECS:
        if spec.required:
            os.environ[secrets.env_var(spec.name)] = f"golden-{spec.name}-0123456789"
    for name, value in json.loads(os.environ.get("ORCHESTRA_GOLDEN_SECRETS", "{}")).items():
        os.environ[secrets.env_var(name)] = value
    os.environ["ORCHESTRA_SECRETS_DIR"] = "/nonexistent/orchestra-golden-secrets"
    os.environ["PYINFRA_FAKE_DELAY"] = os.environ["PYINFRA_FAKE_DELAY_JITTER"] = "0"


def normalise(text: str) -> str:
    """Replace what differs between two runs of the same code and configuration."""
    text = re.sub(r"SCRAM-SHA-256\$4096:[^']+", "SCRAM-SHA-256$4096:SALT$KEYS", text)
    for release in set(re.findall(r"/releases/\.upload-([0-9a-f]+)-", text)):
        text = text.replace(release, "RELEASE")
    text = re.sub(r"\.upload-RELEASE-[0-9a-f]+", ".upload-RELEASE-RANDOM", text)
    # The run lock's holder and the history line: who, where, when (operations/runlock.py).
    text = re.sub(r'\{"boot_id": [^{}]*\}', "{RUN LOCK HOLDER}", text)
    text = re.sub(r'\{"changed": [^{}]*\}', "{HISTORY LINE}", text)
    return re.sub(r'"run_id": "[0-9a-f]+"', '"run_id": "RUN"', text)


def main() -> None:
    distro = sys.argv.pop(1)
    # Answers of a host that is not bare, for tests: a JSON list of [pattern, output].
    for pattern, output in reversed(json.loads(os.environ.get("ORCHESTRA_GOLDEN_RESPONSES",
                                                              "[]"))):
        RESPONSES.insert(0, (pattern, output))
    RESPONSES.insert(0, (r"-release \| grep", f"/etc/os-release\n{OS_RELEASE[distro]}---"))
    # Answers that differ from a bare host's (a test's), first.
    RESPONSES[:0] = [tuple(pair) for pair in
                     json.loads(os.environ.get("ORCHESTRA_GOLDEN_RESPONSES", "[]"))]
    _environment()
    fake.FakeConnector.run_shell_command = _run_shell_command
    fake.FakeConnector.put_file = _put_file
    from pyinfra_cli.main import main as pyinfra_main
    here = os.path.dirname(os.path.abspath(__file__))
    os.chdir(os.path.dirname(os.path.dirname(os.path.dirname(here))))
    sys.argv = ["pyinfra", "-y", os.path.join(here, "golden.py"), "deploy.py"]
    try:
        pyinfra_main()
    except SystemExit as e:
        code = e.code
    else:
        code = 0
    sys.stdout.write(normalise("\n".join(RECORD) + "\n"))
    sys.exit(code)


if __name__ == "__main__":
    main()
