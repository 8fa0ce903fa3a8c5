"""Shadow scoring: the challenger scores the latest served prediction partitions beside what was
served, and every event's pair of probabilities is stored, so "same event, two versions" is a lookup."""

from __future__ import annotations

from typing import Any

from ml_assets import tables
from ml_assets.features.compute import EVENT_ID, PARTITION
from ml_assets.keys import UseCaseKeys
from ml_assets.spec import UseCaseSpec

SHADOW_PARTITIONS = 7


def shadow_scores(context: Any, spec: UseCaseSpec, lakehouse: Any, challenger: Any, version: str,
                  folder: str) -> dict[str, Any] | None:
    import polars as pl

    keys = UseCaseKeys(spec.name)
    served = sorted(context.instance.get_materialized_partitions(keys.predictions))[-SHADOW_PARTITIONS:]
    if not served:
        return None
    partitions = [spec.partition_range(p, p)[0] for p in served]
    preds, _ = tables.read_partitions(context, lakehouse, spec, keys.predictions, partitions)
    feats, _ = tables.read_partitions(context, lakehouse, spec, keys.features, partitions)
    joined = feats.join(preds.select(EVENT_ID, "probability", "predicted_positive", "model_version"),
                        on=EVENT_ID, how="inner")
    if joined.is_empty():
        return None
    joined = joined.with_columns(pl.Series("challenger_probability", challenger.score(joined).numpy(),
                                           dtype=pl.Float64))
    per_event = joined.select(
        EVENT_ID, PARTITION, pl.col("model_version").alias("served_version"),
        pl.col("probability").alias("served_probability"), pl.lit(version).alias("challenger_version"),
        "challenger_probability")
    stored = lakehouse.write_parquet(f"{folder}/shadow_scores.parquet", per_event)
    challenger_positive = pl.col("challenger_probability") >= challenger.threshold
    agree = challenger_positive == pl.col("predicted_positive")
    slice_col = spec.evaluation.slices[0] if spec.evaluation.slices else None
    by_slice = [] if slice_col is None else (
        joined.group_by(slice_col)
        .agg(pl.len().alias("rows"), (1 - agree.mean()).alias("disagreement"),
             (pl.col("challenger_probability") - pl.col("probability")).abs().mean().alias("mean_abs_diff"))
        .sort(["disagreement", slice_col], descending=[True, False]).head(8)
        .with_columns(pl.col(slice_col).cast(pl.String)).to_dicts())
    diff = (pl.col("challenger_probability") - pl.col("probability")).abs()
    return {
        "partitions": served, "rows": joined.height,
        "served_by": sorted(joined.get_column("model_version").unique().to_list()),
        "agreement": float(joined.select(agree.mean()).item()),
        "mean_abs_diff": float(joined.select(diff.mean()).item()),
        "challenger_only": joined.filter(challenger_positive & ~pl.col("predicted_positive")).height,
        "champion_only": joined.filter(~challenger_positive & pl.col("predicted_positive")).height,
        "by_slice": by_slice,
        "file": {"uri": stored.uri, "sha256": stored.sha256},
    }
