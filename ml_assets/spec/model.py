"""The declarative use-case spec: everything the platform needs to know about one ML problem.

A use case is one YAML file (`ml_assets/defs/<name>/defs.yaml`, loaded as a Dagster Component); its
`attributes` are validated by these models, so the YAML schema is this module (field descriptions
included: `mlp schema` prints it, `docs/use-case-schema.md` is generated from it). Nothing here
knows about any dataset.

Windows, delays and ages are *spans*: a partition count (`28`) or a duration (`28d`, `4w`, `3mo`,
`1y`) that must be a whole number of partitions of the use case's cadence. `UseCaseSpec` converts
every span to a partition count when it is built, so code downstream only sees integers.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from ml_assets.spec import cadence as cad

DType = Literal["int64", "float64", "string", "bool", "date"]
# A partition count or a duration string; an int once the spec is built (see the module docstring).
Span = Annotated[int | str, AfterValidator(cad.check_span_syntax)]

# Columns the platform adds to raw rows; a source table may not declare them.
PARTITION_COLUMN = "_partition_date"
EVENT_TIME_COLUMN = "_event_time"
RESERVED_COLUMNS = (PARTITION_COLUMN, EVENT_TIME_COLUMN, "_rule")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---- raw tables -------------------------------------------------------------------------------------
class ColumnSpec(Section):
    """One column of a source table and the row-level contract rules it must satisfy."""

    dtype: DType = Field(description="Type the column is cast to; a value that does not cast is a dtype violation.")
    nullable: bool = Field(True, description="False: a null is a row-level violation (rule not_null).")
    min: float | None = Field(None, description="Smallest allowed value (rule min).")
    max: float | None = Field(None, description="Largest allowed value (rule max).")
    allowed: list[str] | None = Field(None, description="The only allowed values (rule allowed).")
    description: str = Field("", description="Shown in the UI's column schema.")


class EventTimeSpec(Section):
    """How a row's event time (and so its partition) is read: one timestamp column, or date parts."""

    column: str | None = Field(None, description="A timestamp column.")
    format: Literal["iso", "unix_seconds", "unix_milliseconds", "datetime", "date"] = Field(
        "iso", description="iso: ISO-8601 text with an offset or Z (naive text is local time); unix_*: epoch "
        "numbers (UTC); datetime/date: native values (naive ones are local time).")
    date_columns: list[str] | None = Field(None, description="[year, month, day] columns of the local date, "
                                           "instead of `column`.")

    @model_validator(mode="after")
    def _one_way(self) -> EventTimeSpec:
        if (self.column is None) == (self.date_columns is None):
            raise ValueError("set exactly one of `column` or `date_columns`")
        if self.date_columns is not None and len(self.date_columns) != 3:
            raise ValueError("`date_columns` lists [year, month, day]")
        return self

    @property
    def columns(self) -> list[str]:
        return [self.column] if self.column else list(self.date_columns or [])


class SourceSpec(Section):
    """Where a table's rows come from when no landing folder delivers them partition by partition."""

    uri: str | None = Field(None, description="A local path or fsspec URI: one file, a folder, or a glob.")
    package: str | None = Field(None, description="An installed Python package holding the file (read without "
                                "importing the package).")
    path: str | None = Field(None, description="The file's path inside `package`.")
    format: Literal["auto", "parquet", "csv", "pandas_pickle"] = Field(
        "auto", description="auto: from the file name. pandas_pickle (executes code when read) is allowed only "
        "inside an installed package and with a pinned `sha256`.")
    sha256: str | None = Field(None, description="Expected sha256 of the file; verified before it is parsed.")
    encoding: Literal["utf8", "latin1"] = Field("utf8", description="Text encoding of CSV files.")

    @model_validator(mode="after")
    def _where(self) -> SourceSpec:
        if (self.uri is None) == (self.package is None):
            raise ValueError("set exactly one of `uri` or `package` (+ `path`)")
        if self.package is not None and not self.path:
            raise ValueError("`package` needs `path` (the file inside the package)")
        if self.format == "pandas_pickle" and (self.package is None or not self.sha256):
            raise ValueError("a pandas pickle runs code when it is read: only from an installed package, "
                             "with a pinned `sha256`")
        return self

    @property
    def file_format(self) -> str:
        if self.format != "auto":
            return self.format
        name = (self.path or self.uri or "").lower()
        return "parquet" if name.endswith(".parquet") else "csv"


