"""The soak's verdict, from what the load saw and when each fault happened. Pure.

- A fault's window runs from its start to the first successful request, sent once it had
  taken effect, of a kind that needs the service hit (its recovery as a user sees it; a
  hang is resumed after its hold, so a recovery shorter than the hold is Monit's doing).
  A fault that hits nothing the load needs (or the whole host, for a full disk) has no
  window of its own.
- Availability is counted twice: over every request, and over the requests that did not
  need the service being hit while it was down ("unaffected"): the second is the promise
  (99.9 %), the first is what users saw, explained by the faults.
- Lost acknowledged writes: notes the API answered 201 for that PostgreSQL or Weaviate do
  not hold after the soak.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from .load import Outcome
from .schedule import Fault

AVAILABILITY_TARGET = 0.999


@dataclass
class Injected:
    """A fault as it happened: the soak's clock when the script ran, and what it said."""
    fault: Fault
    started: float                   # when the injection began (the window opens)
    in_place: float | None = None    # when it had taken effect (the script returned)
    said: str = ""
    error: str | None = None
    recovered: float | None = None   # set by windows()
    status_ok: bool | None = None    # `status` after the fault settled: every row healthy
    alerts: list[str] = field(default_factory=list)      # Monit's alerts about it...
    recoveries: list[str] = field(default_factory=list)  # ...and its recovery messages

    @property
    def skipped(self) -> bool:
        return self.error is not None or self.said.startswith("skipped")

    @property
    def recovery_seconds(self) -> float | None:
        if self.recovered is None:
            return None
        return round(self.recovered - self.started, 1)


def _affects(injected: Injected, outcome: Outcome) -> bool:
    target = injected.fault.target
    return target in outcome.needs or (target == "host" and injected.fault.kind == "reboot")


def windows(injected: list[Injected], outcomes: list[Outcome]) -> None:
    """Set each fault's ``recovered``: the end of the first successful request, sent once
    the fault had taken effect, of a kind that needs what it hit (None: never recovered
    while the load ran). A fault the load does not depend on recovers at once."""
    ordered = sorted(outcomes, key=lambda o: o.started)
    for item in injected:
        if item.skipped:
            continue
        after = item.in_place if item.in_place is not None else item.started
        if not any(_affects(item, o) for o in ordered):
            item.recovered = after
            continue
        # A fault may bite after its command returned (a reboot asked for, a process that
        # dies on its next request): recovery is counted from its first failure, if any.
        busy_until = item.started + (item.fault.busy_until - item.fault.at)
        first_failure = next((o.started for o in ordered if item.started <= o.started
                              <= busy_until and not o.ok and _affects(item, o)), None)
        if first_failure is not None:
            after = max(after, first_failure)
        item.recovered = next((o.started + o.latency for o in ordered
                               if o.started >= after and o.ok and _affects(item, o)), None)


def _during(item: Injected, outcome: Outcome, end: float) -> bool:
    until = item.recovered if item.recovered is not None else end
    return item.started <= outcome.started <= until


