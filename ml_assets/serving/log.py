"""The online prediction log: every prediction the service returns, as data.

Rows are buffered and published as immutable JSONL segments, one file per flush and partition:
`<root>/<use case>/online_log/date=<partition>/<UTC time>-<random>.jsonl`, each written atomically by the
lakehouse with a `.sha256` file beside it (written after the segment: a segment without its checksum is
an unfinished flush and is not read). Nothing is ever appended to or rewritten in place, so the same
code works on object stores. The `online_predictions` asset lands a partition's segments as one
Parquet file (sha256 in its materialization), with the batch predictions' columns plus `source`,
`request_id` and `scored_at`, and the scoring's provenance: `state_partition` and `state_storage_id`
(the serving_state materialization whose features were scored) and `pointer_sequence` (the production
pointer of the model snapshot). Those three are nullable: a row written without them lands with nulls,
and `mlp trace` says "not recorded" rather than guessing.

Trade-off: a worker killed between flushes loses up to `flush_seconds` of log rows (the response was
already sent). The service flushes on shutdown, and every `flush_seconds` or `flush_rows`.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ml_assets.errors import IntegrityError

if TYPE_CHECKING:
    import polars as pl

LOG_FOLDER = "online_log"
SOURCE = "online"
# The batch predictions' columns (ml_assets/predictions/assets.py), then the online ones.
COLUMNS = ("event_id", "partition_date", "prediction_id", "model_version", "probability", "predicted_positive",
           "source", "request_id", "scored_at", "state_partition", "state_storage_id", "pointer_sequence")
PROVENANCE = ("state_partition", "state_storage_id", "pointer_sequence")  # nullable: null = not recorded


def log_folder(lakehouse: Any, use_case: str, partition: str) -> str:
    return lakehouse.uri(use_case, LOG_FOLDER, f"date={partition}")


class PredictionLog:
    """Buffers rows per partition; `flush()` publishes one segment per partition."""

    def __init__(self, lakehouse: Any, use_case: str, flush_rows: int = 5000, on_error: Any = None) -> None:
        self.lakehouse, self.use_case, self.flush_rows = lakehouse, use_case, flush_rows
        self._rows: dict[str, list[str]] = {}
        self._count = 0
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self.on_error = on_error
        self.segments_written = 0

    def append(self, rows: list[dict[str, Any]]) -> None:
        lines = [(r["partition_date"], json.dumps(r, separators=(",", ":"))) for r in rows]
        with self._lock:
            for partition, line in lines:
                self._rows.setdefault(partition, []).append(line)
            self._count += len(lines)
            full = self._count >= self.flush_rows
        if full:
            threading.Thread(target=self.flush, daemon=True).start()

    def pending(self) -> int:
        return self._count

    def flush(self) -> int:
        """Publish what is buffered; rows of a failed write stay buffered for the next flush."""
        with self._flush_lock:
            with self._lock:
                batches, self._rows, self._count = self._rows, {}, 0
            written = 0
            for partition, lines in sorted(batches.items()):
                name = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:12]}.jsonl"
                uri = f"{log_folder(self.lakehouse, self.use_case, partition)}/{name}"
                try:
                    receipt = self.lakehouse.write_bytes(uri, ("\n".join(lines) + "\n").encode())
                    self.lakehouse.write_bytes(uri + ".sha256", f"{receipt.sha256}  {name}\n".encode())
                    written += len(lines)
                    self.segments_written += 1
                except OSError as exc:
                    with self._lock:
                        self._rows.setdefault(partition, [])[:0] = lines
                        self._count += len(lines)
                    if self.on_error is not None:
                        self.on_error(exc)
            return written


class LogFlusher:
    """Flushes a log every `seconds` on a daemon thread."""

    def __init__(self, log: PredictionLog, seconds: float) -> None:
        self.log, self.seconds = log, seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-log-flusher", daemon=True)

    def start(self) -> LogFlusher:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                self.log.flush()
            except Exception as exc:  # never let the flusher die; the rows stay buffered or are reported
                if self.log.on_error is not None:
                    self.log.on_error(exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.log.flush()


def read_segments(lakehouse: Any, use_case: str, partition: str) -> tuple[pl.DataFrame, list[dict[str, str]]]:
    """Every published segment of a partition (each verified against its `.sha256`), as one frame in the
    log's columns; and the segments read (uri, sha256, rows)."""
    import polars as pl

    folder = log_folder(lakehouse, use_case, partition)
    frames, segments = [], []
    names = set(lakehouse.list(folder))
    for uri in sorted(n for n in names if n.endswith(".jsonl")):
        if uri + ".sha256" not in names:
            continue  # an unfinished flush (its checksum is written last)
        sidecar = lakehouse.read_bytes(uri + ".sha256", None, what="online log checksum").decode().split()
        if not sidecar:
            raise IntegrityError(f"online log segment {uri}: empty checksum file")
        data = lakehouse.read_bytes(uri, sidecar[0], what=f"online log of {use_case}, partition {partition}")
        frame = pl.read_ndjson(data, schema=schema())
        frames.append(frame)
        segments.append({"uri": uri, "sha256": sidecar[0], "rows": frame.height})
    out = pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=schema())
    return out.with_columns(pl.col("partition_date").str.to_date()) if "partition_date" in out.columns else out, \
        segments


def schema() -> dict[str, Any]:
    import polars as pl

    return {"event_id": pl.String, "partition_date": pl.String, "prediction_id": pl.String,
            "model_version": pl.String, "probability": pl.Float64, "predicted_positive": pl.Boolean,
            "source": pl.String, "request_id": pl.String, "scored_at": pl.String,
            "state_partition": pl.String, "state_storage_id": pl.Int64, "pointer_sequence": pl.Int64}


def landed_schema() -> dict[str, Any]:
    """The columns of a landed `online_predictions` partition (the log's, with a Date partition)."""
    import polars as pl

    return {**schema(), "partition_date": pl.Date}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")