class RowRuleSpec(Section):
    """A cross-column rule: boolean DuckDB SQL over the row's columns; rows where it is false or null are
    quarantined under the rule's name."""

    name: str = Field(description="Rule name, shown with every quarantined row.")
    sql: str = Field(description="Boolean SQL over the table's columns (and `_event_time`); true = valid.")


class TableSpec(Section):
    """A source table: partitioned by event time (events, observations), or a dimension."""

    name: str = Field("", description="Set from the key under `tables:`.")
    description: str = ""
    source: SourceSpec | None = Field(None, description="Bulk source. Optional when every partition comes "
                                      "from a landing folder.")
    event_time: EventTimeSpec | None = Field(None, description="Set for a partitioned table; unset: a dimension.")
    columns: dict[str, ColumnSpec]
    primary_key: list[str] = Field(default_factory=list, description="Duplicate keys: rule unique_key (first kept).")
    rows_per_partition: list[int] | None = Field(None, description="[min, max] valid rows per partition.")
    max_quarantine_fraction: float = Field(0.01, ge=0, le=1, description="Above this share of quarantined rows "
                                           "the partition fails and nothing is written.")
    known_missing_partitions: list[str] = Field(default_factory=list, description="Partitions the source is "
                                                "known to lack (no file, no row-count rule).")
    extra_columns: Literal["fail", "warn", "ignore"] = Field(
        "warn", description="Columns delivered but not declared: fail the partition, note them in the "
        "materialization (warn), or ignore them.")
    rules: list[RowRuleSpec] = Field(default_factory=list, description="Cross-column row rules.")

    @property
    def partitioned(self) -> bool:
        return self.event_time is not None

    def column(self, name: str) -> ColumnSpec:
        try:
            return self.columns[name]
        except KeyError:
            raise KeyError(f"table {self.name!r} has no column {name!r}") from None

    @field_validator("columns")
    @classmethod
    def _not_reserved(cls, columns: dict[str, ColumnSpec]) -> dict[str, ColumnSpec]:
        taken = sorted(set(columns) & set(RESERVED_COLUMNS))
        if taken:
            raise ValueError(f"column name(s) {taken} are reserved for the platform")
        return columns


# ---- label and features -----------------------------------------------------------------------------
class LabelSpec(Section):
    """The prediction target, as DuckDB SQL over the events table."""

    name: str
    expression: str = Field(description="Boolean SQL over the event's columns, e.g. `arr_delay >= 15`.")
    known_when: str = Field("true", description="Rows whose outcome is defined, e.g. `arr_delay IS NOT NULL`.")
    delay: Span = Field(1, description="Outcomes of partition P are known (usable by features) from partition "
                        "P + delay.")
    group_columns: list[str] = Field(default_factory=list, description="Event columns stored beside the "
                                     "label (rolling-rate keys).")


class LookupSpec(Section):
    """A point-in-time join of the events onto another table (a dimension or a same-partition table)."""

    table: str
    join: dict[str, str] = Field(description="Event column -> table column equalities (the join keys).")
    columns: dict[str, str] = Field(description="Output feature -> SQL over aliases `e` (event) and `t` (table).")


class RollingRateSpec(Section):
    """Label rate per key over trailing windows of known labels, smoothed towards the overall rate."""

    name: str
    keys: list[str] = Field(description="Label group columns to rate by.")
    windows: list[Span] = Field(default_factory=lambda: [7, 28], description="Trailing windows (spans).")
    prior_weight: float = Field(20.0, description="Pseudo-count of the overall rate mixed into each key's rate.")
    counts: bool = Field(False, description="Also output the number of known labels per key and window "
                         "(`<name>_n_<window>`).")

    def feature_names(self, cadence: cad.Cadence) -> list[str]:
        return [f"{self.name}_rate_{w}{cad.suffix(cadence)}" for w in self.windows]

    def count_names(self, cadence: cad.Cadence) -> list[str]:
        return [f"{self.name}_n_{w}{cad.suffix(cadence)}" for w in self.windows] if self.counts else []


