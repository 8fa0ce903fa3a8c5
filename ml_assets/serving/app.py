"""The online scoring app: `create_app(spec, instance, lakehouse, registry)`.

    POST /v1/<use case>/predict   one event object, or {"events": [...]} (at most `max_batch` events)
    GET  /healthz                 liveness: the process answers
    GET  /readyz                  ready only with a verified model and a serving state loaded (else 503 + reason)
    GET  /metrics                 the service's Prometheus metrics
    GET  /metrics/platform        the platform's state from the Dagster instance (cached, see metrics.py)

A request is validated (validation.py), its events get their event time and partition from the batch
code (`with_event_time`), the table's SQL row rules are checked, features come from the batch feature
query over that partition's `serving_state` (state.py), and one model snapshot scores it (model.py).

Requests are scored in micro-batches: while one batch runs on the scoring thread, arriving requests
queue and form the next one. A DuckDB query costs about the same for 1 or 50 rows here (~5-7 ms), so
this is what lets one worker sustain a few hundred requests/s; a batch is scored by one snapshot, and
each request's response names it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from ml_assets.errors import MissingDataError, PlatformError
from ml_assets.features import compute
from ml_assets.serving.log import SOURCE, LogFlusher, PredictionLog, now_iso
from ml_assets.serving.metrics import PlatformCollector, ServiceMetrics
from ml_assets.serving.model import ModelSnapshot, ModelWatcher
from ml_assets.serving.state import ROW, OnlineFeatures, load_state
from ml_assets.serving.validation import Problem, RequestError, parse_events
from ml_assets.spec import PARTITION_COLUMN, UseCaseSpec


@dataclass(frozen=True)
class ServingConfig:
    max_batch: int = 1000  # events per request; more: 413
    max_queue_events: int = 20_000  # events waiting to be scored; more: 503 overloaded
    poll_seconds: float = 5.0  # production pointer and serving state polling
    grace_seconds: float = 30.0  # a pointer change in flight keeps the old snapshot this long
    log_flush_seconds: float = 2.0
    platform_refresh_seconds: float = 30.0
    platform_metrics: bool = True
    max_loaded_states: int = 4


class StateCache:
    """Loaded serving states by partition (verified on load; reloaded when re-materialized)."""

    def __init__(self, spec: UseCaseSpec, instance: Any, lakehouse: Any, max_loaded: int) -> None:
        self.spec, self.instance, self.lakehouse, self.max_loaded = spec, instance, lakehouse, max_loaded
        self._states: dict[str, OnlineFeatures] = {}
        self._lock = threading.Lock()

    def newest_partition(self) -> str | None:
        from ml_assets.keys import UseCaseKeys

        parts = self.instance.get_materialized_partitions(UseCaseKeys(self.spec.name).serving_state)
        return max(parts) if parts else None

    def _load(self, partition: str) -> OnlineFeatures:
        receipt, frames = load_state(self.spec, self.instance, self.lakehouse, partition)
        features = OnlineFeatures(self.spec, partition, frames, receipt.storage_id)
        with self._lock:  # a replaced or evicted state is not closed here: a batch may still be scoring with
            self._states[partition] = features  # it; its connection closes when the last reference goes
            while len(self._states) > self.max_loaded:
                self._states.pop(min(self._states))
        return features

    def get(self, partition: str) -> OnlineFeatures:
        """The state for events of `partition`, or MissingDataError. Only the event's own partition: the rate
        relations are keyed by it, so another partition's state would join nothing (wrong features, not
        stale ones)."""
        state = self._states.get(partition)
        if state is not None:
            return state
        try:
            return self._load(partition)
        except MissingDataError:
            raise MissingDataError(f"no serving state for partition {partition}; the newest is "
                                   f"{self.newest_partition()} (build it: `mlp serve --build-state {partition}` "
                                   f"or the {self.spec.name}__serving job)") from None

    def loaded(self) -> list[str]:
        return sorted(self._states)

    def close(self) -> None:
        """Close every loaded state's connection (at shutdown, when no batch is scoring)."""
        with self._lock:
            states, self._states = list(self._states.values()), {}
        for state in states:
            state.close()

    def refresh(self) -> None:
        """Reload loaded partitions whose newest materialization changed."""
        from ml_assets import lineage
        from ml_assets.keys import UseCaseKeys

        key = UseCaseKeys(self.spec.name).serving_state
        recorded = lineage.recorded_partitions(self.instance, key, self.loaded())
        for partition, receipt in recorded.items():
            state = self._states.get(partition)
            if state is not None and state.storage_id != receipt.storage_id:
                self._load(partition)


