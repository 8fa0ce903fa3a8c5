"""`make bench`: every stage's throughput and scaling, against peers and the hardware floor.

    python -m benchmarks.run                 # `make bench` (~10 min on 2 cores): writes benchmarks/results/
    python -m benchmarks.run --mode tiny     # seconds: the smoke test's harness check
    python -m benchmarks.run --sections features,training --out /tmp/bench

Writes `<out>/bench-<UTC time>.json` and `.md`, and `latest.json` / `latest.md` beside them. The
scaled inputs (30x = 10.1M flights) are cached under `<out>/data/<key>` and rebuilt when the source
data, the label definition or the generator changes (`--no-cache` rebuilds them in a temp dir).
Sections run one after another (never in parallel: 2 cores), each comparing its variants
interleaved within this one run; see `benchmarks/measure.py` for why.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from benchmarks import (
    bench_features,
    bench_integrity,
    bench_orchestration,
    bench_profiling,
    bench_sensors,
    bench_training,
    report,
)
from benchmarks.measure import REPO_ROOT, machine

SECTIONS = ("features", "integrity", "profiling", "training", "serving", "orchestration", "sensors")
# Not in the default run: the full-year replay through the sensors takes longer than the whole budget.
OPTIONAL = ("replay",)


@dataclass(frozen=True)
class Plan:
    features: bench_features.FeatureConfig
    profiling: bench_profiling.ProfilingConfig
    training: bench_training.TrainingConfig
    orchestration: bench_orchestration.OrchestrationConfig
    sensors: bench_sensors.SensorConfig = field(default_factory=bench_sensors.SensorConfig)


_FULL = Plan(
    features=bench_features.FeatureConfig(scales=(1, 10, 30), reps={1: 3, 10: 2, 30: 1}, budget_seconds=30),
    profiling=bench_profiling.ProfilingConfig(days=40, one_call_rows=30_000, reps=3),
    training=bench_training.TrainingConfig(epochs=3, reps=2, dataloader_rows=40_000),
    orchestration=bench_orchestration.OrchestrationConfig(import_reps=3, step_reps=2),
)
PLANS = {
    # `make bench`, ~8 min on 2 cores. The pandas peer at 30x (~1.5 min) and the year ingest
    # (~2 min) take the most, so 30x configs run once.
    "full": _FULL,
    # The smoke test: every code path, tiny inputs, one repetition, no multiprocess runs.
    "tiny": Plan(
        features=bench_features.FeatureConfig(scales=(0.02,), reps={0.02: 1}, sample_rows=200),
        profiling=bench_profiling.ProfilingConfig(days=2, one_call_rows=1000, reps=1),
        training=bench_training.TrainingConfig(epochs=1, reps=1, dataloader_rows=2000, score_copies=1),
        orchestration=bench_orchestration.OrchestrationConfig(import_reps=1, step_reps=1, multiprocess=False,
                                                              ingest_last="2013-01-02", history_days_small=1),
        sensors=bench_sensors.SensorConfig(reps=2),
    ),
}


def _commit() -> str:
    proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                          check=False)
    return proc.stdout.strip() or "unknown"


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("dagster", "polars", "duckdb", "pandas", "pyarrow", "torch", "whylogs", "numpy")}


def _log(message: str) -> None:
    print(message, flush=True)


def _guarded(results: dict[str, Any], name: str, fn: Any) -> Any:
    """Run one section; a failure is recorded (and fails the run at the end) instead of losing the others."""
    try:
        return fn()
    except Exception:
        import traceback

        results.setdefault("errors", {})[name] = traceback.format_exc()
        _log(f"  {name} FAILED:\n{traceback.format_exc()}")
        return None


class _Clock:
    """Wall seconds per section, kept in the results' metadata (to watch the 10-minute budget)."""

    def __init__(self, into: dict[str, float]) -> None:
        self.into = into

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.into[name] = round(self.into.get(name, 0.0) + time.perf_counter() - start, 1)


