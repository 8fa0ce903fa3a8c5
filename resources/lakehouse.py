"""The lakehouse: Parquet and artifact files under one root (a local folder or any fsspec URI).

Every write is atomic and hashed: bytes are produced in memory, their sha256 returned (callers
record it in Dagster metadata or a registry record), then published in one step (temp file in the
same directory + rename on local disks; one object PUT on object stores, which S3/GCS make visible
all at once). A reader sees the old file or the new one, never a partial one, and every read of a
platform-written file passes the sha256 recorded at write time: a flipped byte fails the read.

Local files and folders are owner-only by default (`file_mode`/`dir_mode`); temp files left by a
killed write are removed by the next write of the same file once they are 5 minutes old, and
never listed or read.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

from ml_assets.errors import IntegrityError, MissingDataError, SourceReadError

if TYPE_CHECKING:
    import polars as pl

TMP_PREFIX = ".tmp-"
STALE_TEMP_AGE_S = 300.0  # a temp file older than this belongs to a write that died


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


def read_parquet_bytes(data: bytes, where: str, columns: list[str] | None = None) -> pl.DataFrame:
    """Parse Parquet; a damaged file (Polars raises several types, some of them BaseException panics)
    becomes one error naming the file."""
    import polars as pl

    try:
        return pl.read_parquet(io.BytesIO(data), columns=columns)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        raise SourceReadError(f"file {where} cannot be read as Parquet ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


class LakehouseResource(dg.ConfigurableResource):
    """Where every table and artifact of the platform lives."""

    root: str = Field(default_factory=default_root, description="Local folder or fsspec URI (s3://...).")
    file_mode: int = Field(0o600, description="Permissions of local files the platform writes.")
    dir_mode: int = Field(0o700, description="Permissions of local folders the platform creates.")

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Every run process builds this resource once: it records which process runs the run, so a
        # run whose process dies can be found and marked failed (ml_assets/ops/liveness.py).
        from ml_assets.ops.liveness import record_worker

        record_worker(context)

    # ---- paths -------------------------------------------------------------------------------
    def uri(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def partition_uri(self, use_case: str, asset: str, partition: str, ext: str = "parquet") -> str:
        return self.uri(use_case, asset, f"date={partition}.{ext}")

    def _fs(self):
        from fsspec.core import url_to_fs

        fs, _ = url_to_fs(self.root)
        return fs

    def _is_local(self) -> bool:
        return "://" not in self.root or self.root.startswith("file://")

    def _local(self, uri: str) -> str:
        return uri.removeprefix("file://")

    def _makedirs(self, directory: str) -> None:
        missing = []
        while directory and not os.path.isdir(directory):
            missing.append(directory)
            directory = os.path.dirname(directory)
        for folder in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(folder, self.dir_mode)

    # ---- bytes -------------------------------------------------------------------------------
    def write_bytes(self, uri: str, data: bytes, *, exclusive: bool = False) -> WriteReceipt:
        """Publish `data` at `uri` atomically. `exclusive`: fail (FileExistsError) if `uri` exists, so
        two writers racing for the same name cannot both win (a compare-and-swap on local disks)."""
        if self._is_local():
            path = self._local(uri)
            directory, name = os.path.split(path)
            self._makedirs(directory)
            self._remove_stale_temp(directory, name, STALE_TEMP_AGE_S)
            tmp = os.path.join(directory, f"{TMP_PREFIX}{uuid.uuid4().hex}-{name}")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.file_mode)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                if exclusive:
                    os.link(tmp, path)  # atomic, and refuses an existing name
                else:
                    os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
        else:
            fs = self._fs()
            if exclusive and fs.exists(uri):
                raise FileExistsError(uri)
            fs.pipe_file(uri, data)
        return WriteReceipt(uri=uri, sha256=sha256_bytes(data), size_bytes=len(data))

    @staticmethod
    def _remove_stale_temp(directory: str, name: str, min_age_s: float) -> None:
        """Temp files of earlier, killed writes of the same file. Only old ones: exclusive writes (the
        pointer's compare-and-swap) race for one name on purpose, and a young temp file may be a live
        writer's (removing it made the loser of a race crash instead of being told it lost)."""
        suffix = f"-{name}"
        now = time.time()
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(directory):
                if entry.name.startswith(TMP_PREFIX) and entry.name.endswith(suffix):
                    with contextlib.suppress(FileNotFoundError):
                        if now - entry.stat().st_mtime >= min_age_s:
                            os.remove(entry.path)

    def read_bytes(self, uri: str, expected_sha256: str | None, *, what: str = "") -> bytes:
        """The file's bytes, verified against the sha256 recorded when it was written.

        `expected_sha256=None` is only for files the platform did not write (landed source files
        without a checksum); `what` names the asset/partition for the error message.
        """
        try:
            if self._is_local():
                with open(self._local(uri), "rb") as handle:
                    data = handle.read()
            else:
                data = self._fs().cat_file(uri)
        except FileNotFoundError:
            raise MissingDataError(f"{what + ': ' if what else ''}file {uri} does not exist") from None
        if expected_sha256 is not None:
            actual = sha256_bytes(data)
            if actual != expected_sha256:
                raise IntegrityError(
                    f"{what + ': ' if what else ''}file {uri} has sha256 {actual}, but {expected_sha256} was "
                    "recorded when it was written: the file was modified or truncated; restore it or "
                    "re-materialize it"
                )
        return data

    def exists(self, uri: str) -> bool:
        if self._is_local():
            return os.path.exists(self._local(uri))
        return self._fs().exists(uri)

    def list(self, uri: str) -> list[str]:
        if self._is_local():
            path = self._local(uri)
            if not os.path.isdir(path):
                return []
            return sorted(os.path.join(path, n) for n in os.listdir(path) if not n.startswith(TMP_PREFIX))
        fs = self._fs()
        return sorted(p for p in fs.ls(uri, detail=False) if TMP_PREFIX not in p) if fs.exists(uri) else []

    # ---- tables ------------------------------------------------------------------------------
    @staticmethod
    def parquet_bytes(frame: pl.DataFrame) -> bytes:
        buffer = io.BytesIO()
        frame.write_parquet(buffer, compression="zstd", statistics=True)
        return buffer.getvalue()

    def write_parquet(self, uri: str, frame: pl.DataFrame) -> WriteReceipt:
        receipt = self.write_bytes(uri, self.parquet_bytes(frame))
        return WriteReceipt(receipt.uri, receipt.sha256, receipt.size_bytes, rows=frame.height)

    def write_content_addressed(self, folder_uri: str, data: bytes, ext: str) -> WriteReceipt:
        """Immutable file named by its own sha256: never overwritten by a later write."""
        sha = sha256_bytes(data)
        uri = f"{folder_uri}/{sha[:20]}.{ext}"
        if not self.exists(uri):
            self.write_bytes(uri, data)
        return WriteReceipt(uri, sha, len(data))

    def read_parquet(self, uri: str, expected_sha256: str, columns: list[str] | None = None, *,
                     what: str = "") -> pl.DataFrame:
        return read_parquet_bytes(self.read_bytes(uri, expected_sha256, what=what), uri, columns)

    def read_verified_frames(self, receipts: list[Any], columns: list[str] | None = None) -> pl.DataFrame:
        """Concatenate Parquet files given by receipts (uri + sha256), each verified before parsing."""
        import polars as pl

        frames = [self.read_parquet(r.uri, r.sha256, columns, what=f"asset {r.asset}, partition {r.partition}")
                  for r in receipts]
        frames = [f for f in frames if f.width]
        return pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()

    # ---- serialization of writers ---------------------------------------------------------------
    @contextlib.contextmanager
    def partition_lock(self, use_case: str, asset: str, partitions: list[str], timeout_s: float = 600):
        """Serialize runs that write the same partitions (exclusive flock per partition, sorted to
        avoid deadlock; the kernel releases it when the holder dies). Local roots only: on object
        stores the queued run coordinator's per-partition tag limit (deploy/ and dagster.yaml) does this job."""
        if not self._is_local():
            yield 0.0
            return
        import fcntl

        folder = os.path.join(self._local(self.root), ".locks", use_case, asset)
        self._makedirs(folder)
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
    def write_json(self, uri: str, document: Any, *, exclusive: bool = False) -> WriteReceipt:
        data = json.dumps(document, indent=2, sort_keys=True, default=str).encode()
        return self.write_bytes(uri, data, exclusive=exclusive)

