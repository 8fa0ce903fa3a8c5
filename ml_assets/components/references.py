"""Load-time checks of a use case's cross-references, before any run.

The schema (types, required fields, spans) is checked by the spec models; this checks what the
fields say about each other: every column named in a key, slice or input exists, and every SQL
expression compiles in DuckDB against empty tables of the declared schemas. Every problem is
reported at once, each naming the file, the field and the reason. Pure: DuckDB, no Dagster. A passing
SQL verdict is memoized by the sha256 of the exact statements bound and DuckDB's version (see `MEMO_ENV`).
"""

from __future__ import annotations

import atexit
import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

from ml_assets.features import compute
from ml_assets.spec import EVENT_TIME_COLUMN, PARTITION_COLUMN, UseCaseSpec
from ml_assets.spec import cadence as cad

_SQL_TYPES = {"int64": "BIGINT", "float64": "DOUBLE", "string": "VARCHAR", "bool": "BOOLEAN", "date": "DATE"}


class UseCaseError(ValueError):
    """A use case whose fields contradict each other; the message lists every problem."""


def check_references(spec: UseCaseSpec, source: str | Path = "<spec>") -> None:
    problems = list(_problems(spec))
    if problems:
        lines = "\n".join(f"  {source}: {field}: {reason}" for field, reason in problems)
        raise UseCaseError(f"use case {spec.name!r} is not valid ({len(problems)} problem(s)):\n{lines}")


def _problems(spec: UseCaseSpec):
    yield from _table_problems(spec)
    events = spec.tables.get(spec.events_table)
    if events is None:
        yield "events_table", f"{spec.events_table!r} is not a table (tables: {sorted(spec.tables)})"
        return
    if not events.partitioned:
        yield "events_table", f"table {spec.events_table!r} has no event_time: the events table must be partitioned"
        return
    for c in spec.event_id_columns:
        if c not in events.columns:
            yield "event_id_columns", f"{c!r} is not a column of {spec.events_table!r}"
    for c in spec.entity_columns:
        if c not in spec.event_id_columns:
            yield "entity_columns", f"{c!r} is not one of event_id_columns {spec.event_id_columns}"
    for c in spec.label.group_columns:
        if c not in events.columns:
            yield "label.group_columns", f"{c!r} is not a column of {spec.events_table!r}"
    for i, rate in enumerate(spec.features.rolling_rates):
        for k in rate.keys:
            if k not in spec.label.group_columns:
                yield (f"features.rolling_rates[{i}].keys", f"{k!r} is not in label.group_columns "
                       f"{spec.label.group_columns} (rates are computed from the labels table)")
        if any(int(w) < 1 for w in rate.windows):
            yield f"features.rolling_rates[{i}].windows", "a window needs at least one partition"
    for i, lookup in enumerate(spec.features.lookups):
        table = spec.tables.get(lookup.table)
        if table is None:
            yield f"features.lookups[{i}].table", f"{lookup.table!r} is not a table"
            continue
        for ec, tc in lookup.join.items():
            if ec not in events.columns:
                yield f"features.lookups[{i}].join", f"{ec!r} is not a column of {spec.events_table!r}"
            if tc not in table.columns:
                yield f"features.lookups[{i}].join", f"{tc!r} is not a column of {lookup.table!r}"
    yield from _sql_problems(spec)
    yield from _output_problems(spec)
    yield from _window_problems(spec)


def _table_problems(spec: UseCaseSpec):
    first, last = spec.partitions_start, spec.partitions_end
    for name, table in spec.tables.items():
        where = f"tables.{name}"
        if table.event_time is not None:
            for c in table.event_time.columns:
                if c not in table.columns:
                    yield f"{where}.event_time", f"{c!r} is not a column of the table"
        for c in table.primary_key:
            if c not in table.columns:
                yield f"{where}.primary_key", f"{c!r} is not a column of the table"
        if table.rows_per_partition is not None:
            bounds = table.rows_per_partition
            if len(bounds) != 2 or bounds[0] > bounds[1]:
                yield f"{where}.rows_per_partition", f"{bounds} is not [min, max]"
        for key in table.known_missing_partitions:
            try:
                day = date.fromisoformat(key)
            except ValueError:
                yield f"{where}.known_missing_partitions", f"{key!r} is not a date"
                continue
            if cad.floor(day, spec.cadence) != day or not first <= day <= last:
                yield f"{where}.known_missing_partitions", f"{key} is not a {spec.cadence} partition in {first}..{last}"
        if table.source is None and not table.partitioned:
            yield f"{where}.source", "a dimension table needs a source"