def _feature_inputs(spec: Any, scale: float, workdir: str) -> tuple[str, str]:
    """Features + labels Parquet for the later sections when the features section is skipped."""
    import polars as pl

    from benchmarks.scaled_data import build_scales
    from ml_assets.features.compute import compute_features

    inputs = next(iter(build_scales(spec, [scale], workdir).values()))
    frames = {k: pl.read_parquet(v) for k, v in inputs.relations().items()}
    path = os.path.join(workdir, "features.parquet")
    compute_features(spec, frames["events"], {"weather": frames["weather"], "planes": frames["planes"]},
                     frames["labels"]).write_parquet(path)
    return path, inputs.labels


def _orchestration_and_sensors(spec: Any, plan: Plan, sections: tuple[str, ...], workdir: str,
                               results: dict[str, Any], clock: _Clock) -> None:
    """Import / per-step figures, then the year ingest, whose instance the sensor section reuses."""
    from datetime import date, timedelta

    cfg = plan.orchestration
    orch: dict[str, Any] = {}
    if "orchestration" in sections:
        results["orchestration"] = orch  # filled in as the parts complete
        _log("[orchestration] imports and per-step overhead")
        with clock.section("orchestration"):
            orch |= bench_orchestration.run_static(cfg, log=_log)
    _log(f"[orchestration] ingest {cfg.ingest_first}..{cfg.ingest_last} in one run")
    year_root = bench_orchestration.lakehouse_root(workdir, "lake-year")
    with clock.section("ingest_and_sensors"), \
            bench_orchestration.ingested(spec, cfg.ingest_first, cfg.ingest_last, year_root) as (year, ingest):
        _log(f"  ingest: {ingest['wall_s']:.1f} s wall, {ingest['body_s']:.1f} s in asset bodies, "
             f"{ingest['outside_our_code_share']:.0%} outside our code ({ingest['materializations']} materializations)")
        orch["ingest"] = ingest
        orch["backfill_policies"] = bench_orchestration.backfill_policies(year.defs)
        if "sensors" in sections:
            _log(f"[sensors] {cfg.history_days_small} vs {_days(cfg)} days of history")
            small_last = (date.fromisoformat(cfg.ingest_first) + timedelta(days=cfg.history_days_small - 1)).isoformat()
            small_root = bench_orchestration.lakehouse_root(workdir, "lake-small")
            with clock.section("sensors"), \
                    bench_orchestration.ingested(spec, cfg.ingest_first, small_last, small_root) as (small, _):
                days = {"small": spec.partition_range(cfg.ingest_first, small_last),
                        "large": spec.partition_range(cfg.ingest_first, cfg.ingest_last)}
                results["sensors"] = bench_sensors.run(spec, small, year, days, workdir, plan.sensors, log=_log)


def run(mode: str, sections: tuple[str, ...], out_dir: str, cache_root: str | None) -> dict[str, Any]:
    from ml_assets.spec.catalog import use_case

    spec = use_case("flight_delay")
    plan = PLANS[mode]
    t0 = time.perf_counter()
    results: dict[str, Any] = {"meta": {"mode": mode, "sections": list(sections), "commit": _commit(),
                                        "started": datetime.now(UTC).isoformat(timespec="seconds"),
                                        "machine": machine(), "versions": _versions()}}
    workdir = tempfile.mkdtemp(prefix="bench-")
    clock = _Clock(results["meta"].setdefault("section_seconds", {}))
    try:
        _sections(spec, plan, sections, workdir, cache_root, results, clock)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["meta"]["wall_s"] = time.perf_counter() - t0
    results["targets"] = _guarded(results, "report", lambda: report.targets(results)) or []
    _write(results, out_dir)
    return results


