"""Prometheus metrics: the service's own (`/metrics`), and the platform's state read from the Dagster
instance (`/metrics/platform`).

Naming follows Prometheus practice: an `mlp_` prefix, base units (`_seconds`), `_total` counters, `_info`
for metadata, and no high-cardinality labels (no event or request ids). Each app has its own
`CollectorRegistry`, so several apps (tests, one per use case) never share counters.

The platform state is read on the collector's own thread every `refresh_seconds` and cached: a scrape
formats the cached values and never waits on the instance (it would stall requests on this worker).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServiceMetrics:
    def __init__(self, use_case: str) -> None:
        self.use_case = use_case
        self.registry = CollectorRegistry()
        r = self.registry
        self.latency = Histogram("mlp_serving_request_duration_seconds", "Predict request latency, from the request "
                                 "arriving to the response body being ready.", ["use_case", "kind"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.requests = Counter("mlp_serving_requests_total", "Predict requests by HTTP status.",
                                ["use_case", "status"], registry=r)
        self.predictions = Counter("mlp_serving_predictions_total", "Predictions returned, by model version and "
                                   "decision.", ["use_case", "version", "decision"], registry=r)
        self.errors = Counter("mlp_serving_errors_total", "Refused or failed predict requests by reason.",
                              ["use_case", "reason"], registry=r)
        self.oov = Counter("mlp_serving_oov_total", "Categorical values outside the model's vocabulary (scored "
                           "in the out-of-vocabulary slot), by column.", ["use_case", "column"], registry=r)
        self.batch_size = Histogram("mlp_serving_batch_events", "Events per predict request.", ["use_case"],
                                    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000), registry=r)
        self.model_info = Gauge("mlp_serving_model_info", "The model version this worker serves (1).",
                                ["use_case", "version", "sha256", "pointer_sequence"], registry=r)
        self.model_loaded = Gauge("mlp_serving_model_loaded", "1 when a verified model is loaded, else 0.",
                                  ["use_case"], registry=r)
        self.swaps = Counter("mlp_serving_model_swaps_total", "Model snapshot changes (promotion, rollback, "
                             "failure).", ["use_case"], registry=r)
        self.log_pending = Gauge("mlp_serving_log_pending_rows", "Prediction log rows not yet published.",
                                 ["use_case"], registry=r)
        self.model_loaded.labels(use_case).set(0)
        self._info_labels: tuple[str, ...] | None = None

    def on_swap(self, snapshot: Any) -> None:
        if self._info_labels is not None:
            self.model_info.remove(*self._info_labels)
            self._info_labels = None
        self.swaps.labels(self.use_case).inc()
        if snapshot is None:
            self.model_loaded.labels(self.use_case).set(0)
            return
        labels = (self.use_case, snapshot.version, snapshot.pointer.sha256, str(snapshot.pointer.sequence))
        self.model_info.labels(*labels).set(1)
        self._info_labels = labels
        self.model_loaded.labels(self.use_case).set(1)


def exported_metric_names(service: ServiceMetrics, platform: PlatformCollector | None = None) -> set[str]:
    """Every series name the registries expose (with histogram `_bucket`/`_count`/`_sum` suffixes)."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
                "gauge": ("",), "info": ("_info",)}
    names: set[str] = set()
    for family in service.registry.collect():  # families are listed even before their first sample
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    for family in (platform.describe() if platform else []):
        names.add(family.name)
    return names


# ---- the platform's state, from the instance ------------------------------------------------------
def _partition_ts(partition: str) -> float:
    return datetime.combine(date.fromisoformat(partition), datetime.min.time(), UTC).timestamp()


def estimated_auroc(prob: list[float]) -> float | None:
    """The AUROC expected if the probabilities are calibrated (no labels needed; CBPE-style): each event
    counts as p positive and 1-p negative; pairs are ranked by the score itself (ties count 1/2)."""
    if len(prob) < 2:
        return None
    pairs = sorted(prob)
    num, neg_below, i = 0.0, 0.0, 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j] == pairs[i]:
            j += 1
        group = pairs[i:j]
        pos, neg = sum(group), sum(1 - p for p in group)
        num += pos * neg_below + (pos * neg - sum(p * (1 - p) for p in group)) / 2
        neg_below += neg
        i = j
    total_pos, total_neg = sum(prob), sum(1 - p for p in prob)
    den = total_pos * total_neg - sum(p * (1 - p) for p in prob)
    return num / den if den > 0 else None


