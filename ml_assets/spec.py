"""The declarative use-case spec: everything the asset factory needs to know about one ML problem.

A spec holds only plain data (strings, numbers, tuples, dicts of them), so it round-trips through
YAML/JSON (`UseCaseSpec.from_dict` / `to_dict`) and can be fingerprinted to derive code versions.
Nothing here knows about flights: the flight-delay problem is one instance, in `usecases/`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal

DType = Literal["int64", "float64", "string", "bool", "date"]


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a source table, and the contract rules it must satisfy."""

    name: str
    dtype: DType
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    allowed: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SourceTableSpec:
    """A raw table: either daily-partitioned events/observations or an unpartitioned dimension."""

    name: str
    file: str  # file name inside the embedded package, or the stem used in a landing folder
    columns: tuple[ColumnSpec, ...]
    partitioned: bool
    # Local calendar date of a row, from (year, month, day) columns; required when partitioned.
    date_columns: tuple[str, str, str] | None = None
    primary_key: tuple[str, ...] = ()
    rows_per_partition: tuple[int, int] | None = None  # expected (min, max) rows per day
    # Rows breaking a row-level rule are quarantined up to this share of a partition; above it the
    # partition fails and nothing is written.
    max_quarantine_fraction: float = 0.01
    known_missing_partitions: tuple[str, ...] = ()  # days the source is known to lack (no row-count rule)
    description: str = ""

    def column(self, name: str) -> ColumnSpec:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"table {self.name!r} has no column {name!r}")


@dataclass(frozen=True)
class LabelSpec:
    """The prediction target, as DuckDB SQL over the events table (alias-free column names)."""

    name: str
    expression: str  # boolean SQL, e.g. "arr_delay >= 15"
    known_when: str  # rows whose outcome is defined, e.g. "arr_delay IS NOT NULL"
    delay_days: int = 1  # outcomes of day D are known (usable as features) from day D + delay_days
    group_columns: tuple[str, ...] = ()  # event columns copied next to the label (for rolling rates)


@dataclass(frozen=True)
class LookupSpec:
    """A point-in-time join of the events onto another table (dimension or same-day partition)."""

    table: str
    on: tuple[tuple[str, str], ...]  # (event column, table column) pairs
    columns: dict[str, str]  # output feature -> SQL over aliases `e` (event) and `t` (table)


@dataclass(frozen=True)
class RollingRateSpec:
    """Label rate per key over trailing windows of *known* labels (smoothed towards the overall rate)."""

    name: str
    keys: tuple[str, ...]
    windows_days: tuple[int, ...] = (7, 28)
    prior_weight: float = 20.0

    def feature_names(self) -> tuple[str, ...]:
        return tuple(f"{self.name}_rate_{w}d" for w in self.windows_days)


@dataclass(frozen=True)
class FeatureSpec:
    derived: dict[str, str]  # feature -> SQL over the events alias `e`
    lookups: tuple[LookupSpec, ...]
    rolling_rates: tuple[RollingRateSpec, ...]
    numeric: tuple[str, ...]  # model inputs, standardized
    categorical: tuple[str, ...]  # model inputs, embedded
    # Columns never written raw into a profile (ids, free text): dropped before profiling.
    identifier_columns: tuple[str, ...] = ()
    max_null_rate: float = 0.4  # per numeric input and partition (feature contract) ...
    max_null_rates: dict[str, float] = field(default_factory=dict)  # ... unless overridden here

    @property
    def model_inputs(self) -> tuple[str, ...]:
        return self.numeric + self.categorical

    @property
    def max_window_days(self) -> int:
        return max((w for r in self.rolling_rates for w in r.windows_days), default=0)


@dataclass(frozen=True)
class ModelSpec:
    """Hyperparameters of the tabular network (categorical embeddings + MLP)."""

    hidden_sizes: tuple[int, ...] = (64, 32)
    embedding_dim: int = 6
    dropout: float = 0.1
    epochs: int = 12
    batch_size: int = 1024
    learning_rate: float = 2e-3
    weight_decay: float = 1e-5
    patience: int = 3
    seed: int = 13
    # One intra-op thread: this 27k-parameter network trained faster on 1 than on 2 threads here,
    # and a busy neighbour core cannot stall it (OpenMP threads wait on each other in every op).
    num_threads: int = 1
    min_category_count: int = 5