class FeatureSpec(Section):
    derived: dict[str, str] = Field(default_factory=dict, description="Feature -> SQL over the event alias `e` "
                                    "(raw columns, `e._event_time` local timestamp, `e._partition_date`).")
    lookups: list[LookupSpec] = Field(default_factory=list)
    rolling_rates: list[RollingRateSpec] = Field(default_factory=list)
    numeric: list[str] = Field(description="Model inputs, standardized.")
    categorical: list[str] = Field(default_factory=list, description="Model inputs, embedded.")
    identifier_columns: list[str] = Field(default_factory=lambda: ["event_id"], description="Never profiled.")
    max_null_rate: float = Field(0.4, description="Per numeric input and partition (feature contract) ...")
    max_null_rates: dict[str, float] = Field(default_factory=dict, description="... unless overridden here.")

    @property
    def model_inputs(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    @property
    def max_window(self) -> int:
        return max((int(w) for r in self.rolling_rates for w in r.windows), default=0)


# ---- model, training, evaluation, promotion, monitoring ------------------------------------------------
class ModelSpec(Section):
    """Hyperparameters of the tabular network (categorical embeddings + MLP)."""

    hidden_sizes: list[int] = Field(default_factory=lambda: [64, 32])
    embedding_dim: int = 6
    dropout: float = 0.1
    epochs: int = 12
    batch_size: int = 1024
    learning_rate: float = 2e-3
    weight_decay: float = 1e-5
    patience: int = 3
    seed: int = 13
    # One intra-op thread: this small network trained faster on 1 than on 2 threads here, and a busy
    # neighbour core cannot stall it (OpenMP threads wait on each other in every op).
    num_threads: int = 1
    min_category_count: int = 5


class TrainingSpec(Section):
    """The first model's window (later retrains take theirs from the monitoring policy)."""

    start: date
    end: date = Field(description="Inclusive: the first day of the last partition.")
    validation: Span = Field(description="The last partitions of the window, held out for early stopping and "
                             "the decision threshold.")


class EvaluationSpec(Section):
    start: date = Field(description="The first model's held-out period (first partition).")
    end: date = Field(description="... (last partition, inclusive).")
    slices: list[str] = Field(default_factory=list, description="Feature columns reported (and guarded) per value.")
    baseline_feature: str = Field(description="A historical-rate feature used as the naive baseline score.")
    calibration_bins: int = 10
    min_slice_rows: int = Field(200, description="Slice values with fewer rows are listed as too small, not judged.")


class PromotionSpec(Section):
    """The promotion gate. The challenger's AUROC difference to the reference (champion, or the baseline
    for the first model) comes with a paired bootstrap interval over whole partitions: superiority
    (lower bound > `min_improvement`) is required while the champion is fresh; once it is past
    `monitoring.max_model_age`, non-inferiority (lower bound > -`non_inferiority_margin`) suffices; past
    `expired_model_age` the burden of proof shifts: only a significantly worse challenger is refused."""

    primary_metric: Literal["auroc"] = "auroc"
    min_improvement: float = Field(0.0, description="Superiority: the interval's lower bound must exceed this.")
    non_inferiority_margin: float = Field(0.005, description="Stale champion: lower bound > -margin suffices.")
    expired_model_age: Span | None = Field(None, description="Data time (like `monitoring.max_model_age`) after which "
                                           "the champion has expired: the challenger is promoted unless it is "
                                           "significantly worse (interval's upper bound < 0). Unset: never.")
    confidence: float = Field(0.90, gt=0, lt=1, description="Two-sided level of every interval.")
    bootstrap_samples: int = Field(500, ge=50, description="Paired bootstrap resamples.")
    max_calibration_error: float = Field(0.05, description="Absolute ECE bound ...")
    calibration_tolerance: float = Field(0.01, description="... or: no worse than the champion's ECE on the same "
                                         "events plus this (a base-rate shift hits both).")
    max_slice_regression: float = Field(0.03, description="A slice fails when its AUROC drops by more than this "
                                        "and the drop is significant (its interval, Bonferroni-adjusted over the "
                                        "judged slices, is below 0).")
    min_rows_per_partition: int = Field(100, description="Minimum labelled evaluation rows = this x partitions.")
    max_equalized_odds_difference: float | None = Field(None, description="Gate on protected attributes "
                                                        "(unset: reported, not gated).")
    max_demographic_parity_difference: float | None = None


class MonitoringSpec(Section):
    """Drift and freshness policy (effect sizes on whylogs sketches, in data time)."""

    window: Span = Field(1, description="Each partition's drift scores compare its trailing window (this many "
                         "partitions) with the serving version's reference; thresholds are calibrated at the same "
                         "window size. One partition reacts fastest; widen it for sparse partitions.")
    drift_false_alarm_rate: float = Field(0.01, gt=0, lt=1, description="Per-partition false-alarm rate of the "
                                          "calibrated column thresholds, shared by all monitored columns: each "
                                          "column's threshold is what its scores on the reference's own windows "
                                          "(held out) exceed at rate / columns. Day-level scores persist, so "
                                          "the k-of-n rule is not counted on to lower it further.")
    drift_calibration_partitions: int = Field(60, ge=2, description="The newest training partitions whose windows "
                                              "calibrate the thresholds (each scored against the rest of the "
                                              "reference); bounds the cost at registration, about 50 ms a partition.")
    drift_threshold_floor: float = Field(0.05, ge=0, le=1, description="No calibrated threshold is below this "
                                         "Hellinger distance (sketch noise).")
    drift_alarm_exceedances: int = Field(2, ge=1, description="A column fires when its score exceeds its threshold "
                                         "in at least this many ...")
    drift_alarm_partitions: int = Field(3, ge=1, description="... of the last partitions (k of n); a partition is "
                                        "drifted when any column fires.")
    feature_drift_threshold: float = Field(0.3, description="Fixed Hellinger threshold for every column of a version "
                                           "registered without a calibration (older records).")
    drifted_share_threshold: float = Field(0.4, description="A partition is also drifted when more than this share "
                                           "of the monitored columns exceed their thresholds.")
    consecutive_partitions: int = Field(1, ge=1, description="Drifted partitions in a row before a retrain (the "
                                        "k-of-n rule already asks for persistence).")
    max_model_age: Span = Field(45, description="Data time: newest scored partition minus the end of the "
                                "champion's training window.")
    cooldown: Span = Field(14, description="Data time between two automatic retrains.")
    retrain_window: Span = Field(120, description="A retrain uses the latest partitions whose labels are known ...")
    retrain_eval: Span = Field(7, description="... of which the last are held out for evaluation.")
    quantile_bins: int = 10
    backtest_every: Span = Field(28, description="The policy backtest's blind periodic retraining: a new model "
                                 "every this many partitions, always promoted.")
    performance_margin: float = Field(0.05, ge=0, description="A partition is below promise when its AUROC's "
                                      "one-sided upper confidence bound is more than this below the serving "
                                      "version's evaluation AUROC.")
    performance_confidence: float = Field(0.90, gt=0.5, lt=1, description="Level of that one-sided bound "
                                          "(DeLong standard error of the partition's AUROC; Bonferroni over the "
                                          "overall and `evaluation.slices` scopes judged).")
    performance_warn_partitions: int = Field(3, ge=1, description="Partitions below promise in a row (same "
                                             "version and scope: overall or one slice value) before the check "
                                             "warns and a retrain is requested.")
    performance_error_partitions: int = Field(6, ge=1, description="... before the check errors.")
    health_window: Span = Field(7, description="`mlp status` reports the serving version's realized AUROC as the "
                                "mean over its newest this many labelled partitions (one partition's AUROC is "
                                "noise; the drift window is about single partitions).")
    performance_use_estimate: bool = Field(False, description="Partitions whose labels are not known yet in data "
                                           "time count with their estimated (CBPE) AUROC; false: realized only.")

    @model_validator(mode="after")
    def _rules_can_fire(self) -> MonitoringSpec:
        if self.drift_alarm_exceedances > self.drift_alarm_partitions:
            raise ValueError(f"drift_alarm_exceedances ({self.drift_alarm_exceedances}) is more than "
                             f"drift_alarm_partitions ({self.drift_alarm_partitions}): no column could ever fire")
        if self.performance_error_partitions < self.performance_warn_partitions:
            raise ValueError(f"performance_error_partitions ({self.performance_error_partitions}) is fewer than "
                             f"performance_warn_partitions ({self.performance_warn_partitions})")
        if isinstance(self.health_window, int) and self.health_window < 1:
            raise ValueError(f"health_window ({self.health_window}) must be at least one partition")
        return self


class UseCaseSpec(Section):
    """One ML problem: its tables and contracts, label, features, model, windows, gates and drift policy."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Asset key prefix, group and job names.")
    description: str
    owners: list[str] = Field(description="Dagster owners (`team:...` or e-mail).")
    cadence: cad.Cadence = Field("daily", description="Partition cadence.")
    partitions_start: date
    partitions_end: date = Field(description="Inclusive: the first day of the last partition.")
    timezone: str = Field("UTC", description="Event times are converted to this zone before partitioning.")
    events_table: str
    event_id_columns: list[str] = Field(description="Columns whose values, joined by '|', identify an event.")
    entity_columns: list[str] = Field(default_factory=list, description="The event id columns that name the same "
                                      "entity across partitions (a scheduled flight, a user): `mlp explain --day` "
                                      "compares that entity's predictions on two partitions. Empty: not comparable.")
    tables: dict[str, TableSpec]
    label: LabelSpec
    features: FeatureSpec
    protected_attributes: list[str] = Field(default_factory=list, description="Feature columns that may never be "
                                            "model inputs; always reported as fairness slices.")
    model: ModelSpec = Field(default_factory=ModelSpec)
    training: TrainingSpec
    evaluation: EvaluationSpec
    promotion: PromotionSpec = Field(default_factory=PromotionSpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    landing_uri: str | None = Field(None, description="Where partition files land (`<uri>/<table>/<partition>.<ext>`); "
                                    "default: `$ML_LANDING_URI/<name>` when that is set.")
    intended_use: str = ""
    known_limitations: list[str] = Field(default_factory=list)

    # ---- building: names from keys, spans to partition counts -----------------------------------------
    @model_validator(mode="before")
    @classmethod
    def _normalize(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        tables = data.get("tables")
        if isinstance(tables, dict):
            data["tables"] = {n: {**t, "name": n} if isinstance(t, dict) else t for n, t in tables.items()}
        cadence = data.get("cadence", "daily")
        if cadence not in cad.CADENCES:
            return data  # the field's own validation names the problem
        errors = []
        for path, value, put in _spans(data):
            try:
                put(cad.span_partitions(value, cadence))
            except (cad.SpanError, ValueError) as exc:
                errors.append(f"{path}: {exc}")
        if errors:
            raise ValueError("; ".join(errors))
        return data

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. 'America/New_York', 'UTC')") from None
        return value

    # ---- derived facts (computed, never retyped) -------------------------------------------------------
    def source(self, name: str) -> TableSpec:
        try:
            return self.tables[name]
        except KeyError:
            raise KeyError(f"use case {self.name!r} has no table {name!r}") from None

    @property
    def sources(self) -> list[TableSpec]:
        return list(self.tables.values())

    @property
    def events(self) -> TableSpec:
        return self.source(self.events_table)

    @property
    def label_delay(self) -> int:
        return int(self.label.delay)

    @property
    def label_history_offsets(self) -> tuple[int, int]:
        """Partition offsets (start, end) of the label partitions a feature partition may read."""
        end = -self.label_delay
        return end - self.features.max_window + 1, end

    def partition_range(self, first: date | str, last: date | str) -> list[date]:
        first = date.fromisoformat(first) if isinstance(first, str) else first
        last = date.fromisoformat(last) if isinstance(last, str) else last
        return cad.partition_range(first, last, self.cadence)

    def all_partitions(self) -> list[date]:
        return self.partition_range(self.partitions_start, self.partitions_end)

    def shift(self, partition: date, n: int) -> date:
        return cad.shift(partition, n, self.cadence)

    def fingerprint(self, *parts: str) -> str:
        """Short stable hash of the whole spec, or of the named top-level sections."""
        data = self.model_dump(mode="json")
        if parts:
            data = {p: data[p] for p in parts}
        blob = json.dumps(data, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:10]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _spans(data: dict[str, Any]):
    """(path, value, setter) for every span in raw spec data (before the sections are validated)."""

    def slot(container: dict | list, key: Any, path: str):
        return path, container[key], lambda v: container.__setitem__(key, v)

    def section(name: str) -> dict | None:
        value = data.get(name)
        if isinstance(value, dict):
            data[name] = value = dict(value)
            return value
        return None

    if (label := section("label")) is not None and "delay" in label:
        yield slot(label, "delay", "label.delay")
    if (training := section("training")) is not None and "validation" in training:
        yield slot(training, "validation", "training.validation")
    if (monitoring := section("monitoring")) is not None:
        for key in ("window", "max_model_age", "cooldown", "retrain_window", "retrain_eval", "backtest_every",
                    "health_window"):
            if key in monitoring:
                yield slot(monitoring, key, f"monitoring.{key}")
    if (promotion := section("promotion")) is not None and promotion.get("expired_model_age") is not None:
        yield slot(promotion, "expired_model_age", "promotion.expired_model_age")
    if (features := section("features")) is not None and isinstance(features.get("rolling_rates"), list):
        features["rolling_rates"] = rates = [dict(r) if isinstance(r, dict) else r for r in features["rolling_rates"]]
        for i, rate in enumerate(rates):
            if isinstance(rate, dict):
                windows = rate.setdefault("windows", [7, 28])
                if isinstance(windows, list):
                    rate["windows"] = windows = list(windows)
                    for j in range(len(windows)):
                        yield slot(windows, j, f"features.rolling_rates[{i}].windows[{j}]")
