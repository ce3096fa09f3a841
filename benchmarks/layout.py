"""Multi-host benchmark: one host against a layout of N hosts (edge,app; N-2 x app; data)
over the WireGuard mesh, first run and no-op run, in one invocation.

Never more than N sandbox hosts at a time: the single host is measured and removed, then the
layout. Host names start with ORCHESTRA_BENCH_PREFIX (default "bench").
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import time
from dataclasses import dataclass

from orchestra_infra import sandbox, secrets
from orchestra_infra.pyinfra_run import run_pyinfra

NOOP_RUNS = 3
NOOP_TARGET_RATIO = 1.5  # issue 12: several hosts' no-op run within 1.5x one host's


@dataclass
class LayoutFigures:
    one_first: float
    one_noop: float
    layout_first: float
    layout_noop: float
    hosts: int
    # CPU seconds of the pyinfra process itself (user + system), median of the no-op runs:
    # the control machine's share. Here the sandbox hosts share its cores too; real
    # instances run their commands on their own.
    one_noop_cpu: float = 0.0
    layout_noop_cpu: float = 0.0

    def report(self) -> str:
        return "\n".join([
            f"first run, one host:                {self.one_first:7.1f} s",
            f"first run, {self.hosts}-host layout:          {self.layout_first:7.1f} s  "
            f"({self.layout_first / self.one_first:.2f}x)",
            f"no-op run, one host (median of {NOOP_RUNS}):  {self.one_noop:7.1f} s",
            f"no-op run, {self.hosts} hosts (median of {NOOP_RUNS}):   {self.layout_noop:7.1f} s  "
            f"({self.layout_noop / self.one_noop:.2f}x; target <= {NOOP_TARGET_RATIO}x)",
            f"no-op run, control machine's CPU:   {self.one_noop_cpu:7.1f} s one host, "
            f"{self.layout_noop_cpu:.1f} s {self.hosts} hosts "
            f"({self.layout_noop_cpu / max(self.one_noop_cpu, 0.01):.2f}x)",
        ])


def _names(count: int) -> tuple[str, list[str]]:
    prefix = os.environ.get("ORCHESTRA_BENCH_PREFIX", "bench")
    apps = [f"{prefix}-app{i}" for i in range(1, count - 1)]
    return f"{prefix}-one", [f"{prefix}-edge", *apps, f"{prefix}-data"]


def _deploy(names: list[str], layout: str = "") -> tuple[float, float]:
    """(wall seconds, CPU seconds of the pyinfra process) of one run."""
    extra = {"ORCHESTRA_SANDBOX_HOSTS": ",".join(names), "ORCHESTRA_SANDBOX_LAYOUT": layout}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    result = run_pyinfra("sandbox", "deploy.py", extra_env=extra, capture_output=True,
                         text=True, stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"deploy failed on {', '.join(names)}:\n{result.stderr[-4000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def _measure(names: list[str], layout: str, keep: bool) -> tuple[float, float, float]:
    from operations.base import wait_for_apt_script

    sandbox.up(names=names)
    try:
        # A fresh Ubuntu host's first-boot apt run: waited for before the clock starts.
        for name in names:
            sandbox.run(name, wait_for_apt_script(300), timeout=600)
        first, _ = _deploy(names, layout)
        runs = [_deploy(names, layout) for _ in range(NOOP_RUNS)]
        return (first, statistics.median(wall for wall, _ in runs),
                statistics.median(cpu for _, cpu in runs))
    finally:
        if not keep:
            sandbox.down(names)


def run(keep: bool = False, count: int = 4) -> LayoutFigures:
    if count < 3:
        raise RuntimeError("a layout has at least 3 hosts (edge,app; app; data)")
    secrets.init("sandbox")
    one, names = _names(count)
    one_first, one_noop, one_cpu = _measure([one], "", keep)
    layout = ";".join([f"{names[0]} edge,app", *(f"{n} app" for n in names[1:-1]),
                       f"{names[-1]} data"])
    layout_first, layout_noop, layout_cpu = _measure(names, layout, keep)
    return LayoutFigures(one_first, one_noop, layout_first, layout_noop, len(names),
                         one_cpu, layout_cpu)
