"""The history state of online scoring, and online features from the one feature query.

Batch features are `feature_query(spec)`: history relations (deduplicated lookups, trailing label rates
per partition and key) computed from all inputs, then one SELECT of the events joined to them. The
`serving_state` asset runs the same history SQL for one partition `p` (labels known by `p`, the
dimension tables, `p`'s own rows of partitioned lookups) and stores exactly the rows of each joined
relation an event of `p` can join to. Online, `OnlineFeatures` holds those relations as DuckDB tables
under the same names, and runs the same SELECT (`FeatureQuery.select`) over a relation `events` holding
the incoming events, with their id and partition from `base_sql`. There is no second feature
implementation: the service only chooses the rows the SQL reads.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, replace
from datetime import date
from typing import TYPE_CHECKING, Any

from ml_assets.errors import IntegrityError, MissingDataError
from ml_assets.features import compute
from ml_assets.spec import UseCaseSpec

if TYPE_CHECKING:
    import polars as pl

STATE_FORMAT = "serving-state/1"
ROW = "__row"  # the caller's row number, passed through the feature query
ROW_RULE = "__rule_"


def joined_relations(spec: UseCaseSpec) -> list[str]:
    """The history relations the feature SELECT joins (what the state must hold)."""
    return [j.relation for j in compute.feature_query(spec).joins]


def build_state(spec: UseCaseSpec, partition: date, labels: Any, lookups: dict[str, Any]) -> dict[str, pl.DataFrame]:
    """The rows of every joined relation that events of `partition` can join, computed by the batch
    history SQL. `labels`: the label partitions the features of `partition` read (any superset works:
    the SQL filters by delay); `lookups`: table name -> rows (a partitioned table: `partition`'s rows)."""
    import polars as pl

    from ml_assets.spec import PARTITION_COLUMN

    query = compute.feature_query(spec)
    # The history SQL reads `events` only for the calendar's span: one row of the partition is enough.
    relations = {"events": pl.DataFrame({PARTITION_COLUMN: [partition]}), "labels": labels, **lookups}
    out = {}
    with compute._connect(spec, relations) as con:  # the batch path's own connection set-up
        for name, sql in query.history.items():
            con.execute(f"CREATE TEMP TABLE {name} AS {sql}")
        for join in query.joins:
            dated = join.relation in query.dated
            where = f" WHERE {compute.PARTITION} = DATE '{partition.isoformat()}'" if dated else ""
            out[join.relation] = con.sql(f"SELECT * FROM {join.relation}{where}").pl()
    return out


@dataclass(frozen=True)
class StateFile:
    relation: str
    uri: str
    sha256: str
    rows: int


@dataclass(frozen=True)
class StateManifest:
    """What one materialization of `serving_state[partition]` wrote (stored as JSON beside the files)."""

    use_case: str
    partition: str
    files: tuple[StateFile, ...]
    feature_sql_sha256: str  # the feature query the state was built for: a service refuses another one

    def to_json(self) -> bytes:
        return json.dumps({"format": STATE_FORMAT, "use_case": self.use_case, "partition": self.partition,
                           "feature_sql_sha256": self.feature_sql_sha256,
                           "files": [f.__dict__ for f in self.files]}, indent=2, sort_keys=True).encode()

    @classmethod
    def parse(cls, data: bytes, where: str) -> StateManifest:
        try:
            doc = json.loads(data)
            if doc.get("format") != STATE_FORMAT:
                raise ValueError(f"format {doc.get('format')!r}")
            return cls(doc["use_case"], doc["partition"], tuple(StateFile(**f) for f in doc["files"]),
                       doc["feature_sql_sha256"])
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"{where}: not a serving-state manifest ({exc})") from None


def feature_sql_sha256(spec: UseCaseSpec) -> str:
    import hashlib

    return hashlib.sha256(compute.feature_sql(spec).encode()).hexdigest()


