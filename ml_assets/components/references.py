"""Load-time checks of a use case's cross-references, before any run.

The schema (types, required fields, spans) is checked by the spec models; this checks what the
fields say about each other: every column named in a key, slice or input exists, and every SQL
expression compiles in DuckDB against empty tables of the declared schemas. Every problem is
reported at once, each naming the file, the field and the reason. Pure: DuckDB, no Dagster.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

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


def _connection(spec: UseCaseSpec):
    import duckdb

    con = duckdb.connect()
    for name, table in spec.tables.items():
        cols = [f'"{c}" {_SQL_TYPES[col.dtype]}' for c, col in table.columns.items()]
        if table.partitioned:
            cols += [f"{PARTITION_COLUMN} DATE", f"{EVENT_TIME_COLUMN} TIMESTAMP"]
        con.execute(f'CREATE TABLE "{name}" ({", ".join(cols)})')
    groups = "".join(f', "{c}" {_SQL_TYPES[spec.events.columns[c].dtype]}' for c in spec.label.group_columns
                     if c in spec.events.columns)
    con.execute(f"CREATE TABLE labels ({compute.EVENT_ID} VARCHAR, {compute.PARTITION} DATE, "
                f"{compute.LABEL} BOOLEAN{groups})")
    con.execute(f"CREATE VIEW events AS SELECT * FROM \"{spec.events_table}\"")
    return con


def _compiles(con, sql: str) -> str | None:
    import duckdb

    try:
        con.execute(f"DESCRIBE {sql}")
    except duckdb.Error as exc:
        return str(exc).splitlines()[0]
    return None


def _sql_problems(spec: UseCaseSpec):
    con = _connection(spec)
    try:
        for name, table in spec.tables.items():
            for i, rule in enumerate(table.rules):
                if error := _compiles(con, f'SELECT CAST(({rule.sql}) AS BOOLEAN) FROM "{name}"'):
                    yield f"tables.{name}.rules[{i}].sql", error
        for field, expr in (("label.expression", spec.label.expression), ("label.known_when", spec.label.known_when)):
            if error := _compiles(con, f"SELECT CAST(({expr}) AS BOOLEAN) FROM events"):
                yield field, error
        for name, expr in spec.features.derived.items():
            if error := _compiles(con, f"SELECT {expr} AS x FROM events e"):
                yield f"features.derived.{name}", error
        for i, lookup in enumerate(spec.features.lookups):
            if lookup.table not in spec.tables:
                continue
            for name, expr in lookup.columns.items():
                if error := _compiles(con, f'SELECT {expr} AS x FROM events e, "{lookup.table}" t'):
                    yield f"features.lookups[{i}].columns.{name}", error
        if error := _compiles(con, compute.feature_sql(spec)):
            yield "features", f"the feature query does not compile: {error}"
    finally:
        con.close()


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