def _sections(spec: Any, plan: Plan, sections: tuple[str, ...], workdir: str, cache_root: str | None,
              results: dict[str, Any], clock: _Clock) -> None:
    base_scale = 1 if 1 in plan.features.scales else min(plan.features.scales)
    key = f"{base_scale:g}"
    if "features" in sections:
        _log(f"[features] scales {list(plan.features.scales)}")
        with clock.section("features"):
            _guarded(results, "features", lambda: results.__setitem__(
                "features", bench_features.run(spec, workdir, plan.features, cache_root=cache_root, log=_log)))
    paths: tuple[str, str] | None = None
    if "features" in results and key in results["features"]["scales"]:
        paths = (bench_features.readable(bench_features.output_path(workdir, base_scale, "ours")),
                 results["features"]["scales"][key]["inputs"]["labels"])
    elif {"integrity", "profiling", "training"} & set(sections):
        with clock.section("inputs"):
            paths = _guarded(results, "inputs", lambda: _feature_inputs(spec, base_scale, workdir))
    if "integrity" in sections and paths:
        _log("[integrity]")
        with clock.section("integrity"):
            _guarded(results, "integrity", lambda: results.__setitem__(
                "integrity", bench_integrity.run(paths[0], log=_log)))
    if "profiling" in sections and paths:
        _log("[profiling]")
        feature_rate = None
        if "features" in results:
            feature_rate = results["features"]["scales"][key]["impls"]["ours"]["rows_per_s"]["best"]
        with clock.section("profiling"):
            _guarded(results, "profiling", lambda: results.__setitem__(
                "profiling", bench_profiling.run(spec, paths[0], plan.profiling, feature_rate, log=_log)))
    if "training" in sections and paths:
        _log("[training]")
        with clock.section("training"):
            _guarded(results, "training", lambda: results.__setitem__(
                "training", bench_training.run(spec, paths[0], paths[1], plan.training, log=_log)))
    if "serving" in sections:  # online scoring on loopback (benchmarks/bench_serving.py prints its verdicts)
        from benchmarks import bench_serving

        _log("[serving] mlp serve, one worker: single at 200 req/s, batched, floor, CPU per 1000 predictions")
        with clock.section("serving"):
            _guarded(results, "serving", lambda: results.__setitem__("serving", bench_serving.run(
                None if plan is _FULL else bench_serving.ServingConfig(seconds=2, warmup_seconds=0.5), log=_log)))
    if {"orchestration", "sensors"} & set(sections):
        _guarded(results, "orchestration", lambda: _orchestration_and_sensors(spec, plan, sections, workdir,
                                                                             results, clock))
    if "replay" in sections:
        cfg = plan.orchestration
        _log(f"[replay] {cfg.ingest_first}..{cfg.ingest_last}, sensors every {cfg.replay_days_per_tick} day(s)")
        with clock.section("replay"):
            _guarded(results, "replay", lambda: results.__setitem__("replay", bench_orchestration.replay(
                spec, workdir, cfg.ingest_first, cfg.ingest_last, cfg.replay_days_per_tick)))


def _days(cfg: bench_orchestration.OrchestrationConfig) -> int:
    from datetime import date

    return (date.fromisoformat(cfg.ingest_last) - date.fromisoformat(cfg.ingest_first)).days + 1


def _write(results: dict[str, Any], out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    stamp = results["meta"]["started"].replace(":", "").replace("-", "")
    text = report.markdown(results)
    for name in (f"bench-{stamp}", "latest"):
        with open(os.path.join(out_dir, f"{name}.json"), "w") as handle:
            json.dump(results, handle, indent=1, default=str)
        with open(os.path.join(out_dir, f"{name}.md"), "w") as handle:
            handle.write(text)
    _log(f"\n{text}\nwritten to {out_dir}/latest.json and latest.md")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=sorted(PLANS), default="full")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {SECTIONS + OPTIONAL}")
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "benchmarks", "results"))
    parser.add_argument("--no-cache", action="store_true", help="rebuild the scaled inputs in a temp dir")
    args = parser.parse_args(argv)
    sections = tuple(s for s in args.sections.split(",") if s)
    unknown = set(sections) - set(SECTIONS) - set(OPTIONAL)
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}")
    os.environ.setdefault("WHYLOGS_NO_ANALYTICS", "True")
    results = run(args.mode, sections, args.out, None if args.no_cache else os.path.join(args.out, "data"))
    if results.get("errors"):
        _log(f"FAILED sections: {sorted(results['errors'])}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
