"""Timing, memory and subprocess helpers shared by every benchmark section.

Why these rules: the machine has 2 cores and another engineer runs tests on it, so absolute timings
drift by tens of percent between runs. Every comparison is therefore made inside one run, with the
variants interleaved (A, B, A, B, ...) so a burst of outside load hits both, and reported as the
minimum (the least disturbed run) and the median of several repetitions. Peak memory of native
libraries (DuckDB, Polars, Arrow) is invisible to `tracemalloc`, so it is measured as the rise of the
process's peak RSS above its RSS after imports, in a fresh subprocess per measurement.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def summary(values: Sequence[float]) -> dict[str, Any]:
    """min / median / n of repeated measurements (None when nothing ran)."""
    vals = [float(v) for v in values]
    if not vals:
        return {"min": None, "median": None, "n": 0, "values": []}
    return {"min": min(vals), "median": statistics.median(vals), "n": len(vals), "values": vals}


def rate_summary(count: float, seconds: Sequence[float]) -> dict[str, Any]:
    """Throughput (count / s) from repeated timings: best = count / min time, median = count / median time."""
    s = summary(seconds)
    if not s["n"]:
        return {"best": None, "median": None, "n": 0}
    return {"best": count / s["min"], "median": count / s["median"], "n": s["n"]}


def interleaved(fns: dict[str, Callable[[], Any]], reps: int, warmup: bool = True) -> dict[str, list[float]]:
    """Wall seconds of each callable over `reps` rounds, variants alternating within each round."""
    if warmup:
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """Peak resident set size of this process's memory map so far (VmHWM).

    Not `getrusage().ru_maxrss`: Linux carries that figure across fork + exec, so a worker started by
    a parent holding gigabytes reports the parent's peak as its own.
    """
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM not found in /proc/self/status")


def python_env() -> dict[str, str]:
    """Environment for child Pythons: repo importable, whylogs telemetry off, one BLAS thread pool."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH", "")) if p)
    env.setdefault("WHYLOGS_NO_ANALYTICS", "True")
    return env


def run_python(args: list[str], timeout: float, env: dict[str, str | None] | None = None) -> tuple[float, str]:
    """Run `python <args>` in the repo (`env`: overrides, None removes a variable); return (wall seconds,
    stdout). Raises with stderr on failure."""
    child = python_env()
    for name, value in (env or {}).items():
        if value is None:
            child.pop(name, None)
        else:
            child[name] = value
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=child, capture_output=True,
                          text=True, timeout=timeout, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"python {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, proc.stdout


def run_worker(module: str, args: list[str], timeout: float) -> dict[str, Any]:
    """Run `python -m <module> <args>`; the worker prints one JSON object on its last stdout line."""
    _, out = run_python(["-m", module, *args], timeout)
    return json.loads(out.strip().splitlines()[-1])


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import platform

    with open("/proc/meminfo") as handle:
        mem_kib = int(handle.readline().split()[1])
    return {"cpus": os.cpu_count(), "memory_gib": round(mem_kib / 2**20, 1), "python": platform.python_version(),
            "platform": platform.platform(), "load_avg_at_start": list(os.getloadavg())}