@dataclass
class _Pending:
    rows: list[dict[str, Any]]
    request_id: str
    future: asyncio.Future
    result: dict[str, Any] | None = None
    error: RequestError | None = None
    oov: dict[str, int] = field(default_factory=dict)


class Service:
    """Everything one worker holds: model watcher, state cache, log, metrics, the scoring thread."""

    def __init__(self, spec: UseCaseSpec, instance: Any, lakehouse: Any, registry: Any,
                 config: ServingConfig | None = None, check_keys: list[Any] | None = None) -> None:
        self.spec, self.instance, self.lakehouse, self.registry = spec, instance, lakehouse, registry
        self.config = config or ServingConfig()
        self.metrics = ServiceMetrics(spec.name)
        self.watcher = ModelWatcher(instance, registry, spec.name, self.config.poll_seconds,
                                    self.config.grace_seconds, on_swap=self.metrics.on_swap)
        self.states = StateCache(spec, instance, lakehouse, self.config.max_loaded_states)
        self.log = PredictionLog(lakehouse, spec.name,
                                 on_error=lambda exc: self.metrics.errors.labels(spec.name, "log_write").inc())
        self.platform = (PlatformCollector([spec], instance, lakehouse, registry, check_keys,
                                           self.config.platform_refresh_seconds)
                         if self.config.platform_metrics else None)
        self.state_failure: str | None = "no serving state loaded yet"
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scorer")
        self._queue: asyncio.Queue | None = None
        self._queued_events = 0
        self._batcher: asyncio.Task | None = None
        self._flusher: LogFlusher | None = None
        self._stop = threading.Event()
        self._state_thread: threading.Thread | None = None
        self.categorical: tuple[str, ...] = ()

    # ---- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        import torch

        torch.set_num_threads(1)  # one core per worker; a one-row forward gains nothing from more
        self.watcher.start()
        self._preload_state()
        self._flusher = LogFlusher(self.log, self.config.log_flush_seconds).start()
        if self.platform is not None:
            self.platform.start()
        self._state_thread = threading.Thread(target=self._poll_state, name="state-watcher", daemon=True)
        self._state_thread.start()

    def _preload_state(self) -> None:
        try:
            newest = self.states.newest_partition()
            if newest is None:
                self.state_failure = f"asset {self.spec.name}/serving_state has no materialized partition"
                return
            self.states.get(newest)
            self.state_failure = None
        except PlatformError as exc:
            self.state_failure = str(exc)

    def _poll_state(self) -> None:
        while not self._stop.wait(self.config.poll_seconds):
            try:
                self.states.refresh()
                if self.state_failure is not None:
                    self._preload_state()
            except Exception as exc:
                self.metrics.errors.labels(self.spec.name, "state_refresh").inc()
                self.state_failure = f"serving state refresh: {exc}"

    def stop(self) -> None:
        self._stop.set()
        self.watcher.stop()
        if self.platform is not None:
            self.platform.stop()
        if self._flusher is not None:
            self._flusher.stop()
        self._executor.shutdown(wait=True)
        if self._state_thread is not None:
            self._state_thread.join(timeout=self.config.poll_seconds + 5)
        self.states.close()  # after the scoring thread and the state watcher are done with them

    def ready(self) -> tuple[bool, str]:
        snapshot, why = self.watcher.current()
        if snapshot is None:
            return False, why or "no model"
        if self.state_failure is not None and not self.states.loaded():
            return False, self.state_failure
        return True, f"serving {snapshot.version} (pointer {snapshot.pointer.sequence}); states {self.states.loaded()}"

    # ---- the request path ---------------------------------------------------------------------------
    async def predict(self, body: bytes, request_id: str) -> tuple[int, dict[str, Any], str]:
        """(HTTP status, response document, request kind: single | batch | unparsed)."""
        name, kind = self.spec.name, "unparsed"
        try:
            try:
                payload = json.loads(body)
            except (ValueError, UnicodeDecodeError) as exc:
                raise RequestError(400, "malformed_json", f"the body is not JSON: {exc}") from None
            rows, batch = parse_events(self.spec.events, payload, self.config.max_batch)
            kind = "batch" if batch else "single"
            if self._queued_events + len(rows) > self.config.max_queue_events:
                raise RequestError(503, "overloaded", f"{self._queued_events} events are waiting to be scored")
            pending = _Pending(rows, request_id, asyncio.get_running_loop().create_future())
            self._queued_events += len(rows)
            await self._ensure_batcher().put(pending)
            try:
                await pending.future
            finally:
                self._queued_events -= len(rows)
            if pending.error is not None:
                raise pending.error
            assert pending.result is not None
        except RequestError as exc:
            self.metrics.errors.labels(name, exc.reason).inc()
            return exc.status, {"request_id": request_id, **exc.body()}, kind
        result = pending.result
        self.metrics.batch_size.labels(name).observe(len(rows))
        for column, count in pending.oov.items():
            self.metrics.oov.labels(name, column).inc(count)
        for p in result["predictions"]:
            self.metrics.predictions.labels(name, p["model_version"], "positive" if p["decision"] else "negative").inc()
        return 200, result, kind

    def _ensure_batcher(self) -> asyncio.Queue:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._batcher = asyncio.get_running_loop().create_task(self._batch_loop())
        return self._queue

    async def _batch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._queue is not None
        carry: list[_Pending] = []
        later: list[_Pending] = []
        while True:
            batch = [carry.pop(0) if carry else await self._queue.get()]
            keys, events = self._keys(batch[0]), len(batch[0].rows)
            while (carry or not self._queue.empty()) and events < self.config.max_batch:
                item = carry.pop(0) if carry else self._queue.get_nowait()
                mine = self._keys(item)
                if keys & mine:  # the same event twice in one batch: score it in the next one
                    later.append(item)
                    continue
                batch.append(item)
                keys |= mine
                events += len(item.rows)
            carry[:0] = later
            later = []
            try:
                await loop.run_in_executor(self._executor, self._score, batch)
            except Exception as exc:  # never a wrong answer: the batch fails with the reason
                for item in batch:
                    item.error = RequestError(500, "internal_error", f"{type(exc).__name__}: {exc}")
            for item in batch:
                if not item.future.done():
                    item.future.set_result(None)

    def _keys(self, item: _Pending) -> set[tuple]:
        cols = self.spec.event_id_columns
        return {tuple(row[c] for c in cols) for row in item.rows}

    def _score(self, batch: list[_Pending]) -> None:
        """Score every request of the batch with one model snapshot (runs on the scoring thread)."""
        import polars as pl

        from resources.sources import empty_frame, with_event_time

        snapshot, why = self.watcher.current()
        if snapshot is None:
            for item in batch:
                item.error = RequestError(503, "no_model", why or "no model is loaded")
            return
        table = self.spec.events
        schema = empty_frame(table).schema
        owner = [i for i, item in enumerate(batch) for _ in item.rows]
        first = {}
        for r, o in enumerate(owner):
            first.setdefault(o, r)
        frame = with_event_time(pl.DataFrame([row for item in batch for row in item.rows],
                                             schema={c: schema[c] for c in table.columns}, orient="row"),
                                table, self.spec).with_row_index(ROW)
        failed: dict[int, RequestError] = {}
        rule = f"event_time({', '.join(table.event_time.columns)} readable)" if table.event_time else "event_time"
        partitions = frame.get_column(PARTITION_COLUMN).to_list()
        for r, partition in enumerate(partitions):
            if partition is None and owner[r] not in failed:
                failed[owner[r]] = RequestError(422, "invalid_event", f"event {r - first[owner[r]]}: {rule}", [
                    Problem(r - first[owner[r]], table.event_time.columns[0] if table.event_time else None, rule,
                            "the event time cannot be read")])
        event_of_row: dict[int, tuple[int, int]] = {}  # row -> (features frame, row in it)
        frames: list[pl.DataFrame] = []
        state_of: list[str] = []  # the serving state partition each frame was computed with
        state_ids: list[int | None] = []  # ... and the storage id of its materialization
        groups: dict[date, list[int]] = {}
        for r, partition in enumerate(partitions):
            if partition is not None and owner[r] not in failed:
                groups.setdefault(partition, []).append(r)
        for partition, rows in groups.items():
            try:
                state = self.states.get(partition.isoformat())
            except MissingDataError as exc:
                for o in {owner[r] for r in rows}:
                    failed.setdefault(o, RequestError(503, "no_state", str(exc)))
                continue
            feats, broken = state.compute(frame[rows])
            for k, (r, rules) in enumerate(zip(feats.get_column(ROW).to_list(), broken, strict=True)):
                if rules and owner[r] not in failed:
                    failed[owner[r]] = RequestError(422, "invalid_event", f"event {r - first[owner[r]]}: rule(s) "
                                                    f"{rules} broken", [Problem(r - first[owner[r]], None,
                                                                                f"rule({n})", "the table's rule "
                                                                                f"{n} is false for this event")
                                                                        for n in rules])
                event_of_row[r] = (len(frames), k)
            frames.append(feats)
            state_of.append(state.partition)
            state_ids.append(state.storage_id)
        scored = [self._forward(snapshot, f) for f in frames]
        scored_at, log_rows = now_iso(), []
        for i, item in enumerate(batch):
            if i in failed:
                item.error = failed[i]
                continue
            out = []
            for r in (r for r, o in enumerate(owner) if o == i):
                f, k = event_of_row[r]
                event_id, partition, probability, oov = scored[f][k]
                for c in oov:
                    item.oov[c] = item.oov.get(c, 0) + 1
                pid, decision = f"{snapshot.version}/{event_id}", probability >= snapshot.threshold
                out.append({"event_id": event_id, "partition_date": partition, "prediction_id": pid,
                            "model_version": snapshot.version, "probability": probability, "decision": decision,
                            "oov_columns": oov, "state_partition": state_of[f]})
                log_rows.append({"event_id": event_id, "partition_date": partition, "prediction_id": pid,
                                 "model_version": snapshot.version, "probability": probability,
                                 "predicted_positive": decision, "source": SOURCE, "request_id": item.request_id,
                                 "scored_at": scored_at, "state_partition": state_of[f],
                                 "state_storage_id": state_ids[f], "pointer_sequence": snapshot.pointer.sequence})
            item.result = {"request_id": item.request_id, "model_version": snapshot.version,
                           "pointer_sequence": snapshot.pointer.sequence, "threshold": snapshot.threshold,
                           "predictions": out}
        self.log.append(log_rows)

    @staticmethod
    def _forward(snapshot: ModelSnapshot, feats: Any) -> list[tuple[str, str, float, list[str]]]:
        """(event id, partition, probability, out-of-vocabulary columns) per feature row."""
        prob = snapshot.model.score(feats).tolist()
        cats = {c: feats.get_column(c).cast(str).to_list() for c in snapshot.model.preprocessor.categorical}
        ids = feats.get_column(compute.EVENT_ID).to_list()
        parts = [d.isoformat() for d in feats.get_column(compute.PARTITION).to_list()]
        return [(ids[k], parts[k], float(prob[k]),
                 [c for c, values in cats.items()
                  if values[k] is not None and values[k] not in snapshot.vocabularies[c]])
                for k in range(feats.height)]


