"""The lakehouse: Parquet and artifact files under one root (a local folder or any fsspec URI).

Every write is atomic and content-addressed: bytes are produced in memory, their sha256 recorded,
then published in one step (temp file in the same directory + rename on local disks; a single
object PUT on object stores, which S3/GCS make visible all at once). A reader therefore sees the
old file or the new one, never a partial one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

if TYPE_CHECKING:
    import polars as pl


class MissingDataError(FileNotFoundError):
    """An upstream partition or table that should have been materialized is absent."""


class ArtifactIntegrityError(RuntimeError):
    """A stored file does not match the sha256 recorded when it was written."""


@dataclass(frozen=True)
class WriteReceipt:
    uri: str
    sha256: str
    size_bytes: int
    rows: int | None = None


def default_root() -> str:
    return os.environ.get("ML_LAKEHOUSE_ROOT", os.path.join(os.getcwd(), ".lakehouse"))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LakehouseResource(dg.ConfigurableResource):
    """Where every table and artifact of the platform lives."""

    root: str = Field(default_factory=default_root, description="Local folder or fsspec URI (s3://...).")

    # ---- paths -------------------------------------------------------------------------------
    def uri(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def partition_uri(self, use_case: str, asset: str, partition: str) -> str:
        return self.uri(use_case, asset, f"date={partition}.parquet")

    def _fs(self):
        from fsspec.core import url_to_fs

        fs, _ = url_to_fs(self.root)
        return fs

    def _is_local(self) -> bool:
        return "://" not in self.root or self.root.startswith("file://")

    # ---- bytes -------------------------------------------------------------------------------
    def write_bytes(self, uri: str, data: bytes) -> WriteReceipt:
        """Publish `data` at `uri` atomically and return its content hash."""
        if self._is_local():
            path = uri.removeprefix("file://")
            directory = os.path.dirname(path)
            os.makedirs(directory, exist_ok=True)
            tmp = os.path.join(directory, f".tmp-{uuid.uuid4().hex}-{os.path.basename(path)}")
            try:
                with open(tmp, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
        else:
            self._fs().pipe_file(uri, data)
        return WriteReceipt(uri=uri, sha256=sha256_bytes(data), size_bytes=len(data))

    def read_bytes(self, uri: str, expected_sha256: str | None = None) -> bytes:
        if self._is_local():
            with open(uri.removeprefix("file://"), "rb") as handle:
                data = handle.read()
        else:
            data = self._fs().cat_file(uri)
        if expected_sha256 is not None and sha256_bytes(data) != expected_sha256:
            raise ArtifactIntegrityError(
                f"{uri}: sha256 {sha256_bytes(data)[:12]}... does not match the recorded "
                f"{expected_sha256[:12]}...; the file was modified or truncated after it was written"
            )
        return data

    def exists(self, uri: str) -> bool:
        if self._is_local():
            return os.path.exists(uri.removeprefix("file://"))
        return self._fs().exists(uri)

    def list(self, uri: str) -> list[str]:
        if self._is_local():
            path = uri.removeprefix("file://")
            if not os.path.isdir(path):
                return []
            return sorted(os.path.join(path, n) for n in os.listdir(path) if not n.startswith(".tmp-"))
        fs = self._fs()
        return sorted(p for p in fs.ls(uri, detail=False) if ".tmp-" not in p) if fs.exists(uri) else []

    # ---- tables ------------------------------------------------------------------------------
    def write_parquet(self, uri: str, frame: pl.DataFrame) -> WriteReceipt:
        buffer = io.BytesIO()
        frame.write_parquet(buffer, compression="zstd", statistics=True)
        receipt = self.write_bytes(uri, buffer.getvalue())
        return WriteReceipt(receipt.uri, receipt.sha256, receipt.size_bytes, rows=frame.height)

    def write_parquet_content_addressed(self, folder_uri: str, frame: pl.DataFrame) -> WriteReceipt:
        """Immutable snapshot named by its own sha256: never overwritten by a later write."""
        buffer = io.BytesIO()
        frame.write_parquet(buffer, compression="zstd", statistics=True)
        data = buffer.getvalue()
        uri = f"{folder_uri}/{sha256_bytes(data)[:20]}.parquet"
        if not self.exists(uri):
            self.write_bytes(uri, data)
        return WriteReceipt(uri, sha256_bytes(data), len(data), rows=frame.height)

    def read_parquet(self, uri: str, columns: list[str] | None = None) -> pl.DataFrame:
        import polars as pl

        return pl.read_parquet(io.BytesIO(self.read_bytes(uri)), columns=columns)

    def read_partitions(
        self,
        use_case: str,
        asset: str,
        partitions: list[str],
        *,
        columns: list[str] | None = None,
        missing_ok: bool = False,
    ) -> pl.DataFrame:
        """Concatenate daily partitions; a missing one is an error naming it (unless missing_ok)."""
        import polars as pl

        uris = [self.partition_uri(use_case, asset, p) for p in partitions]
        present = [u for u in uris if self.exists(u)]
        if not missing_ok and len(present) != len(uris):
            missing = [p for p, u in zip(partitions, uris, strict=True) if u not in present]
            raise MissingDataError(
                f"asset {use_case}/{asset}: partition(s) {missing[:5]}{'...' if len(missing) > 5 else ''} "
                f"not materialized under {self.uri(use_case, asset)}; materialize them first"
            )
        if not present:
            return pl.DataFrame()
        if self._is_local():
            return pl.read_parquet([u.removeprefix("file://") for u in present], columns=columns)
        return pl.concat([self.read_parquet(u, columns) for u in present], how="vertical")

    # ---- serialization of writers ---------------------------------------------------------------
    @contextlib.contextmanager
    def partition_lock(self, use_case: str, asset: str, partitions: list[str], timeout_s: float = 600):
        """Serialize runs that write the same partitions (exclusive flock per partition, sorted to
        avoid deadlock). Local roots only: on object stores the queued run coordinator's per-partition
        tag limit (deploy/ and dagster.yaml) does this job."""
        if not self._is_local():
            yield 0.0
            return
        import fcntl
        import time

        folder = os.path.join(self.root.removeprefix("file://"), ".locks", use_case, asset)
        os.makedirs(folder, exist_ok=True)
        handles, start = [], time.monotonic()
        try:
            for partition in sorted(set(partitions)):
                handle = open(os.path.join(folder, f"{partition}.lock"), "w")  # noqa: SIM115
                handles.append(handle)
                while True:
                    try:
                        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError as busy:
                        if time.monotonic() - start > timeout_s:
                            message = f"{use_case}/{asset} partition {partition} is locked by another run"
                            raise TimeoutError(message) from busy
                        time.sleep(0.05)
            yield time.monotonic() - start
        finally:
            for handle in handles:
                handle.close()

    # ---- small JSON documents ----------------------------------------------------------------
    def write_json(self, uri: str, document: Any) -> WriteReceipt:
        data = json.dumps(document, indent=2, sort_keys=True, default=str).encode()
        return self.write_bytes(uri, data)

    def read_json(self, uri: str) -> Any:
        return json.loads(self.read_bytes(uri))
