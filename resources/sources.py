"""Raw sources, per use case and per table: a landing folder, or the table's declared source.

* Landing folder (`spec.landing_uri`, else `$ML_LANDING_URI/<use case>`): one file per table and
  partition, `<landing>/<table>/<partition>.parquet|.csv`, one per dimension, `<landing>/<table>.parquet|.csv`.
  A producer may deliver a checksum beside a file (`<file>.sha256`, the hex digest first) or a
  `SHA256SUMS` file in the table's folder (`sha256sum` format); it is verified before the file is read.
* Declared source (`tables.<t>.source`): one file, a folder or a glob (local or fsspec), or a file in
  an installed package; rows are routed to partitions by their event time.

Every frame comes back cast to the contract's dtypes with `_event_time` (local) and `_partition_date`
added; every file read is reported with its sha256 (recorded in the raw materialization). A file that
cannot be read, decoded or cast raises `SourceReadError` naming the table, file, column and rule.
"""

from __future__ import annotations

import glob as globlib
import hashlib
import importlib.metadata
import importlib.util
import io
import lzma
import os
import zipfile
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

from ml_assets.errors import SourceReadError
from ml_assets.spec import EVENT_TIME_COLUMN, PARTITION_COLUMN

if TYPE_CHECKING:
    import polars as pl

    from ml_assets.spec import TableSpec, UseCaseSpec

_POLARS_DTYPES = {"int64": "Int64", "float64": "Float64", "string": "String", "bool": "Boolean", "date": "Date"}
_NULL_VALUES = ["NA", ""]
EXTS = (".parquet", ".csv")


@dataclass(frozen=True)
class SourceFile:
    """A file the platform read from outside: where, its sha256, and how its integrity was known."""

    uri: str
    sha256: str
    checksum: str  # "verified: <how>" or "none delivered"
    rows: int
    package_version: str | None = None

    def metadata(self) -> dict[str, str | int]:
        out: dict[str, str | int] = {"source_file": self.uri, "source_sha256": self.sha256,
                                     "source_checksum": self.checksum, "source_rows": self.rows}
        if self.package_version:
            out["source_package_version"] = self.package_version
        return out


@dataclass
class SourceBatch:
    """Rows read for some partitions (or a dimension), with the files they came from."""

    frame: pl.DataFrame
    files: dict[str, SourceFile] = field(default_factory=dict)  # partition ('' for a dimension) -> file
    extra_columns: dict[str, list[str]] = field(default_factory=dict)  # file -> undeclared columns
    # Bulk sources: rows of the file that belong to no partition of the use case (rule -> count).
    unroutable: dict[str, int] = field(default_factory=dict)