class PlatformCollector:
    """The platform's state per use case, from the Dagster instance and the registry (cached)."""

    GAUGES = {
        "mlp_platform_champion_age_partitions": ("Data-time age of the champion: partitions from the end of its "
                                                 "training window to the newest scored partition.", ["use_case"]),
        "mlp_platform_max_model_age_partitions": ("The use case's max_model_age policy.", ["use_case"]),
        "mlp_platform_drift_share": ("Share of monitored columns drifted in the newest drift report.",
                                     ["use_case", "partition"]),
        "mlp_platform_drift_share_threshold": ("Drifted-share threshold of the drift policy.", ["use_case"]),
        "mlp_platform_drifted": ("1 when the newest drift report is drifted.", ["use_case"]),
        "mlp_platform_realized_auroc": ("Realized AUROC of the newest partition with outcomes.",
                                        ["use_case", "version", "partition"]),
        "mlp_platform_promised_auroc": ("AUROC the serving version reached in its evaluation (what the gate "
                                        "promoted it on).", ["use_case", "version"]),
        "mlp_platform_estimated_auroc": ("AUROC expected from the newest scored partition's probabilities if "
                                         "calibrated (no labels needed).", ["use_case", "version", "partition"]),
        "mlp_platform_check_passed": ("1 when the newest execution of an asset check passed, 0 when it failed.",
                                      ["use_case", "asset", "check"]),
        "mlp_platform_newest_partition_timestamp_seconds": ("Data time: start of the newest materialized "
                                                            "partition (Unix seconds).", ["use_case", "asset"]),
        "mlp_platform_last_materialization_timestamp_seconds": ("Wall time of the newest materialization.",
                                                                ["use_case", "asset"]),
        "mlp_platform_state_up": ("1 when the last read of the platform state succeeded.", ["use_case"]),
        "mlp_platform_state_read_seconds": ("Seconds the last read of the platform state took.", ["use_case"]),
    }

    def __init__(self, specs: list[Any], instance: Any, lakehouse: Any, registry: Any,
                 check_keys: list[Any] | None = None, refresh_seconds: float = 30.0) -> None:
        self.specs, self.instance, self.lakehouse, self.registry = specs, instance, lakehouse, registry
        self.check_keys, self.refresh_seconds = list(check_keys or []), refresh_seconds
        self._values: list[tuple[str, tuple[str, ...], float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def describe(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily(name, doc, labels=labels) for name, (doc, labels) in self.GAUGES.items()]

    def collect(self):
        families = {name: GaugeMetricFamily(name, doc, labels=labels) for name, (doc, labels) in self.GAUGES.items()}
        for name, labels, value in self._values:
            families[name].add_metric(list(labels), value)
        yield from families.values()

    def refresh(self) -> None:
        values = []
        for spec in self.specs:
            start = time.perf_counter()
            try:
                values += self._read(spec)
                up, self.last_error = 1.0, None
            except Exception as exc:  # reported as a series, never as a failed scrape
                up, self.last_error = 0.0, f"{type(exc).__name__}: {exc}"
            values.append(("mlp_platform_state_up", (spec.name,), up))
            values.append(("mlp_platform_state_read_seconds", (spec.name,), time.perf_counter() - start))
        self._values = values

    def _latest(self, key: Any, partition: str | None = None) -> Any:
        import dagster as dg

        flt = dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None)
        result = self.instance.fetch_materializations(flt, limit=1, ascending=False)
        return result.records[0] if result.records else None

    def _read(self, spec: Any) -> list[tuple[str, tuple[str, ...], float]]:
        from ml_assets.keys import UseCaseKeys
        from ml_assets.registry.models import production_pointer
        from sensors.policy import model_age

        keys, name = UseCaseKeys(spec.name), spec.name
        out: list[tuple[str, tuple[str, ...], float]] = [
            ("mlp_platform_max_model_age_partitions", (name,), float(spec.monitoring.max_model_age)),
            ("mlp_platform_drift_share_threshold", (name,), spec.monitoring.drifted_share_threshold)]
        newest: dict[str, str] = {}
        for asset in ("features", "predictions", "drift_report", "realized_performance", "serving_state",
                      "online_predictions"):
            key = getattr(keys, asset)
            parts = self.instance.get_materialized_partitions(key)
            if parts:
                newest[asset] = max(parts)
                out.append(("mlp_platform_newest_partition_timestamp_seconds", (name, asset),
                            _partition_ts(newest[asset])))
            record = self._latest(key)
            if record is not None:
                out.append(("mlp_platform_last_materialization_timestamp_seconds", (name, asset), record.timestamp))
        pointer = production_pointer(self.instance, self.registry, name)
        if pointer is not None and "predictions" in newest:
            record = self.registry.get(name, pointer.version, pointer.record_sha256)  # the record it approved
            trained_to = date.fromisoformat(record.training_set.train_end)
            out.append(("mlp_platform_champion_age_partitions", (name,),
                        float(model_age(spec, date.fromisoformat(newest["predictions"]), trained_to))))
        if "drift_report" in newest:
            meta = self._latest(keys.drift_report, newest["drift_report"]).asset_materialization.metadata
            out.append(("mlp_platform_drift_share", (name, newest["drift_report"]), float(meta["drifted_share"].value)))
            out.append(("mlp_platform_drifted", (name,), 1.0 if meta["drifted"].value else 0.0))
        if "realized_performance" in newest:
            record = self._latest(keys.realized_performance, newest["realized_performance"])
            meta = record.asset_materialization.metadata
            if "auroc" in meta and "model_version" in meta:
                out.append(("mlp_platform_realized_auroc", (name, str(meta["model_version"].value),
                                                           newest["realized_performance"]), float(meta["auroc"].value)))
        if pointer is not None:
            from ml_assets.audit.ledger import Ledger
            from ml_assets.audit.views import promised_auroc

            promised = promised_auroc(Ledger(self.instance, self.lakehouse, self.registry, name), pointer.version)
            if promised is not None:
                out.append(("mlp_platform_promised_auroc", (name, pointer.version), promised))
        if "predictions" in newest:
            out += self._estimated(spec, keys, newest["predictions"])
        out += self._checks(name)
        return out

    def _estimated(self, spec: Any, keys: Any, partition: str) -> list[tuple[str, tuple[str, ...], float]]:
        from ml_assets import lineage

        receipt = lineage.recorded_partitions(self.instance, keys.predictions, [partition]).get(partition)
        if receipt is None:
            return []
        frame = self.lakehouse.read_parquet(receipt.uri, receipt.sha256, ["probability", "model_version"],
                                            what=f"asset {receipt.asset}, partition {partition}")
        out = []
        for version in sorted(set(frame.get_column("model_version"))):
            prob = frame.filter(frame.get_column("model_version") == version).get_column("probability").to_list()
            value = estimated_auroc(prob)
            if value is not None:
                out.append(("mlp_platform_estimated_auroc", (spec.name, version, partition), value))
        return out

    def _checks(self, use_case: str) -> list[tuple[str, tuple[str, ...], float]]:
        from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus as Status

        mine = [k for k in self.check_keys if k.asset_key.path[0] == use_case]
        if not mine:
            return []
        latest = self.instance.event_log_storage.get_latest_asset_check_execution_by_key(mine)
        out = []
        for key, record in latest.items():
            if record.status == Status.SUCCEEDED:
                value = 1.0 if record.evaluation is None or record.evaluation.passed else 0.0
            elif record.status == Status.FAILED:
                value = 0.0
            else:
                continue  # planned or skipped: no verdict
            out.append(("mlp_platform_check_passed", (use_case, key.asset_key.path[-1], key.name), value))
        return out

    def start(self) -> PlatformCollector:
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="platform-collector", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