@dataclass(frozen=True)
class TrainingSpec:
    """Default data window; overridable per run via config."""

    train_start: str
    train_end: str  # inclusive
    validation_days: int  # the last N days of the window are held out for early stopping/threshold


@dataclass(frozen=True)
class EvaluationSpec:
    start: str
    end: str  # inclusive
    slices: tuple[str, ...]
    baseline_feature: str  # a historical-rate feature used as the naive baseline score
    calibration_bins: int = 10
    min_slice_rows: int = 200


@dataclass(frozen=True)
class PromotionSpec:
    primary_metric: str = "auroc"
    min_improvement: float = 0.002
    max_calibration_error: float = 0.05
    max_slice_regression: float = 0.03
    min_rows: int = 2000


@dataclass(frozen=True)
class MonitoringSpec:
    """Drift and freshness policy. Drift is decided on effect sizes (Hellinger distance between the
    day's sketches and the champion's training-window sketches), not p-values, with thresholds
    calibrated on unshifted data (see tests/test_drift_detection.py)."""

    window_days: int = 7  # each day's drift compares the trailing N days (whole weeks: no weekday effect)
    feature_drift_threshold: float = 0.3  # Hellinger distance above which a column counts as drifted
    drifted_share_threshold: float = 0.4  # share of monitored columns drifted for a day to be "drifted"
    consecutive_partitions: int = 3  # drifted days in a row before a retrain is requested
    max_model_age_days: int = 45  # data time: newest scored day minus the champion's training-window end
    cooldown_days: int = 14  # data time between two automatic retrains
    retrain_window_days: int = 120  # a retrain uses the latest N days whose labels are known ...
    retrain_eval_days: int = 7  # ... of which the last N are held out for evaluation
    quantile_bins: int = 10


@dataclass(frozen=True)
class UseCaseSpec:
    name: str
    description: str
    owners: tuple[str, ...]
    partitions_start: str
    partitions_end: str  # inclusive
    timezone: str
    events_table: str
    # Where the embedded default data lives (a PyPI package with a data/ folder); a landing folder
    # or URI replaces it by configuration of the source resource.
    embedded_package: str
    event_id_columns: tuple[str, ...]
    sources: tuple[SourceTableSpec, ...]
    label: LabelSpec
    features: FeatureSpec
    model: ModelSpec
    training: TrainingSpec
    evaluation: EvaluationSpec
    promotion: PromotionSpec = field(default_factory=PromotionSpec)
    monitoring: MonitoringSpec = field(default_factory=MonitoringSpec)
    # For the model card.
    intended_use: str = ""
    known_limitations: tuple[str, ...] = ()

    # ---- derived facts (one source of truth: computed, never retyped) ----
    def source(self, name: str) -> SourceTableSpec:
        for table in self.sources:
            if table.name == name:
                return table
        raise KeyError(f"use case {self.name!r} has no source table {name!r}")

    @property
    def events(self) -> SourceTableSpec:
        return self.source(self.events_table)

    @property
    def label_history_offsets(self) -> tuple[int, int]:
        """Partition offsets (start, end) of the label days a feature partition may read."""
        end = -self.label.delay_days
        return end - self.features.max_window_days + 1, end

    def fingerprint(self, *parts: str) -> str:
        """Short stable hash of the whole spec, or of the named top-level sections."""
        data = self.to_dict()
        if parts:
            data = {p: data[p] for p in parts}
        blob = json.dumps(data, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:10]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UseCaseSpec:
        return _build(cls, data)


def parse_date(value: str) -> date:
    return date.fromisoformat(value)


def date_range(start: str | date, end: str | date) -> list[date]:
    """Inclusive list of days."""
    first = parse_date(start) if isinstance(start, str) else start
    last = parse_date(end) if isinstance(end, str) else end
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _build(tp: Any, value: Any) -> Any:
    """Rebuild nested frozen dataclasses (with tuples) from plain JSON/YAML data."""
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = set(value) - names
        if unknown:
            raise ValueError(f"{tp.__name__}: unknown field(s) {sorted(unknown)}")
        return tp(**{k: _build(hints[k], v) for k, v in value.items()})
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _build(args[0], value)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], v) for v in value)
        return tuple(_build(a, v) for a, v in zip(args, value, strict=True))
    if origin is dict:
        _, vt = typing.get_args(tp)
        return {k: _build(vt, v) for k, v in value.items()}
    return value
