"""Per-column drift thresholds calibrated on the reference's own variability.

A single day "drifts" against a month (one weekday, one weather): a fixed threshold either misses a
break or fires every day. So at registration every window of `window` consecutive training partitions
(the windows the monitor will score, a moving-block bootstrap enumerated instead of sampled, so it is
deterministic) is scored against the rest of the reference (held out, as a serving window is; see
`reference.calibrate_views`), and each column's threshold is set where those
scores would exceed it at `column_rate = false_alarm_rate / columns` (Bonferroni: the rate is per
partition, for all columns together). With n windows an empirical quantile cannot resolve a rate
below about 1/n, so the threshold is the larger of the empirical quantile and a Gaussian tail
(mean + z * std): both are stored. Pure: no Dagster, no whylogs import.
"""

from __future__ import annotations

import math
import statistics
from statistics import NormalDist
from typing import Any, Literal

from pydantic import Field

from ml_assets.records import Record, parse_record

METHOD = "moving-block, held out"


class ColumnThreshold(Record):
    threshold: float = Field(description="max(empirical, gaussian, floor), at most 1.")
    empirical: float = Field(description="The (1 - column_rate) quantile of the window scores.")
    gaussian: float = Field(description="mean + z(1 - column_rate) * std of the window scores.")
    mean: float
    std: float
    max: float
    samples: int


class DriftCalibration(Record):
    """Stored as content-addressed JSON at registration; its sha256 is in the version record."""

    method: Literal["moving-block, held out"] = METHOD
    window: int
    false_alarm_rate: float
    column_rate: float
    floor: float
    quantile_bins: int
    partitions: list[str] = Field(description="The training partitions whose windows were scored.")
    columns: dict[str, ColumnThreshold]

    def thresholds(self) -> dict[str, float]:
        return {c: t.threshold for c, t in self.columns.items()}


def quantile(values: list[float], level: float) -> float:
    """Linear-interpolated quantile of a non-empty list."""
    ordered = sorted(values)
    pos = level * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def column_threshold(samples: list[float], column_rate: float, floor: float) -> ColumnThreshold:
    """The threshold one column's scores on reference windows would exceed at about `column_rate`."""
    mean, std = statistics.fmean(samples), statistics.pstdev(samples)
    empirical = quantile(samples, 1 - column_rate)
    gaussian = mean + NormalDist().inv_cdf(1 - column_rate) * std
    return ColumnThreshold(threshold=min(1.0, max(empirical, gaussian, floor)), empirical=empirical,
                           gaussian=gaussian, mean=mean, std=std, max=max(samples), samples=len(samples))


def calibrate(window_scores: list[dict[str, float]], partitions: list[str], *, window: int, false_alarm_rate: float,
              floor: float, quantile_bins: int) -> DriftCalibration:
    """Thresholds from the scores (column -> Hellinger) of each reference window."""
    columns = sorted({c for scores in window_scores for c in scores})
    rate = false_alarm_rate / max(1, len(columns))
    thresholds = {c: column_threshold([s[c] for s in window_scores if c in s], rate, floor) for c in columns}
    return DriftCalibration(window=window, false_alarm_rate=false_alarm_rate, column_rate=rate, floor=floor,
                            quantile_bins=quantile_bins, partitions=partitions, columns=thresholds)


def reference_windows(views: dict[str, Any], window: int) -> list[tuple[str, list[Any]]]:
    """Every run of `window` consecutive partitions (by key order), named by its last partition."""
    keys = sorted(views)
    return [(keys[i + window - 1], [views[k] for k in keys[i:i + window]]) for i in range(len(keys) - window + 1)]


def parse(data: bytes, where: str) -> DriftCalibration:
    return parse_record(DriftCalibration, data, where)
