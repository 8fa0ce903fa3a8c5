"""Section 4: what orchestration costs: import, per step, per run, and a year of data in one run.

- Import time of the code location, in a fresh `python -c "import ml_assets.definitions"` (what every
  launched run and every multiprocess step pays), next to `import dagster` alone and a bare
  interpreter; and which heavy libraries the import pulls in.
- Per-step and per-run overhead from trivial assets (`orchestration_location`): 1 step vs a 4-step
  chain, in-process vs the multiprocess executor (the default for runs launched by the daemon or UI),
  and the multiprocess executor with a forkserver that preloads the code location once per run.
- The year: `Platform.ingest` over every day of 2013 as one run (single-run backfill policies),
  against a temporary instance and lakehouse. Each step's time is split, from the run's own event
  log, into the asset body (STEP_START to its first output, materialization or check event: our
  compute, I/O and metadata building) and the rest (Dagster storing hundreds of materializations,
  checks and logs); the run's wall time minus all bodies is the share spent outside our code.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from benchmarks.measure import interleaved, run_python, summary
from ml_assets.spec import UseCaseSpec

HEAVY = ("torch", "whylogs", "polars", "duckdb", "pandas", "pyarrow", "matplotlib", "sklearn", "torchmetrics")
_BODY_END = {"STEP_OUTPUT", "ASSET_MATERIALIZATION", "ASSET_CHECK_EVALUATION", "STEP_SUCCESS", "STEP_FAILURE"}
_QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
_FORKSERVER = _QUIET | {"execution": {"config": {"start_method": {"forkserver": {
    "preload_modules": ["benchmarks.orchestration_location"]}}}}}


@dataclass(frozen=True)
class OrchestrationConfig:
    import_reps: int = 5
    step_reps: int = 3
    multiprocess: bool = True
    ingest_first: str = "2013-01-01"
    ingest_last: str = "2013-12-31"
    history_days_small: int = 10
    replay_days_per_tick: int = 7


def import_times(reps: int) -> dict[str, Any]:
    """Fresh-interpreter wall time (min / median over interleaved runs), as a deployed location pays it:
    bytecode written (a warm-up run writes it; `PYTHONDONTWRITEBYTECODE` is dropped for the children) and
    the SQL-check memo filled by that first load. `ml_assets.definitions (SQL bound)` turns the memo off:
    what the first load on a machine, and `make validate`, pay (DuckDB imported, every expression bound)."""
    import tempfile

    memo = tempfile.mkdtemp(prefix="bench-sql-memo-")
    env = {"PYTHONDONTWRITEBYTECODE": None, "ML_SQL_CHECK_MEMO": memo}
    bound = env | {"ML_SQL_CHECK_MEMO": "off"}
    cmds = {"ml_assets.definitions": ("import ml_assets.definitions", env),
            "ml_assets.definitions (SQL bound)": ("import ml_assets.definitions", bound),
            "dagster": ("import dagster", env), "python": ("pass", env)}
    times = interleaved({name: (lambda c=code, e=e: run_python(["-c", c], 120, e)) for name, (code, e) in cmds.items()},
                        reps, warmup=True)  # the warm-up writes bytecode and the memo, and fills the page cache
    probe = ("import sys, json, ml_assets.definitions; "
             f"print(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))")
    _, out = run_python(["-c", probe], 120, env)
    dagster_min = summary(times["dagster"])["min"]
    return {"seconds": {name: summary(ts) for name, ts in times.items()},
            "heavy_modules_loaded": out.strip().splitlines()[-1],
            "code_location_minus_dagster_s": summary(times["ml_assets.definitions"])["min"] - dagster_min,
            "code_location_sql_bound_minus_dagster_s":
                summary(times["ml_assets.definitions (SQL bound)"])["min"] - dagster_min}


def step_overhead(reps: int, multiprocess: bool) -> dict[str, Any]:
    """Run wall time of 1 vs 4 trivial steps; per-step = slope, per-run = the 1-step run."""
    import dagster as dg

    from benchmarks import orchestration_location as loc

    with dg.instance_for_test() as instance:
        fns: dict[str, Any] = {
            "in_process_1": lambda: loc.one_step().execute_in_process(instance=instance, run_config=_QUIET),
            "in_process_4": lambda: loc.chain().execute_in_process(instance=instance, run_config=_QUIET),
        }
        if multiprocess:
            fns |= {
                "multiprocess_1": lambda: dg.execute_job(dg.reconstructable(loc.one_step), instance=instance,
                                                         run_config=_QUIET),
                "multiprocess_4": lambda: dg.execute_job(dg.reconstructable(loc.chain), instance=instance,
                                                         run_config=_QUIET),
                "forkserver_1": lambda: dg.execute_job(dg.reconstructable(loc.one_step), instance=instance,
                                                       run_config=_FORKSERVER),
                "forkserver_4": lambda: dg.execute_job(dg.reconstructable(loc.chain), instance=instance,
                                                       run_config=_FORKSERVER),
            }
        times = interleaved(fns, reps, warmup=False)
    out: dict[str, Any] = {"runs": {name: summary(ts) for name, ts in times.items()}, "steps_in_chain": loc.STEPS}
    for mode in ("in_process", "multiprocess", "forkserver"):
        if f"{mode}_1" in times:
            one, four = summary(times[f"{mode}_1"]), summary(times[f"{mode}_4"])
            out[mode] = {"per_run_s": one["median"],
                         "per_step_s": (four["median"] - one["median"]) / (loc.STEPS - 1),
                         "per_step_s_from_min": (four["min"] - one["min"]) / (loc.STEPS - 1)}
    return out


def step_breakdown(instance: Any, run_id: str) -> dict[str, dict[str, float]]:
    """Per step: body seconds (our code) and after-body seconds (Dagster), from event timestamps."""
    steps: dict[str, dict[str, float]] = {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or record.step_key is None:
            continue
        kind = event.event_type_value
        s = steps.setdefault(record.step_key, {})
        if kind == "STEP_START":
            s["start"] = record.timestamp
        elif kind in _BODY_END and "start" in s and "body_end" not in s:
            s["body_end"] = record.timestamp
        if kind in ("STEP_SUCCESS", "STEP_FAILURE"):
            s["end"] = record.timestamp
    return {key: {"body_s": s["body_end"] - s["start"], "after_body_s": s["end"] - s["body_end"],
                  "step_s": s["end"] - s["start"]}
            for key, s in steps.items() if {"start", "body_end", "end"} <= s.keys()}


def run_events(instance: Any, run_id: str) -> dict[str, Any]:
    """Event counts by type, and the time before the first step starts (run creation, planned events)."""
    counts: dict[str, int] = {}
    first = first_step = None
    for record in instance.all_logs(run_id):
        kind = record.dagster_event.event_type_value if record.dagster_event else "LOG_MESSAGE"
        counts[kind] = counts.get(kind, 0) + 1
        first = record.timestamp if first is None else first
        if kind == "STEP_START" and first_step is None:
            first_step = record.timestamp
    return {"counts": counts, "before_first_step_s": (first_step - first) if first and first_step else None}


@contextlib.contextmanager
def ingested(spec: UseCaseSpec, first: str, last: str, root: str) -> Iterator[tuple[Any, dict[str, Any]]]:
    """A temporary instance + lakehouse with `first..last` ingested in one run; yields (platform, timings)."""
    import dagster as dg

    from ml_assets.definitions import build_definitions
    from ml_assets.ops.runner import Platform
    from resources import build_resources
    from resources.sources import RawSourceResource

    # The tables' declared sources, whatever ML_LANDING_URI says (the Makefile points it at ./.landing).
    resources = build_resources(lakehouse_root=root) | {"raw_source": RawSourceResource(landing_root=None)}
    with dg.instance_for_test() as instance:
        platform = Platform(build_definitions(resources), instance, log_level="ERROR")
        start = time.perf_counter()
        result = platform.ingest(spec, first, last)
        wall = time.perf_counter() - start
        steps = step_breakdown(instance, result.run_id)
        body = sum(s["body_s"] for s in steps.values())
        events = run_events(instance, result.run_id)
        yield platform, {
            "first": first, "last": last, "success": result.success, "wall_s": wall,
            "materializations": events["counts"].get("ASSET_MATERIALIZATION", 0), "events": events,
            "steps": steps, "body_s": body, "after_body_s": sum(s["after_body_s"] for s in steps.values()),
            "outside_our_code_s": wall - body, "outside_our_code_share": (wall - body) / wall,
        }


def code_location_executor() -> str:
    """The executor runs launched from the code location use (the per-step verdict applies to it)."""
    from ml_assets.definitions import defs

    executor = defs.executor
    return getattr(executor, "name", None) or "multi_or_in_process (Dagster default: multiprocess)"


def run_static(config: OrchestrationConfig, log=print) -> dict[str, Any]:
    """Import and per-step figures (no data needed)."""
    imports = import_times(config.import_reps)
    sec = imports["seconds"]
    log(f"  import: code location {sec['ml_assets.definitions']['min']:.2f} s, dagster alone "
        f"{sec['dagster']['min']:.2f} s: {imports['code_location_minus_dagster_s']:.2f} s above dagster "
        f"(SQL bound in DuckDB: {imports['code_location_sql_bound_minus_dagster_s']:.2f} s); heavy modules at "
        f"import: {imports['heavy_modules_loaded']}")
    steps = step_overhead(config.step_reps, config.multiprocess)
    parts = [f"{m} {steps[m]['per_step_s']:.2f} s/step, {steps[m]['per_run_s']:.2f} s/run"
             for m in ("in_process", "multiprocess", "forkserver") if m in steps]
    executor = code_location_executor()
    log("  steps: " + "; ".join(parts) + f" (the code location's executor: {executor})")
    return {"imports": imports, "steps": steps, "code_location_executor": executor}


def lakehouse_root(workdir: str, name: str) -> str:
    path = os.path.join(workdir, name)
    os.makedirs(path, exist_ok=True)
    return path


def backfill_policies(defs: Any) -> dict[str, Any]:
    """Which partitioned assets run a multi-partition backfill as one run (single-run policy)."""
    partitioned, single, other = 0, 0, []
    for assets_def in defs.resolve_asset_graph().assets_defs:
        if assets_def.partitions_def is None or not assets_def.is_executable:
            continue
        partitioned += 1
        policy = assets_def.backfill_policy
        if policy is not None and policy.max_partitions_per_run is None:
            single += 1
        else:
            other.append(f"{assets_def.node_def.name}: {policy}")
    return {"partitioned": partitioned, "single_run": single, "other": other}


def replay(spec: UseCaseSpec, workdir: str, first: str, last: str, days_per_tick: int) -> dict[str, Any]:
    """The platform's day-by-day replay through the real sensors (`ml_assets.ops.replay.run_replay`).

    Wall time splits into: time inside the runs the sensors requested (asset bodies vs Dagster,
    from each run's event log) and time outside any run (landing the day's files, sensor ticks,
    the closing AUROC report).
    """
    from datetime import date
    from pathlib import Path

    import dagster as dg

    from ml_assets.definitions import build_definitions
    from ml_assets.ops.replay import run_replay
    from ml_assets.ops.runner import Platform
    from resources import build_resources

    landing_root = Path(workdir) / "landing"  # one landing folder per use case under it
    with dg.instance_for_test() as instance:
        defs = build_definitions(build_resources(lakehouse_root=lakehouse_root(workdir, "lake-replay"),
                                                 landing_root=str(landing_root)))
        platform = Platform(defs, instance, log_level="ERROR")
        start = time.perf_counter()
        result = run_replay(platform, spec, landing_root / spec.name, date.fromisoformat(first),
                            date.fromisoformat(last), partitions_per_tick=days_per_tick)
        wall = time.perf_counter() - start
        runs = instance.get_runs()
        per_job: dict[str, dict[str, float]] = {}
        for run in runs:
            steps = step_breakdown(instance, run.run_id)
            job = per_job.setdefault(run.job_name, {"runs": 0, "body_s": 0.0, "step_s": 0.0})
            job["runs"] += 1
            job["body_s"] += sum(s["body_s"] for s in steps.values())
            job["step_s"] += sum(s["step_s"] for s in steps.values())
    body = sum(j["body_s"] for j in per_job.values())
    return {"first": first, "last": last, "days_per_tick": days_per_tick, "wall_s": wall, "runs": len(runs),
            "seconds_in_runs": result["seconds_in_runs"], "body_s": body,
            "dagster_in_runs_s": result["seconds_in_runs"] - body,
            "outside_runs_s": wall - result["seconds_in_runs"],
            "outside_our_code_share": (result["seconds_in_runs"] - body) / wall, "per_job": per_job,
            "retrains": len(result["timeline"]), "versions": len(result["versions"])}