def load_state(spec: UseCaseSpec, instance: Any, lakehouse: Any, partition: str) -> tuple[Any, dict[str, pl.DataFrame]]:
    """The recorded state of `partition` (receipt, relation frames): the manifest verified against the
    sha256 the materialization recorded, each file against the manifest's sha256."""
    from ml_assets import lineage
    from ml_assets.keys import UseCaseKeys

    key = UseCaseKeys(spec.name).serving_state
    found = lineage.recorded_partitions(instance, key, [partition])
    if partition not in found:
        raise MissingDataError(f"asset {key.to_user_string()}, partition {partition}: not materialized "
                               f"(run the {spec.name}__serving job for it)")
    receipt = found[partition]
    manifest = StateManifest.parse(lineage.verify_recorded(lakehouse, receipt), receipt.uri)
    if manifest.feature_sql_sha256 != feature_sql_sha256(spec):
        raise IntegrityError(f"asset {key.to_user_string()}, partition {partition}: built for another feature "
                             "query than this code's; re-materialize it")
    frames = {f.relation: lakehouse.read_parquet(f.uri, f.sha256, what=f"serving state {partition} {f.relation}")
              for f in manifest.files}
    missing = set(joined_relations(spec)) - set(frames)
    if missing:
        raise IntegrityError(f"serving state {partition}: relation(s) {sorted(missing)} missing")
    return receipt, frames


class OnlineFeatures:
    """One partition's state as DuckDB tables, and the batch feature SELECT over incoming events.

    One connection for the process (a connection costs ~10 ms to open here); queries on it are
    serialized by a lock (a worker scores on one thread anyway)."""

    def __init__(self, spec: UseCaseSpec, partition: str, frames: dict[str, pl.DataFrame], storage_id: int | None):
        import duckdb

        self.spec, self.partition, self.storage_id = spec, partition, storage_id
        self._lock = threading.Lock()
        self._con = duckdb.connect()
        self._con.execute("SET threads TO 1")
        for name, frame in frames.items():
            arrow = frame.to_arrow()  # noqa: F841 - read by name by DuckDB's replacement scan
            self._con.execute(f"CREATE TABLE {name} AS SELECT * FROM arrow")
        # `events` is a view over the request's rows (registered as `events_in` per call) adding the table's SQL
        # row rules; the feature SELECT is the batch one plus two pass-through columns (row number, rule
        # flags): one query per call (a DuckDB query costs ~5-7 ms here whatever the rows).
        from resources.sources import empty_frame

        self.rule_columns = [f"{ROW_RULE}{i}" for i in range(len(spec.events.rules))]
        rules = "".join(f", CAST(({r.sql}) AS BOOLEAN) AS {c}" for r, c in zip(spec.events.rules, self.rule_columns,
                                                                              strict=True))
        self._con.register("events_in", empty_frame(spec.events).with_row_index(ROW).to_arrow())
        self._con.execute(f"CREATE VIEW events AS SELECT *{rules} FROM events_in")
        self._con.unregister("events_in")
        query = compute.feature_query(spec)
        query = replace(query, columns=[*query.columns, f"e.{ROW}", *(f"e.{c}" for c in self.rule_columns)])
        self._sql = f"WITH base AS ({compute.base_sql(spec)})\n{query.select(ordered=False)}"
        # The output schema once (on no rows); per call `execute(...).fetchall()` into that schema: 2-3 ms less
        # per query here than the relational API's `.sql(...).pl()` (which binds the query a second time).
        self._con.register("events_in", empty_frame(spec.events).with_row_index(ROW).to_arrow())
        self._schema = self._con.sql(self._sql).pl().schema
        self._con.unregister("events_in")

    def compute(self, events: pl.DataFrame) -> tuple[pl.DataFrame, list[list[str]]]:
        """(features of `events` in no particular order, with `__row` (the row's `__row` in `events`); the names
        of the table's SQL rules each output row breaks)."""
        with self._lock:
            self._con.register("events_in", events.to_arrow())
            try:
                import polars as pl

                out = pl.DataFrame(self._con.execute(self._sql).fetchall(), schema=self._schema, orient="row")
            finally:
                self._con.unregister("events_in")
        flags = [out.get_column(c).to_list() for c in self.rule_columns]
        broken = [[r.name for r, f in zip(self.spec.events.rules, flags, strict=True) if not f[k]]
                  for k in range(out.height)]
        return out.drop(self.rule_columns), broken

    def close(self) -> None:
        self._con.close()
