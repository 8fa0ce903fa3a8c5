"""Section 2: profiling rows/s, whylogs as the platform calls it vs a Polars summary (the floor).

"As the platform calls it" is the `feature_profiles` asset's loop: one `profile_frame` per daily
partition, then `serialize` and `summary_rows` for its metadata. The floor computes the same
statistics per day with one Polars group-by (counts, nulls, NaN, mean, std, min, max, five
quantiles, distinct count, top-10 values of each categorical). The naive peer is whylogs' documented
path, `why.log(pandas=...)`, which must produce the same profile as `profile_frame` before any
number counts. A one-call variant (a single profile of many rows) separates whylogs' per-row cost
from its per-profile cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmarks.measure import interleaved, rate_summary
from ml_assets.features.compute import PARTITION
from ml_assets.spec import UseCaseSpec

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass(frozen=True)
class ProfilingConfig:
    days: int = 60  # daily partitions profiled per repetition (the per-day loop costs ~0.1 s/day)
    one_call_rows: int = 30_000
    reps: int = 3


def polars_summary(frame: Any, numeric: list[str], categorical: list[str], by: str | None) -> Any:
    """The floor: the statistics a profile holds, per `by` group (or for the whole frame)."""
    import polars as pl

    aggs = []
    for c in numeric:
        x = pl.col(c).cast(pl.Float64)
        aggs += [x.len().alias(f"{c}/n"), x.null_count().alias(f"{c}/null"), x.is_nan().sum().alias(f"{c}/nan"),
                 x.mean().alias(f"{c}/mean"), x.std().alias(f"{c}/std"), x.min().alias(f"{c}/min"),
                 x.max().alias(f"{c}/max"), x.n_unique().alias(f"{c}/distinct")]
        aggs += [x.quantile(q).alias(f"{c}/q{q}") for q in QUANTILES]
    for c in categorical:
        aggs += [pl.col(c).len().alias(f"{c}/n"), pl.col(c).null_count().alias(f"{c}/null"),
                 pl.col(c).n_unique().alias(f"{c}/distinct")]
    keys = [by] if by else []
    stats = frame.group_by(keys).agg(aggs) if keys else frame.select(aggs)
    tops = [frame.group_by([*keys, c]).len().sort("len", descending=True).group_by(keys).head(10) if keys
            else frame.group_by(c).len().sort("len", descending=True).head(10) for c in categorical]
    return stats, tops


def naive_why_log(frame: Any, numeric: list[str], categorical: list[str]) -> Any:
    """whylogs' documented path: a pandas frame (numbers as float64, strings as objects) to `why.log`."""
    import pandas as pd
    import polars as pl

    from ml_assets.profiles import whylogs_profile as wp

    why = wp._import_whylogs()
    data = {c: frame.get_column(c).cast(pl.Float64).to_numpy() for c in numeric}
    data |= {c: frame.get_column(c).cast(pl.String).to_numpy().astype(object) for c in categorical}
    return why.log(pandas=pd.DataFrame(data), schema=wp._schema(numeric, categorical)).view()


def _same_profile(a: Any, b: Any) -> bool:
    return a.to_pandas().astype(str).equals(b.to_pandas().astype(str))


def run(spec: UseCaseSpec, features_path: str, config: ProfilingConfig, feature_rows_per_s: float | None,
        log=print) -> dict[str, Any]:
    import polars as pl

    from ml_assets.profiles import whylogs_profile as wp

    numeric, categorical = list(spec.features.numeric), list(spec.features.categorical)
    frame = pl.read_parquet(features_path)
    days = frame.get_column(PARTITION).unique().sort().to_list()[: config.days]
    window = frame.filter(pl.col(PARTITION).is_in(days))
    parts = [window.filter(pl.col(PARTITION) == d) for d in days]  # as the asset slices its range
    sample = frame.head(config.one_call_rows)

    checked = parts[:: max(1, len(parts) // 5)]
    agrees = all(_same_profile(wp.profile_frame(p, numeric, categorical),
                               naive_why_log(p, numeric, categorical)) for p in checked)
    if not agrees:
        raise AssertionError("profile_frame does not reproduce why.log's profile")

    def per_day(profile) -> None:
        for part in parts:
            view = profile(part, numeric, categorical)
            wp.serialize(view)
            wp.summary_rows(view)

    fns = {
        "platform_per_day": lambda: per_day(wp.profile_frame),
        "naive_per_day": lambda: per_day(naive_why_log),
        "floor_per_day": lambda: polars_summary(window, numeric, categorical, PARTITION),
        "platform_one_call": lambda: wp.profile_frame(sample, numeric, categorical),
        "naive_one_call": lambda: naive_why_log(sample, numeric, categorical),
        "floor_one_call": lambda: polars_summary(sample, numeric, categorical, None),
    }
    wp.profile_frame(parts[0], numeric, categorical)  # warm imports and caches outside the timings
    naive_why_log(parts[0], numeric, categorical)
    times = interleaved(fns, config.reps, warmup=False)
    rows = {name: (window.height if name.endswith("per_day") else sample.height) for name in fns}
    rates = {name: rate_summary(rows[name], ts) for name, ts in times.items()}
    result: dict[str, Any] = {
        "days": len(days), "rows_per_day_mean": window.height / max(1, len(days)), "rows": window.height,
        "one_call_rows": sample.height, "naive_agrees": agrees,
        "variants": {name: {"seconds": ts, "rows_per_s": rates[name]} for name, ts in times.items()},
    }
    for mode in ("per_day", "one_call"):
        floor = rates[f"floor_{mode}"]["best"]
        for impl in ("platform", "naive"):
            result[f"{impl}_{mode}_slowdown_vs_floor"] = floor / rates[f"{impl}_{mode}"]["best"]
    if feature_rows_per_s:
        # Time per row of profiling relative to time per row of the feature stage it follows.
        for impl in ("platform", "naive"):
            result[f"{impl}_share_of_feature_stage"] = feature_rows_per_s / rates[f"{impl}_per_day"]["best"]
    log(f"  profiling: platform {rates['platform_per_day']['best'] / 1e3:.1f}k rows/s per day, naive "
        f"{rates['naive_per_day']['best'] / 1e3:.1f}k, floor {rates['floor_per_day']['best'] / 1e3:.0f}k "
        f"({result['platform_per_day_slowdown_vs_floor']:.0f}x / {result['naive_per_day_slowdown_vs_floor']:.0f}x "
        "slower than the floor)")
    return result
