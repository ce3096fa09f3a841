"""The soak as a picture: success rate and latency over time, each fault marked (PNG)."""

from __future__ import annotations

from pathlib import Path

from .load import Outcome
from .verdict import Injected

BUCKET_SECONDS = 10


def draw(path: Path, outcomes: list[Outcome], injected: list[Injected]) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: a file only
    import matplotlib.pyplot as plt

    buckets: dict[int, list[Outcome]] = {}
    for outcome in outcomes:
        buckets.setdefault(int(outcome.started // BUCKET_SECONDS), []).append(outcome)
    times = [b * BUCKET_SECONDS / 60 for b in sorted(buckets)]
    success = [100 * sum(o.ok for o in buckets[b]) / len(buckets[b]) for b in sorted(buckets)]
    latency = [1000 * max((o.latency for o in buckets[b] if o.ok), default=0)
               for b in sorted(buckets)]
    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(11, 6))
    top.plot(times, success, drawstyle="steps-post", color="tab:green")
    top.set_ylabel(f"successful requests (%, per {BUCKET_SECONDS} s)")
    top.set_ylim(0, 105)
    bottom.plot(times, latency, drawstyle="steps-post", color="tab:blue")
    bottom.set_ylabel("slowest success (ms)")
    bottom.set_yscale("log")
    bottom.set_xlabel("minutes")
    for item in injected:
        for axis in (top, bottom):
            axis.axvline(item.started / 60, color="tab:red", alpha=0.4, linewidth=1)
        top.annotate(item.fault.label, (item.started / 60, 2), rotation=90, fontsize=7,
                     color="tab:red", va="bottom")
    figure.suptitle("orchestra-infra chaos: requests through the edge, faults in red")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