def create_app(spec: UseCaseSpec, instance: Any, lakehouse: Any, registry: Any, config: ServingConfig | None = None,
               check_keys: list[Any] | None = None, start: bool = True) -> Any:
    """The FastAPI app of one use case. `start`: start the watchers on app startup (lifespan)."""
    from contextlib import asynccontextmanager

    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    service = Service(spec, instance, lakehouse, registry, config, check_keys)

    @asynccontextmanager
    async def lifespan(_app):
        if start:
            await asyncio.get_running_loop().run_in_executor(None, service.start)
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, service.stop)

    app = FastAPI(title=f"{spec.name} online scoring", description=spec.description, lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.state.service = service
    platform_registry = CollectorRegistry()
    if service.platform is not None:
        platform_registry.register(service.platform)

    @app.post(f"/v1/{spec.name}/predict")
    async def predict(request: Request) -> Response:
        start_t = time.perf_counter()
        request_id = (request.headers.get("x-request-id") or uuid.uuid4().hex)[:64]
        body = await request.body()
        status, doc, kind = await service.predict(body, request_id)
        headers = {"x-request-id": request_id}
        if status == 200:
            headers["x-model-version"] = doc["model_version"]
        response = Response(json.dumps(doc, separators=(",", ":")), status_code=status,
                            media_type="application/json", headers=headers)
        service.metrics.requests.labels(spec.name, str(status)).inc()
        service.metrics.latency.labels(spec.name, kind).observe(time.perf_counter() - start_t)
        return response

    @app.get("/healthz")
    async def healthz() -> Response:
        return PlainTextResponse("ok")

    @app.get("/readyz")
    async def readyz() -> Response:
        ok, why = service.ready()
        return JSONResponse({"ready": ok, "detail": why}, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        service.metrics.log_pending.labels(spec.name).set(service.log.pending())
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/metrics/platform")
    async def platform_metrics() -> Response:
        return Response(generate_latest(platform_registry), media_type=CONTENT_TYPE_LATEST)

    return app
