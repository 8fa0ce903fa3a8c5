"""Section 1: feature pipeline rows/s and peak memory at several multiples of the 2013 volume.

Compared in the same run, interleaved, each measurement in a fresh process (`feature_worker`):
ours (the platform's `iter_features` with its label-history input, as the features asset runs it),
the idiomatic pandas peer, and the floor (read the used columns, write the output once). Outputs
are checked to agree on a sample of events, so the comparison is honest.

A config that is slow at a large scale gets fewer repetitions (a per-config time budget), never a
shortcut: `n` in the results says how many runs each figure rests on.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from benchmarks.measure import rate_summary, run_worker, summary
from benchmarks.scaled_data import ScaledInputs, build_scales, cached_scales
from ml_assets.features.compute import EVENT_ID
from ml_assets.spec import UseCaseSpec

IMPLS = ("ours", "pandas", "floor")  # floor last: it writes the output `ours` produced


@dataclass(frozen=True)
class FeatureConfig:
    scales: tuple[float, ...] = (1, 10, 30)
    reps: dict[float, int] = field(default_factory=lambda: {1: 5, 10: 3, 30: 3})
    # Stop repeating a (scale, impl) once its runs have used this many seconds (always >= 1 run).
    budget_seconds: float = 100.0
    timeout_seconds: float = 900.0
    # Implementations left out at a scale (to fit the run's time budget); reported as not measured.
    skip: dict[float, tuple[str, ...]] = field(default_factory=dict)
    sample_rows: int = 3000


def _compare(paths: dict[str, str], sample_rows: int) -> dict[str, Any]:
    """Rows of every output for a sample of event ids must match ours (1e-9 relative on numbers)."""
    import polars as pl

    ref_path = readable(paths["ours"])
    total = pl.scan_parquet(ref_path).select(pl.len()).collect().item()
    step = max(1, total // sample_rows)
    ids = pl.scan_parquet(ref_path).select(EVENT_ID).gather_every(step).collect().get_column(EVENT_ID)
    ref = pl.scan_parquet(ref_path).filter(pl.col(EVENT_ID).is_in(ids.to_list())).collect().sort(EVENT_ID)
    report: dict[str, Any] = {"sampled_rows": ref.height, "total_rows": total}
    for impl in ("pandas",):
        if impl not in paths:
            continue
        other_total = pl.scan_parquet(paths[impl]).select(pl.len()).collect().item()
        other = pl.scan_parquet(paths[impl]).filter(pl.col(EVENT_ID).is_in(ids.to_list())).collect().sort(EVENT_ID)
        problems = [f"{other_total} rows vs {total}"] if other_total != total else []
        if other.columns != ref.columns:
            problems.append(f"columns {other.columns} != {ref.columns}")
        elif other.height != ref.height:
            problems.append(f"{other.height} sampled rows vs {ref.height}")
        else:
            for col in ref.columns:
                a, b = ref.get_column(col), other.get_column(col)
                if a.dtype.is_numeric():
                    a, b = a.cast(pl.Float64), b.cast(pl.Float64)
                    bad = ((a - b).abs() > 1e-9 * (1 + a.abs())).fill_null(False) | (a.is_null() != b.is_null())
                else:
                    bad = a.cast(pl.String).ne_missing(b.cast(pl.String))
                if bad.any():
                    problems.append(f"{col}: {int(bad.sum())} of {ref.height} sampled rows differ")
        report[impl] = {"agrees": not problems, "problems": problems}
    return report


def _result(inputs: ScaledInputs, runs: list[dict[str, Any]]) -> dict[str, Any]:
    rows = inputs.rows
    seconds = [r["seconds"] for r in runs]
    mem = [(r["rss_peak_bytes"] - r["rss_base_bytes"]) for r in runs]
    stages: dict[str, list[float]] = {}
    for r in runs:
        for name, s in r["stages"].items():
            stages.setdefault(name, []).append(s)
    return {
        "seconds": summary(seconds),
        "rows_per_s": rate_summary(rows, seconds),
        "peak_mem_bytes": summary(mem),
        "peak_mem_bytes_per_row": (min(mem) / rows) if mem else None,
        "stages_seconds": {k: summary(v) for k, v in stages.items()},
    }


def output_path(workdir: str, scale: float, impl: str) -> str:
    """A Parquet file, or for `ours` a folder of chunk files (see `readable`)."""
    return os.path.join(workdir, f"x{scale:g}", "out", impl if impl == "ours" else f"{impl}.parquet")


def readable(path: str) -> str:
    """What Polars reads for an output: the file, or every chunk file of a folder."""
    return os.path.join(path, "*.parquet") if not path.endswith(".parquet") else path


def run(spec: UseCaseSpec, workdir: str, config: FeatureConfig, cache_root: str | None = None,
        log=print) -> dict[str, Any]:
    """Inputs are built under `cache_root` (reused across runs) if given, else under `workdir`."""
    t0 = time.perf_counter()
    scales = list(config.scales)
    data = cached_scales(spec, scales, cache_root) if cache_root else build_scales(spec, scales, workdir)
    log(f"  features: inputs for scales {scales} ready in {time.perf_counter() - t0:.1f} s")
    results: dict[str, Any] = {"scales": {}, "data_seconds": time.perf_counter() - t0}
    for scale in config.scales:
        inputs = data[scale]
        folder = os.path.join(workdir, f"x{scale:g}")
        os.makedirs(folder, exist_ok=True)
        inputs_json = os.path.join(folder, "inputs.json")
        with open(inputs_json, "w") as handle:
            json.dump(inputs.relations(), handle)
        impls = [i for i in IMPLS if i not in config.skip.get(scale, ())]
        outs = {impl: output_path(workdir, scale, impl) for impl in impls}
        os.makedirs(os.path.join(folder, "out"), exist_ok=True)
        runs: dict[str, list[dict[str, Any]]] = {impl: [] for impl in impls}
        spent = dict.fromkeys(impls, 0.0)
        for _ in range(config.reps.get(scale, 1)):
            for impl in impls:
                if runs[impl] and spent[impl] + spent[impl] / len(runs[impl]) > config.budget_seconds:
                    continue  # another run would exceed this config's budget
                args = [impl, inputs_json, outs[impl]] + ([outs["ours"]] if impl == "floor" else [])
                start = time.perf_counter()
                runs[impl].append(run_worker("benchmarks.feature_worker", args, config.timeout_seconds))
                spent[impl] += time.perf_counter() - start
        per_impl = {impl: _result(inputs, rs) for impl, rs in runs.items()}
        agreement = _compare({i: outs[i] for i in ("ours", "pandas") if i in outs}, config.sample_rows)
        results["scales"][f"{scale:g}"] = {"inputs": inputs.to_dict(), "impls": per_impl, "agreement": agreement}
        line = ", ".join(f"{i} {per_impl[i]['rows_per_s']['best'] / 1e6:.2f}M rows/s "
                         f"{per_impl[i]['peak_mem_bytes_per_row']:.0f} B/row (n={per_impl[i]['seconds']['n']})"
                         for i in impls)
        log(f"  features x{scale:g} ({inputs.rows} rows): {line}")
        for impl in ("pandas",):
            if impl in agreement and not agreement[impl]["agrees"]:
                raise AssertionError(f"x{scale:g}: {impl} output disagrees with ours: {agreement[impl]['problems']}")
    results["seconds"] = time.perf_counter() - t0
    return results