# ---- SQL: every expression binds in DuckDB against empty tables of the declared schemas ------------------
# A verdict is a pure function of the statements DuckDB binds and of DuckDB's version, so a passing verdict is
# memoized under the sha256 of both (a file per key): every process that loads the code location (webserver,
# daemon, each run worker) would otherwise pay ~100 ms for DuckDB's import and the binds. Failures are never
# memoized. `ML_SQL_CHECK_MEMO=off` (what `make validate` sets) always binds; the folder is
# `$ML_SQL_CHECK_MEMO` when it is a path, else `$XDG_CACHE_HOME/ml-platform/sql-checks` (~/.cache/...).
MEMO_ENV = "ML_SQL_CHECK_MEMO"
_DATABASE: Any = None  # one in-memory DuckDB per process, a schema per check: a connection costs ~15 ms
_DATABASE_LOCK = threading.Lock()
_SCHEMAS = itertools.count()


def _ddl(spec: UseCaseSpec) -> list[str]:
    """Empty tables of the declared schemas, `labels`, and `events` (the events table)."""
    out = []
    for name, table in spec.tables.items():
        cols = [f'"{c}" {_SQL_TYPES[col.dtype]}' for c, col in table.columns.items()]
        if table.partitioned:
            cols += [f"{PARTITION_COLUMN} DATE", f"{EVENT_TIME_COLUMN} TIMESTAMP"]
        out.append(f'CREATE TABLE "{name}" ({", ".join(cols)})')
    groups = "".join(f', "{c}" {_SQL_TYPES[spec.events.columns[c].dtype]}' for c in spec.label.group_columns
                     if c in spec.events.columns)
    out.append(f"CREATE TABLE labels ({compute.EVENT_ID} VARCHAR, {compute.PARTITION} DATE, "
               f"{compute.LABEL} BOOLEAN{groups})")
    out.append(f'CREATE VIEW events AS SELECT * FROM "{spec.events_table}"')
    return out


def _scopes(spec: UseCaseSpec) -> list[tuple[str, list[tuple[str, str]]]]:
    """(FROM clause, [(field, expression)]) for every SQL expression a field declares."""
    scopes = [(f'"{name}"', [(f"tables.{name}.rules[{i}].sql", f"CAST(({rule.sql}) AS BOOLEAN)")
                             for i, rule in enumerate(table.rules)]) for name, table in spec.tables.items()]
    label = (("label.expression", spec.label.expression), ("label.known_when", spec.label.known_when))
    scopes.append(("events", [(f, f"CAST(({expr}) AS BOOLEAN)") for f, expr in label]))
    scopes.append(("events e", [(f"features.derived.{name}", expr) for name, expr in spec.features.derived.items()]))
    for i, lookup in enumerate(spec.features.lookups):
        if lookup.table in spec.tables:
            scopes.append((f'events e, "{lookup.table}" t', [(f"features.lookups[{i}].columns.{name}", expr)
                                                             for name, expr in lookup.columns.items()]))
    return [(source, exprs) for source, exprs in scopes if exprs]


def _together(source: str, expressions: list[tuple[str, str]]) -> str:
    return "SELECT " + ", ".join(f"{expr} AS __x{i}" for i, (_, expr) in enumerate(expressions)) + f" FROM {source}"


def _sql_problems(spec: UseCaseSpec):
    ddl, scopes, feature_sql = _ddl(spec), _scopes(spec), compute.feature_sql(spec)
    memo = _memo_file([*ddl, *(_together(*scope) for scope in scopes), feature_sql])
    if memo is not None and memo.is_file():
        return
    problems = list(_bind(ddl, scopes, feature_sql))
    if not problems and memo is not None:
        _remember(memo)
    yield from problems


def _bind(ddl: list[str], scopes: list[tuple[str, list[tuple[str, str]]]], feature_sql: str):
    with _connection(ddl) as con:
        for source, expressions in scopes:
            yield from _expressions_compile(con, source, expressions)
        if error := _compiles(con, feature_sql):
            yield "features", f"the feature query does not compile: {error}"


