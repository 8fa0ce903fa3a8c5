"""The one feature function: the same code builds features for training and for scoring.

Features are DuckDB SQL generated from the use-case spec, so an auditor can read the exact query
(it is stored in the features asset's metadata). Point-in-time correctness is structural:
- lookups join on the event's own keys (same-day weather hour, plane registry);
- rolling label rates read only labels whose partition is at least `label.delay` partitions before
  the event's, so no outcome that was unknown at prediction time can reach a feature.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from ml_assets.spec import PARTITION_COLUMN, UseCaseSpec
from ml_assets.spec import cadence as cad

if TYPE_CHECKING:
    import polars as pl

    Relation = pl.DataFrame | str | list[str]

EVENT_ID = "event_id"
PARTITION = "partition_date"  # the first day of the event's partition (its local date for daily partitions)
LABEL = "label"


def event_id_sql(spec: UseCaseSpec, alias: str = "e") -> str:
    """A stable, human-readable event id: the primary-key columns joined by '|'."""
    return "concat_ws('|', " + ", ".join(f"{alias}.{c}" for c in spec.event_id_columns) + ")"


def event_id_parts(spec: UseCaseSpec, event_id: str) -> dict[str, str]:
    """Column -> value of an event id made by `event_id_sql` (a value holding '|' cannot be split back)."""
    values = event_id.split("|")
    if len(values) != len(spec.event_id_columns):
        raise ValueError(f"{event_id!r} is not an event id of {spec.name!r} ({'|'.join(spec.event_id_columns)})")
    return dict(zip(spec.event_id_columns, values, strict=True))


def labels_sql(spec: UseCaseSpec) -> str:
    """Outcome per event (only where it is defined), plus the columns rolling rates group by."""
    groups = "".join(f", e.{c}" for c in spec.label.group_columns)
    return (
        f"SELECT {event_id_sql(spec)} AS {EVENT_ID}, e.{PARTITION_COLUMN} AS {PARTITION}, "
        f"CAST(({spec.label.expression}) AS BOOLEAN) AS {LABEL}{groups}\n"
        f"FROM events e\nWHERE {spec.label.known_when}\nORDER BY {PARTITION}, {EVENT_ID}"
    )


def _lookup_alias(expr: str, alias: str) -> str:
    """Lookup expressions are written over aliases `e` (the event) and `t` (the lookup row); each
    lookup joins under its own alias, so `t.` is renamed."""
    return re.sub(r"\bt\.", f"{alias}.", expr)


def _trailing(name: str, partition: str, days: int) -> str:
    part = f"PARTITION BY {partition} " if partition else ""
    return f"{name} AS ({part}ORDER BY c.label_date ROWS BETWEEN {days - 1} PRECEDING AND CURRENT ROW)"


@dataclass(frozen=True)
class Join:
    relation: str
    alias: str
    on: str


@dataclass(frozen=True)
class FeatureQuery:
    """The feature query in two parts, so a long range can run in bounded memory.

    `history` holds relations computed once over all inputs (deduplicated lookups, trailing label
    rates per day and key: days x keys rows); `select()` computes the features of the events in
    relation `base` from them. `sql()` is the whole thing as one query, for reading and auditing.
    """

    history: dict[str, str]
    columns: list[str]
    joins: list[Join]
    dated: frozenset[str]  # history relations keyed by the event's day (a chunk needs only its days)

    def select(self, narrowed: dict[str, str] | None = None, ordered: bool = True) -> str:
        """The feature SELECT; `narrowed` replaces a joined relation by a subquery (e.g. one month of it)."""
        narrowed = narrowed or {}
        joins = [f"LEFT JOIN {narrowed.get(j.relation, j.relation)} {j.alias} ON {j.on}" for j in self.joins]
        return ("SELECT " + ",\n  ".join(self.columns) + "\nFROM base e\n" + "\n".join(joins)
                + (f"\nORDER BY e.{PARTITION}, e.{EVENT_ID}" if ordered else ""))

    def sql(self, base: str) -> str:
        ctes = [f"base AS ({base})", *(f"{name} AS ({q})" for name, q in self.history.items())]
        return "WITH " + ",\n".join(ctes) + "\n" + self.select()


def feature_query(spec: UseCaseSpec) -> FeatureQuery:
    """The feature query over relations `events`, `labels` and one per lookup table.

    Cost is linear in rows and in partitions x keys: trailing label rates are window sums over a dense
    calendar of per-partition (key, count) rows, joined to events with one equality join on
    (event partition - label delay, key); lookups join the deduplicated tables on their own keys.
    """
    fs = spec.features
    delay, c = spec.label_delay, spec.cadence
    history: dict[str, str] = {}
    select = [f"e.{EVENT_ID}", f"e.{PARTITION}"]
    select += [f"{expr} AS {name}" for name, expr in fs.derived.items()]
    joins: list[Join] = []

    for i, lookup in enumerate(fs.lookups):
        alias = f"t{i}"
        keys = ", ".join(lookup.join.values())
        order = ", ".join(spec.source(lookup.table).columns)
        # Deduplicate the table on its join keys deterministically (e.g. repeated DST hours).
        history[f"lookup_{i}"] = (f"SELECT * FROM {lookup.table} "
                                  f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {order}) = 1")
        on = " AND ".join(f"e.{ec} = {alias}.{tc}" for ec, tc in lookup.join.items())
        joins.append(Join(f"lookup_{i}", alias, on))
        select += [f"{_lookup_alias(expr, alias)} AS {name}" for name, expr in lookup.columns.items()]

    if fs.rolling_rates:
        max_w = fs.max_window
        windows = sorted({int(w) for r in fs.rolling_rates for w in r.windows})
        # Every label partition an event may read, as a dense calendar.
        history["span"] = (f"SELECT {cad.sql_shift(f'min(e.{PARTITION_COLUMN})', -(delay + max_w - 1), c)} AS lo, "
                           f"{cad.sql_shift(f'max(e.{PARTITION_COLUMN})', -delay, c)} AS hi FROM events e")
        step = cad.sql_interval(1, c)
        history["cal"] = (f"SELECT CAST(unnest(range(lo::TIMESTAMP, hi::TIMESTAMP + {step}, {step})) "
                          "AS DATE) AS label_date FROM span")
        history["label_days"] = (f"SELECT {PARTITION} AS label_date, count(*)::DOUBLE AS n, "
                                 f"sum(CAST({LABEL} AS INTEGER))::DOUBLE AS pos FROM labels GROUP BY 1")
        prior_cols = ", ".join(
            f"sum(coalesce(d.pos, 0)) OVER w{w} / nullif(sum(coalesce(d.n, 0)) OVER w{w}, 0) AS prior_{w}"
            for w in windows
        )
        history["prior"] = (f"SELECT {cad.sql_shift('c.label_date', delay, c)} AS {PARTITION}, {prior_cols} "
                            "FROM cal c LEFT JOIN label_days d USING (label_date) "
                            "WINDOW " + ", ".join(_trailing(f"w{w}", "", w) for w in windows))
        joins.append(Join("prior", "prior", f"prior.{PARTITION} = e.{PARTITION}"))
        for rate in fs.rolling_rates:
            keys = ", ".join(rate.keys)
            k_keys = ", ".join(f"k.{k}" for k in rate.keys)
            sums = ", ".join(
                f"sum(coalesce(d.n, 0)) OVER w{w} AS n_{w}, sum(coalesce(d.pos, 0)) OVER w{w} AS pos_{w}"
                for w in rate.windows
            )
            d_on = " AND ".join(["d.label_date = c.label_date", *(f"d.{k} = k.{k}" for k in rate.keys)])
            history[f"days_{rate.name}"] = (f"SELECT {PARTITION} AS label_date, {keys}, count(*)::DOUBLE AS n, "
                                            f"sum(CAST({LABEL} AS INTEGER))::DOUBLE AS pos FROM labels GROUP BY ALL")
            history[f"keys_{rate.name}"] = f"SELECT DISTINCT {keys} FROM days_{rate.name}"
            history[f"rate_{rate.name}"] = (
                f"SELECT {cad.sql_shift('c.label_date', delay, c)} AS {PARTITION}, {k_keys}, {sums} "
                f"FROM cal c CROSS JOIN keys_{rate.name} k LEFT JOIN days_{rate.name} d ON {d_on} "
                "WINDOW " + ", ".join(_trailing(f"w{w}", k_keys, int(w)) for w in rate.windows)
            )
            r = f"r_{rate.name}"
            on = " AND ".join([f"{r}.{PARTITION} = e.{PARTITION}", *(f"{r}.{k} = e.{k}" for k in rate.keys)])
            joins.append(Join(f"rate_{rate.name}", r, on))
            for w, name in zip(rate.windows, rate.feature_names(c), strict=True):
                select.append(
                    f"(coalesce({r}.pos_{w}, 0) + {rate.prior_weight} * prior.prior_{w}) / "
                    f"(coalesce({r}.n_{w}, 0) + {rate.prior_weight}) AS {name}"
                )
            for w, name in zip(rate.windows, rate.count_names(c), strict=False):
                select.append(f"coalesce({r}.n_{w}, 0) AS {name}")

    dated = frozenset(j.relation for j in joins if j.relation == "prior" or j.relation.startswith("rate_"))
    return FeatureQuery(history=history, columns=select, joins=joins, dated=dated)


def base_sql(spec: UseCaseSpec, where: str = "") -> str:
    """The events with their id and partition (`where` narrows them, e.g. to one month)."""
    return (f"SELECT e.*, {event_id_sql(spec)} AS {EVENT_ID}, e.{PARTITION_COLUMN} AS {PARTITION} FROM events e"
            + (f" WHERE {where}" if where else ""))


def feature_sql(spec: UseCaseSpec) -> str:
    """The whole feature query as one statement (stored in the features asset's metadata)."""
    return feature_query(spec).sql(base_sql(spec))


def feature_columns(spec: UseCaseSpec) -> list[str]:
    """Every column the feature query outputs after (event_id, partition_date), in order."""
    fs = spec.features
    names = [*fs.derived]
    for lookup in fs.lookups:
        names += list(lookup.columns)
    for rate in fs.rolling_rates:
        names += rate.feature_names(spec.cadence)
    for rate in fs.rolling_rates:
        names += rate.count_names(spec.cadence)
    return names


def compute_labels(spec: UseCaseSpec, events: pl.DataFrame) -> pl.DataFrame:
    return _run(labels_sql(spec), {"events": events})


def compute_features(
    spec: UseCaseSpec,
    events: Relation,
    lookups: dict[str, Relation],
    labels: Relation,
) -> pl.DataFrame:
    """Features for every row of `events`, ordered by (day, event id). `labels` may hold any
    history: only labels known at each event's prediction time are used."""
    import polars as pl

    chunks = iter_features(spec, {"events": events, "labels": labels, **lookups})
    return pl.concat(chunks, how="vertical").sort(PARTITION, EVENT_ID)


CHUNK_ROWS = 500_000


def iter_features(spec: UseCaseSpec, relations: dict[str, Relation], chunk_rows: int = CHUNK_ROWS
                  ) -> Iterator[pl.DataFrame]:
    """The features of `relations["events"]` in chunks of whole calendar months (about `chunk_rows`
    events, never across a year), in month order; rows inside a chunk are in no particular order
    (writers sort each partition: a global sort would hold every row). Peak memory is one chunk's
    output plus the history relations (partitions x keys), whatever the range.

    A relation is a Polars frame or Parquet file path(s) that DuckDB reads directly.
    """
    query = feature_query(spec)
    part = PARTITION_COLUMN
    with _connect(spec, relations) as con:
        for name, sql in query.history.items():
            con.execute(f"CREATE TEMP TABLE {name} AS {sql}")
        months = con.execute(f"SELECT year({part}), month({part}), count(*) FROM events GROUP BY ALL "
                             "ORDER BY ALL").fetchall()
        if not months:  # no events: one empty, typed frame
            yield con.sql(f"WITH base AS ({base_sql(spec, 'false')})\n{query.select(ordered=False)}").pl()
        partitioned = {i for i, lk in enumerate(spec.features.lookups) if spec.source(lk.table).partitioned}
        for year, first, last in _month_chunks(months, chunk_rows):
            lo, hi = date(year, first, 1), date(year + last // 12, last % 12 + 1, 1)
            in_range = f"{{}} >= DATE '{lo}' AND {{}} < DATE '{hi}'"
            narrowed = {j.relation: f"(SELECT * FROM {j.relation} WHERE {in_range.format(PARTITION, PARTITION)})"
                        for j in query.joins if j.relation in query.dated}
            for i in partitioned:  # a same-partition lookup: the same months of it
                narrowed[f"lookup_{i}"] = f"(SELECT * FROM lookup_{i} WHERE {in_range.format(part, part)})"
            base = base_sql(spec, in_range.format(f"e.{part}", f"e.{part}"))
            yield con.sql(f"WITH base AS ({base})\n{query.select(narrowed, ordered=False)}").pl()


def _month_chunks(months: list[tuple[int, int, int]], chunk_rows: int) -> Iterator[tuple[int, int, int]]:
    """(year, first month, last month) runs of consecutive months holding about `chunk_rows` rows."""
    run: list[tuple[int, int, int]] = []
    for year, month, rows in months:
        if run and (year != run[0][0] or sum(r for *_, r in run) + rows > chunk_rows):
            yield run[0][0], run[0][1], run[-1][1]
            run = []
        run.append((year, month, rows))
    if run:
        yield run[0][0], run[0][1], run[-1][1]


def _run(sql: str, relations: dict[str, Relation]) -> pl.DataFrame:
    with _connect(None, relations) as con:
        return con.sql(sql).pl()


@contextmanager
def _connect(spec: UseCaseSpec | None, relations: dict[str, Relation]):
    """A DuckDB connection with each relation as a view (an empty `labels` becomes a typed empty view)."""
    import duckdb
    import polars as pl

    with duckdb.connect() as con:
        con.execute("SET threads TO 2")
        for name, rel in relations.items():
            if isinstance(rel, pl.DataFrame):
                if rel.width:  # a frame without columns is "nothing read" (only labels may be empty)
                    con.register(name, rel.to_arrow())
            elif rel:
                paths = [rel] if isinstance(rel, str) else list(rel)
                con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({paths!r})")
        if spec is not None and _is_empty(relations.get("labels")):
            # No label history yet (the first partitions): same columns, no rows.
            groups = "".join(f", {c}" for c in spec.label.group_columns)
            con.execute(f"CREATE OR REPLACE VIEW labels AS SELECT NULL::VARCHAR AS {EVENT_ID}, "
                        f"NULL::DATE AS {PARTITION}, NULL::BOOLEAN AS {LABEL}{groups} FROM events WHERE false")
        yield con


def _is_empty(rel: Relation | None) -> bool:
    import polars as pl

    return rel.is_empty() if isinstance(rel, pl.DataFrame) else not rel
