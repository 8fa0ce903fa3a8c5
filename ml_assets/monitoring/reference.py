"""A model's drift reference: a whylogs profile of the features it was trained on and of its own
scores on them, and the per-column thresholds calibrated on that reference's own partitions. Built
once at registration and stored (sha256s in the version record). Pure."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ml_assets.monitoring import drift_calibration as dc
from ml_assets.monitoring.drift import drift_scores, merged
from ml_assets.spec import UseCaseSpec
from ml_assets.spec.model import MonitoringSpec

if TYPE_CHECKING:
    import polars as pl

PREDICTION_COLUMN = "probability"
PARTITION = "partition_date"


def reference_artifacts(spec: UseCaseSpec, model: Any, frame: pl.DataFrame) -> tuple[bytes, bytes]:
    """(profile bytes, calibration JSON bytes) of the scored training frame."""
    import polars as pl

    from ml_assets.profiles import whylogs_profile as wp

    scored = frame.with_columns(pl.Series(PREDICTION_COLUMN, model.score(frame).numpy(), dtype=pl.Float64))
    numeric, categorical = [*spec.features.numeric, PREDICTION_COLUMN], list(spec.features.categorical)
    view = wp.profile_frame(scored, numeric, categorical)
    return wp.serialize(view), calibrate_frame(spec.monitoring, scored, view, numeric, categorical).to_json()


def calibrate_frame(mon: MonitoringSpec, frame: pl.DataFrame, reference: Any, numeric: list[str],
                    categorical: list[str]) -> dc.DriftCalibration:
    """`calibrate_views` on a reference frame: a profile per partition for the newest
    `drift_calibration_partitions`, one profile of the rows before them."""
    import polars as pl

    from ml_assets.profiles import whylogs_profile as wp

    keys = sorted(frame.get_column(PARTITION).unique().to_list())
    first = keys[-mon.drift_calibration_partitions:][0]
    older = frame.filter(pl.col(PARTITION) < first)
    partitions = {str(p): wp.profile_frame(part, numeric, categorical)
                  for (p,), part in frame.filter(pl.col(PARTITION) >= first).group_by([PARTITION])}
    rest = wp.profile_frame(older, numeric, categorical) if older.height else None
    return calibrate_views(mon, reference, partitions, numeric, categorical, older=rest)


def calibrate_views(mon: MonitoringSpec, reference: Any, partitions: dict[str, Any], numeric: list[str],
                    categorical: list[str], older: Any = None) -> dc.DriftCalibration:
    """Thresholds from every window of `mon.window` consecutive partitions among the newest
    `drift_calibration_partitions` of the reference, each scored as the drift report scores a serving
    window: against a reference it is not part of (`older`, the profile of the partitions before
    those, plus the other partitions, from prefix and suffix merges: O(partitions) merges). Scored
    in-sample, a window resembles its reference more than a new partition does, and the thresholds
    come out too tight. `reference` (the whole profile) stands in when nothing else is left."""
    window = int(mon.window)
    keys = sorted(partitions)[-mon.drift_calibration_partitions:]
    views = [partitions[k] for k in keys]
    prefix, suffix = _running_merges(views), _running_merges(views[::-1])[::-1]
    scores = []
    for i in range(len(views) - window + 1):
        others = [v for v in (older, prefix[i], suffix[i + window]) if v is not None]
        held_out = merged(others) if others else reference
        scores.append({c: s["hellinger"] for c, s in drift_scores(held_out, merged(views[i:i + window]), numeric,
                                                                  categorical, mon.quantile_bins).items()})
    return dc.calibrate(scores, keys, window=window, false_alarm_rate=mon.drift_false_alarm_rate,
                        floor=mon.drift_threshold_floor, quantile_bins=mon.quantile_bins)


def _running_merges(views: list[Any]) -> list[Any]:
    """[None, v0, v0+v1, ...]: element i merges the first i views."""
    out: list[Any] = [None]
    for view in views:
        out.append(view if out[-1] is None else out[-1].merge(view))
    return out