def _memo_file(statements: list[str]) -> Path | None:
    import hashlib
    import os
    from importlib.metadata import version

    setting = os.environ.get(MEMO_ENV, "")
    if setting.lower() in ("off", "0", "false", "no"):
        return None
    folder = (Path(setting) if setting else
              Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ml-platform" / "sql-checks")
    digest = hashlib.sha256(f"duckdb {version('duckdb')}\n".encode())
    for statement in statements:
        digest.update(hashlib.sha256(statement.encode()).digest())
    return folder / f"{digest.hexdigest()}.ok"


def _remember(memo: Path) -> None:
    """Best effort: an unwritable cache (a read-only container) only costs the next load the binds."""
    try:
        memo.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        memo.write_text("every statement bound in DuckDB\n")
    except OSError:
        pass


def _close_database() -> None:
    """Close and drop the shared database before interpreter teardown (else nanobind reports leaks)."""
    global _DATABASE
    if _DATABASE is not None:
        _DATABASE.close()
        _DATABASE = None


@contextmanager
def _connection(ddl: list[str]) -> Iterator[Any]:
    """A cursor whose default schema holds the tables `ddl` creates (dropped after)."""
    import duckdb

    global _DATABASE
    with _DATABASE_LOCK:
        if _DATABASE is None:
            _DATABASE = duckdb.connect()
            atexit.register(_close_database)
        con = _DATABASE.cursor()  # its own default schema: checks in two threads do not meet
    schema = f"check_{next(_SCHEMAS)}"
    con.execute(f'CREATE SCHEMA "{schema}"')
    con.execute(f'USE "{schema}"')
    try:
        for statement in ddl:
            con.execute(statement)
        yield con
    finally:
        con.execute("USE memory.main")
        con.execute(f'DROP SCHEMA "{schema}" CASCADE')
        con.close()


def _compiles(con, sql: str) -> str | None:
    import duckdb

    try:
        con.execute(f"DESCRIBE {sql}").fetchall()
    except duckdb.Error as exc:
        return str(exc).splitlines()[0]
    return None


def _expressions_compile(con, source: str, expressions: list[tuple[str, str]]):
    """(field, error) for each `(field, expression)` that does not bind over `source`. One DESCRIBE of all
    of them first (a DuckDB bind costs ~1 ms whatever its size); only when that fails is each one bound
    alone, to name the field. A failure no single expression reproduces is reported for all of them."""
    together = _compiles(con, _together(source, expressions))
    if together is None:
        return
    found = False
    for field, expr in expressions:
        if error := _compiles(con, f"SELECT {expr} AS __x FROM {source}"):
            found = True
            yield field, error
    if not found:
        yield ", ".join(field for field, _ in expressions), together


def _output_problems(spec: UseCaseSpec):
    fs = spec.features
    outputs = compute.feature_columns(spec)
    duplicated = sorted({c for c in outputs if outputs.count(c) > 1})
    if duplicated:
        yield "features", f"feature name(s) {duplicated} are produced twice"
    available = set(outputs)
    for field, names in (("features.numeric", fs.numeric), ("features.categorical", fs.categorical),
                         ("evaluation.slices", spec.evaluation.slices),
                         ("protected_attributes", spec.protected_attributes)):
        for c in names:
            if c not in available:
                yield field, f"{c!r} is not a feature (features: {outputs})"
    if not fs.model_inputs:
        yield "features.numeric", "the model needs at least one input"
    both = sorted(set(fs.numeric) & set(fs.categorical))
    if both:
        yield "features.categorical", f"{both} are also numeric"
    for c in spec.protected_attributes:
        if c in fs.model_inputs:
            yield "protected_attributes", f"{c!r} is a protected attribute and may not be a model input"
    if spec.evaluation.baseline_feature not in fs.numeric:
        yield "evaluation.baseline_feature", f"{spec.evaluation.baseline_feature!r} is not a numeric feature"
    for c in fs.max_null_rates:
        if c not in fs.numeric:
            yield "features.max_null_rates", f"{c!r} is not a numeric feature"
    for c in fs.identifier_columns:
        if c not in available and c != compute.EVENT_ID:
            yield "features.identifier_columns", f"{c!r} is not a feature"


def _window_problems(spec: UseCaseSpec):
    first, last, c = spec.partitions_start, spec.partitions_end, spec.cadence
    if cad.floor(first, c) != first:
        yield "partitions_start", f"{first} does not start a {c} partition (e.g. {cad.floor(first, c)})"
    if last < first:
        yield "partitions_end", f"{last} is before partitions_start {first}"
        return
    total = cad.between(cad.floor(first, c), cad.floor(last, c), c) + 1
    for field, (start, end) in (("training", (spec.training.start, spec.training.end)),
                                ("evaluation", (spec.evaluation.start, spec.evaluation.end))):
        for name, day in (("start", start), ("end", end)):
            if cad.floor(day, c) != day:
                yield f"{field}.{name}", f"{day} does not start a {c} partition"
            if not first <= day <= last:
                yield f"{field}.{name}", f"{day} is outside the partitions {first}..{last}"
        if end < start:
            yield f"{field}.end", f"{end} is before {field}.start {start}"
    train = cad.between(spec.training.start, spec.training.end, c) + 1
    if int(spec.training.validation) >= train:
        yield "training.validation", (f"{spec.training.validation} partitions leave nothing to train on in "
                                      f"{spec.training.start}..{spec.training.end} ({train} partitions)")
    if spec.evaluation.start <= spec.training.end:
        yield "evaluation.start", f"{spec.evaluation.start} overlaps the training window (ends {spec.training.end})"
    if spec.features.max_window >= total:
        yield ("features.rolling_rates",
               f"a window of {spec.features.max_window} partitions exceeds the {total} partitions")
    mon = spec.monitoring
    if int(mon.retrain_eval) >= int(mon.retrain_window):
        yield "monitoring.retrain_eval", f"{mon.retrain_eval} >= monitoring.retrain_window {mon.retrain_window}"
    if int(mon.window) < 1:
        yield "monitoring.window", "the drift window needs at least one partition"
