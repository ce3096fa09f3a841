"""The soak's fault schedule: which fault, on what, when. Pure and seeded, so that a run can
be repeated exactly (`--seed`).

A fault class is what is done (``kill``: SIGKILL; ``hang``: SIGSTOP held past the health
checks' window, then SIGCONT; ``stop``: `systemctl stop`; ``restart``: a PostgreSQL restart;
``disk``: the root volume filled past the alert threshold for a while; ``reboot``: the whole
host). A target is a service of the catalogue (``api-0``, ``postgresql``, ...). At most one
fault runs at a time: the next starts after the previous one's hold and a quiet gap.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# What each class can hit: the managers whose processes it applies to (see faults.py).
CLASSES = ("kill", "hang", "stop", "restart", "disk", "reboot")
# The classes a short run (CI) uses: each recovers within seconds to a minute.
QUICK = ("kill", "hang", "stop", "restart")
# How long a fault is held (seconds): a hang outlasts Monit's window (3 failed 10 s cycles
# and the restart), a full disk outlasts the alert's `for:` and Monit's disk check.
HOLD = {"kill": 0, "hang": 45, "stop": 0, "restart": 0, "disk": 60, "reboot": 0}
# The quiet time after a fault ends before the next may start, so that each recovery is
# measured alone (the supervisor's restart, Monit's next cycle, a reboot's boot).
SETTLE = {"kill": 20, "hang": 30, "stop": 40, "restart": 20, "disk": 30, "reboot": 120}


@dataclass(frozen=True)
class Fault:
    at: float        # seconds after the load starts
    kind: str        # one of CLASSES
    target: str      # a catalogue service name, or "host"

    @property
    def hold(self) -> int:
        return HOLD[self.kind]

    @property
    def busy_until(self) -> float:
        return self.at + self.hold + SETTLE[self.kind]

    @property
    def label(self) -> str:
        return f"{self.kind} {self.target}"


def targets_for(kind: str, services: dict[str, str]) -> list[str]:
    """The services a fault class applies to; ``services``: {name: manager}."""
    if kind in ("disk", "reboot"):
        return ["host"]
    if kind == "restart":
        return [name for name in services if name == "postgresql"]
    if kind == "stop":  # systemd units only: Supervisor's programs are kill's and hang's
        return [name for name, manager in services.items() if manager == "systemd"]
    return list(services)  # kill, hang: every process, whatever manages it


def plan(seed: int, minutes: float, mean_interval: float, kinds: tuple[str, ...],
         services: dict[str, str]) -> list[Fault]:
    """Faults at exponentially distributed intervals (mean ``mean_interval`` s), never two
    at once, each over (its hold and its settling time) a minute before the load ends: its
    recovery must be seen. A reboot, if asked for, happens once."""
    unknown = [k for k in kinds if k not in CLASSES]
    if unknown:
        raise ValueError(f"unknown fault class {unknown[0]!r}: choose from {', '.join(CLASSES)}")
    choices = [(kind, target) for kind in kinds for target in targets_for(kind, services)]
    if not choices:
        raise ValueError("no fault class applies to the services of this environment")
    rng = random.Random(seed)
    end = minutes * 60 - 60
    faults: list[Fault] = []
    now = min(30.0, end)  # a baseline first: the load alone
    rebooted = False
    while True:
        now += rng.expovariate(1 / mean_interval)
        if faults:
            now = max(now, faults[-1].busy_until)
        if now >= end:
            return faults
        kind, target = rng.choice(choices)
        fault = Fault(round(now, 1), kind, target)
        if (kind == "reboot" and rebooted) or fault.busy_until > end:
            continue
        rebooted = rebooted or kind == "reboot"
        faults.append(fault)