def package_dir(package: str) -> str:
    """The folder of an installed package, found without importing the package itself."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SourceReadError(f"package {package!r} is not installed; `pip install {package}`")
    return next(iter(spec.submodule_search_locations))


class RawSourceResource(dg.ConfigurableResource):
    """Reads source tables for every use case."""

    landing_root: str | None = Field(None, description="Root of landing folders: `<root>/<use case>/...`; "
                                     "a use case's own `landing_uri` wins.")

    def landing_for(self, spec: UseCaseSpec) -> str | None:
        if spec.landing_uri:
            return spec.landing_uri.rstrip("/")
        return f"{self.landing_root.rstrip('/')}/{spec.name}" if self.landing_root else None

    # ---- reading -----------------------------------------------------------------------------------
    def read(self, spec: UseCaseSpec, table: TableSpec, partitions: list[date] | None = None) -> SourceBatch:
        """Rows of `table`: of `partitions` for a partitioned table (in any order), or all of a dimension."""
        landing = self.landing_for(spec)
        if landing is not None:
            return self._read_landing(spec, table, landing, partitions)
        if table.source is None:
            raise SourceReadError(f"table {table.name!r} has no source and no landing folder is configured")
        batch = read_bulk(spec, table)
        if partitions is None:
            return batch
        import polars as pl

        frame = batch.frame.filter(pl.col(PARTITION_COLUMN).is_in(partitions))
        return SourceBatch(frame, {p.isoformat(): next(iter(batch.files.values())) for p in partitions},
                           batch.extra_columns, batch.unroutable)

    def _read_landing(self, spec: UseCaseSpec, table: TableSpec, landing: str,
                      partitions: list[date] | None) -> SourceBatch:
        import polars as pl

        if partitions is None:
            path = find_file(f"{landing}/{table.name}")
            frame, info, extra = read_table_file(path, table, spec, checksum=delivered_checksum(path))
            return SourceBatch(frame, {"": info}, {path: extra} if extra else {})
        frames, files, extras = [], {}, {}
        for partition in partitions:
            key = partition.isoformat()
            if key in table.known_missing_partitions:
                continue  # the contract says this partition never comes
            path = find_file(f"{landing}/{table.name}/{key}")
            frame, files[key], extra = read_table_file(path, table, spec, checksum=delivered_checksum(path))
            if extra:
                extras[path] = extra
            # Rows are attributed to the partition of the file they came in: a row dated elsewhere is
            # quarantined there (rule partition_mismatch), never moved or dropped.
            frames.append(frame.with_columns(pl.lit(partition).alias("_delivered_partition")))
        if not frames:
            return SourceBatch(empty_frame(table, with_delivered=True), files, extras)
        return SourceBatch(pl.concat(frames, how="vertical"), files, extras)

    def landed_partitions(self, spec: UseCaseSpec, table: TableSpec, after: date, until: date) -> list[date]:
        """Partitions after `after` whose file for `table` is in the landing folder (sorted)."""
        from fsspec.core import url_to_fs

        landing = self.landing_for(spec)
        if landing is None:
            return []
        fs, _ = url_to_fs(landing)
        folder = f"{landing}/{table.name}"
        if not fs.exists(folder):
            return []
        found = set()
        for path in fs.ls(folder, detail=False):
            name = path.rsplit("/", 1)[-1]
            if not name.endswith(EXTS):
                continue
            try:
                key = date.fromisoformat(name.split(".")[0])
            except ValueError:
                continue
            if after < key <= until:
                found.add(key)
        return sorted(found)

    def location(self, spec: UseCaseSpec, table: TableSpec, partition: str | None = None) -> str:
        """Where a table's (partition's) rows come from, for messages."""
        landing = self.landing_for(spec)
        if landing is None:
            return source_uri(table)
        stem = f"{landing}/{table.name}" + (f"/{partition}" if partition else "")
        try:
            return find_file(stem)
        except SourceReadError:
            return f"{stem}.parquet"


# ---- files -------------------------------------------------------------------------------------------
def find_file(stem: str) -> str:
    from fsspec.core import url_to_fs

    fs, _ = url_to_fs(stem)
    for ext in EXTS:
        if fs.exists(stem + ext):
            return stem + ext
    raise SourceReadError(f"file {stem}.parquet (or .csv) not found: the data for this partition has not landed")


def delivered_checksum(path: str) -> str | None:
    """The sha256 a producer delivered for `path` (sidecar or SHA256SUMS), if any."""
    from fsspec.core import url_to_fs

    fs, _ = url_to_fs(path)
    sidecar = path + ".sha256"
    if fs.exists(sidecar):
        text = fs.cat_file(sidecar).decode(errors="replace").split()
        if not text:
            raise SourceReadError(f"checksum file {sidecar} is empty")
        return text[0].lower()
    sums = f"{path.rsplit('/', 1)[0]}/SHA256SUMS"
    if fs.exists(sums):
        name = path.rsplit("/", 1)[-1]
        for line in fs.cat_file(sums).decode(errors="replace").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].lstrip("*") == name:
                return parts[0].lower()
    return None


def _read_bytes(path: str) -> bytes:
    from fsspec.core import url_to_fs

    fs, _ = url_to_fs(path)
    try:
        return fs.cat_file(path)
    except FileNotFoundError:
        raise SourceReadError(f"file {path} not found: the data for this partition has not landed") from None


def verify(data: bytes, path: str, expected: str | None, how: str) -> tuple[str, str]:
    actual = hashlib.sha256(data).hexdigest()
    if expected is None:
        return actual, "none delivered"
    if actual != expected:
        raise SourceReadError(f"file {path} has sha256 {actual}, but its delivered checksum ({how}) says {expected}: "
                              "the file was damaged in transit or replaced; re-deliver it")
    return actual, f"verified ({how})"


def parse_file(data: bytes, path: str, file_format: str, encoding: str = "utf8") -> pl.DataFrame:
    """Bytes -> frame of strings (CSV) or native types (Parquet, pickle); every failure, Polars panics
    included, becomes a SourceReadError naming the file (and byte offset and column for bad text)."""
    import polars as pl

    if not data:
        raise SourceReadError(f"file {path} is empty (0 bytes)")
    try:
        if file_format == "parquet":
            return pl.read_parquet(io.BytesIO(data))
        if file_format == "pandas_pickle":
            return _read_pickle(data, path)
        if path.endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                name = next(n for n in archive.namelist() if n.endswith(".csv"))
                data = archive.read(name)
        text = _decode(data, path, encoding)
        return pl.read_csv(io.StringIO(text), infer_schema=False, null_values=_NULL_VALUES)
    except SourceReadError:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise SourceReadError(f"file {path} cannot be read as {file_format} ({type(exc).__name__}: {first}); "
                              "is it truncated or damaged?") from None


def _decode(data: bytes, path: str, encoding: str) -> str:
    try:
        return data.decode("utf-8" if encoding == "utf8" else "latin-1")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line_no = data.count(b"\n", 0, exc.start) + 1
        header = data[: data.find(b"\n")].decode("utf-8", errors="replace").split(",")
        col = data.count(b",", line_start, exc.start)
        column = header[col].strip() if col < len(header) else f"#{col + 1}"
        raise SourceReadError(
            f"file {path} is not valid UTF-8 at byte offset {exc.start} (line {line_no}, column {column!r}, "
            f"bytes {data[exc.start:exc.end]!r}); re-deliver it as UTF-8 or declare `encoding: latin1` "
            "in the table's source") from None


def _read_pickle(data: bytes, path: str) -> pl.DataFrame:
    """A pandas pickle from an installed package, whose sha256 was checked before this point."""
    import pandas as pd
    import polars as pl

    if path.endswith((".compress", ".xz", ".lzma")):
        data = lzma.decompress(data)
    frame = pd.read_pickle(io.BytesIO(data))
    return pl.from_pandas(frame.reset_index(drop=True))


def source_uri(table: TableSpec) -> str:
    source = table.source
    if source is None:
        return f"<no source for {table.name}>"
    if source.package:
        return os.path.join(package_dir(source.package), source.path or "")
    return source.uri or ""


def _bulk_paths(table: TableSpec) -> list[str]:
    from fsspec.core import url_to_fs

    uri = source_uri(table)
    if table.source and table.source.package:
        if not os.path.exists(uri):
            raise SourceReadError(f"table {table.name!r}: file {uri} is not in package {table.source.package!r}")
        return [uri]
    fs, _ = url_to_fs(uri)
    if any(ch in uri for ch in "*?["):
        paths = sorted(fs.glob(uri)) if "://" in uri else sorted(globlib.glob(uri))
        protocol = uri.split("://", 1)[0] + "://" if "://" in uri else ""
        paths = [p if "://" in p or not protocol else protocol + p for p in paths]
    elif fs.isdir(uri):
        paths = sorted(f"{uri.rstrip('/')}/{p.rsplit('/', 1)[-1]}" for p in fs.ls(uri, detail=False)
                       if p.endswith(EXTS))
    else:
        paths = [uri]
    if not paths:
        raise SourceReadError(f"table {table.name!r}: source {uri} matches no file")
    return paths


_BULK: dict[tuple, SourceBatch] = {}


def read_bulk(spec: UseCaseSpec, table: TableSpec) -> SourceBatch:
    """Every row of a table's declared source, routed by event time; conformed once per process and
    source state (a replay reads one partition at a time from the same year-long file)."""
    import polars as pl

    paths = _bulk_paths(table)
    key = (spec.name, spec.fingerprint("tables", "cadence", "timezone", "partitions_start", "partitions_end"),
           table.name, tuple(paths), tuple(_stat(p) for p in paths))
    if key in _BULK:
        return _BULK[key]
    frames, infos, extras = [], {}, {}
    for path in paths:
        pinned = table.source.sha256 if table.source else None
        frame, info, extra = read_table_file(path, table, spec, checksum=pinned, how="pinned in the use case")
        if table.source and table.source.package:
            info = SourceFile(info.uri, info.sha256, info.checksum, info.rows, _package_version(table.source.package))
        frames.append(frame)
        infos[path] = info
        if extra:
            extras[path] = extra
    frame = pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]
    unroutable: dict[str, int] = {}
    if table.partitioned:
        no_time = frame.filter(pl.col(PARTITION_COLUMN).is_null()).height
        outside = frame.filter(~pl.col(PARTITION_COLUMN).is_between(spec.partitions_start, spec.partitions_end)).height
        if no_time:
            unroutable[f"event_time({table.event_time.columns[0]} readable)"] = no_time
        if outside:
            unroutable[f"event_time_in_partitions({spec.partitions_start}..{spec.partitions_end})"] = outside
    batch = SourceBatch(frame, {"": _combined(infos)}, extras, unroutable)
    _BULK[key] = batch
    return batch


def _combined(infos: dict[str, SourceFile]) -> SourceFile:
    if len(infos) == 1:
        return next(iter(infos.values()))
    digest = hashlib.sha256("".join(f"{u}:{i.sha256};" for u, i in sorted(infos.items())).encode()).hexdigest()
    return SourceFile(f"{len(infos)} files: {', '.join(sorted(infos))[:400]}", digest, "per file: " + ", ".join(
        sorted({i.checksum for i in infos.values()})), sum(i.rows for i in infos.values()))


def _stat(path: str) -> tuple:
    from fsspec.core import url_to_fs

    fs, _ = url_to_fs(path)
    info = fs.info(path)
    return info.get("size"), info.get("mtime") or info.get("LastModified") or info.get("ETag")


def _package_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def read_table_file(path: str, table: TableSpec, spec: UseCaseSpec, *, checksum: str | None,
                    how: str = "delivered checksum") -> tuple[pl.DataFrame, SourceFile, list[str]]:
    """One source file: verified (if a checksum is known), parsed, conformed, event time added."""
    data = _read_bytes(path)
    sha, state = verify(data, path, checksum, how)
    fmt = table.source.file_format if table.source and path == source_uri(table) else (
        "parquet" if path.endswith(".parquet") else "csv")
    encoding = table.source.encoding if table.source else "utf8"
    raw = parse_file(data, path, fmt, encoding)
    frame, extra = conform(raw, table, path)
    if extra and table.extra_columns == "fail":
        raise SourceReadError(f"table {table.name!r}, file {path}: undeclared column(s) {extra} "
                              "(rule: extra_columns=fail)")
    frame = with_event_time(frame, table, spec)
    return frame, SourceFile(path, sha, state, frame.height), extra if table.extra_columns == "warn" else []


def with_event_time(frame: pl.DataFrame, table: TableSpec, spec: UseCaseSpec) -> pl.DataFrame:
    import polars as pl

    from ml_assets.raw.event_time import local_time_expr, partition_expr

    if table.event_time is None:
        return frame
    source_dtype = frame.schema.get(table.event_time.column) if table.event_time.column else None
    local = local_time_expr(table.event_time, spec.timezone, source_dtype)
    return frame.with_columns(local.alias(EVENT_TIME_COLUMN)).with_columns(
        partition_expr(pl.col(EVENT_TIME_COLUMN), spec.cadence).alias(PARTITION_COLUMN))


def empty_frame(table: TableSpec, *, with_delivered: bool = False) -> pl.DataFrame:
    import polars as pl

    schema = {c: getattr(pl, _POLARS_DTYPES[col.dtype]) for c, col in table.columns.items()}
    if table.partitioned:
        schema |= {EVENT_TIME_COLUMN: pl.Datetime("us"), PARTITION_COLUMN: pl.Date}
    if with_delivered:
        schema["_delivered_partition"] = pl.Date
    return pl.DataFrame(schema=schema)


def conform(frame: pl.DataFrame, table: TableSpec, path: str) -> tuple[pl.DataFrame, list[str]]:
    """Select and cast the contract's columns; name the file, column and rule on any mismatch.
    Returns the frame and the undeclared columns it held."""
    import polars as pl

    missing = [c for c in table.columns if c not in frame.columns]
    if missing:
        raise SourceReadError(f"table {table.name!r}, file {path}: missing column(s) {missing} "
                              f"(rule: schema; found {frame.columns})")
    extra = [c for c in frame.columns if c not in table.columns]
    exprs = []
    for name, col in table.columns.items():
        target = getattr(pl, _POLARS_DTYPES[col.dtype])
        source = frame.schema[name]
        if source == target:
            exprs.append(pl.col(name))
            continue
        expr = pl.col(name)
        numeric = col.dtype in ("int64", "float64")
        if source == pl.String and numeric:
            expr = expr.str.strip_chars().cast(pl.Float64, strict=False)
        elif numeric and source.is_numeric():
            expr = expr.cast(pl.Float64)
        cast = expr.cast(target, strict=False)
        broken = pl.col(name).is_not_null() & cast.is_null()
        if col.dtype == "int64" and numeric:  # 515.7 is not an integer, even if it casts to 515
            as_float = expr.cast(pl.Float64, strict=False)
            broken = broken | (as_float.is_not_null() & (as_float != as_float.floor()))
        bad = frame.filter(broken)
        if bad.height:
            examples = bad.get_column(name).head(3).to_list()
            raise SourceReadError(
                f"table {table.name!r}, file {path}, column {name!r}: {bad.height} value(s) are not "
                f"{col.dtype} (rule: dtype), e.g. {examples}"
            )
        exprs.append(cast.alias(name))
    return frame.select(exprs), extra