@dataclass
class Verdict:
    requests: int
    succeeded: int
    unaffected: int
    unaffected_succeeded: int
    latency: dict[str, float]
    per_class: dict[str, dict] = field(default_factory=dict)
    per_kind: dict[str, dict] = field(default_factory=dict)
    faults: list[dict] = field(default_factory=list)
    acknowledged: int = 0
    lost: dict[str, list[str]] = field(default_factory=dict)
    cache_missing: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def availability(self) -> float:
        return self.succeeded / self.requests if self.requests else 0.0

    @property
    def unaffected_availability(self) -> float:
        return self.unaffected_succeeded / self.unaffected if self.unaffected else 0.0

    @property
    def passed(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {"requests": self.requests, "succeeded": self.succeeded,
                "availability": round(self.availability, 5),
                "unaffected_requests": self.unaffected,
                "unaffected_availability": round(self.unaffected_availability, 5),
                "latency_seconds": self.latency, "per_fault_class": self.per_class,
                "per_request_kind": self.per_kind, "faults": self.faults,
                "acknowledged_writes": self.acknowledged,
                "lost_acknowledged_writes": {k: len(v) for k, v in self.lost.items()},
                "lost_ids": self.lost, "cache_entries_missing": self.cache_missing,
                "problems": self.problems, "passed": self.passed}


def _ratio(ok: int, total: int) -> float | None:
    return round(ok / total, 5) if total else None


def _percentiles(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {"p50": values[0] if values else 0.0, "p95": 0.0, "p99": 0.0}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(cuts[49], 4), "p95": round(cuts[94], 4), "p99": round(cuts[98], 4)}


def judge(injected: list[Injected], outcomes: list[Outcome], lost: dict[str, list[str]],
          cache_missing: int = 0, target: float = AVAILABILITY_TARGET,
          alerts_counted: bool = False) -> Verdict:
    """The verdict; with ``alerts_counted``, a hang (held past the health checks' window by
    construction) must have produced exactly one alert and one recovery message."""
    windows(injected, outcomes)
    end = max((o.started + o.latency for o in outcomes), default=0.0)
    active = [i for i in injected if not i.skipped]
    unaffected = [o for o in outcomes
                  if not any(_affects(i, o) and _during(i, o, end) for i in active)]
    verdict = Verdict(
        requests=len(outcomes), succeeded=sum(o.ok for o in outcomes),
        unaffected=len(unaffected), unaffected_succeeded=sum(o.ok for o in unaffected),
        latency=_percentiles([o.latency for o in outcomes if o.ok]),
        acknowledged=sum(1 for o in outcomes if o.note), lost=lost,
        cache_missing=cache_missing)
    for kind in sorted({o.kind for o in outcomes}):
        mine = [o for o in outcomes if o.kind == kind]
        verdict.per_kind[kind] = {"requests": len(mine),
                                  "availability": _ratio(sum(o.ok for o in mine), len(mine))}
    for name in sorted({i.fault.kind for i in active}):
        items = [i for i in active if i.fault.kind == name]
        during = [o for o in outcomes if any(_during(i, o, end) for i in items)]
        spared = [o for o in during if not any(_affects(i, o) for i in items)]
        recoveries = [i.recovery_seconds for i in items if i.recovery_seconds is not None]
        verdict.per_class[name] = {
            "faults": len(items),
            "availability_during": _ratio(sum(o.ok for o in during), len(during)),
            "unaffected_availability_during": _ratio(sum(o.ok for o in spared), len(spared)),
            "recovery_seconds_max": max(recoveries) if recoveries else None,
        }
    for item in injected:
        verdict.faults.append({"at": item.started, "fault": item.fault.label,
                               "said": item.said, "error": item.error,
                               "recovery_seconds": item.recovery_seconds,
                               "status_ok_after": item.status_ok,
                               "alerts": len(item.alerts) if alerts_counted else None,
                               "recovery_messages": (len(item.recoveries) if alerts_counted
                                                     else None)})
        if (alerts_counted and item.fault.kind == "hang" and not item.skipped
                and (len(item.alerts), len(item.recoveries)) != (1, 1)):
            verdict.problems.append(
                f"{item.fault.label} at {item.started:.0f} s: {len(item.alerts)} alerts and "
                f"{len(item.recoveries)} recovery messages (1 and 1 expected)")
        if not item.skipped and item.recovered is None:
            verdict.problems.append(f"{item.fault.label} at {item.started:.0f} s: "
                                    "never recovered while the load ran")
        if item.status_ok is False:
            verdict.problems.append(f"{item.fault.label} at {item.started:.0f} s: `status` "
                                    "was still failing after the fault settled")
    if verdict.unaffected_availability < target:
        verdict.problems.append(f"availability of unaffected requests "
                                f"{verdict.unaffected_availability:.4%} < {target:.1%}")
    for store, ids in lost.items():
        if ids:
            verdict.problems.append(f"{len(ids)} acknowledged writes lost in {store}")
    return verdict
