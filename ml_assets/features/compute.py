"""The one feature function: the same code builds features for training and for scoring.

Features are DuckDB SQL generated from the use-case spec, so an auditor can read the exact query
(it is stored in the features asset's metadata). Point-in-time correctness is structural:
- lookups join on the event's own keys (same-day weather hour, plane registry);
- rolling label rates read only labels whose day is at least `label.delay_days` before the event's
  day, so no outcome that was unknown at prediction time can reach a feature.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ml_assets.spec import UseCaseSpec

if TYPE_CHECKING:
    import polars as pl

EVENT_ID = "event_id"
EVENT_DATE = "event_date"
LABEL = "label"


def event_id_sql(spec: UseCaseSpec, alias: str = "e") -> str:
    """A stable, human-readable event id: the primary-key columns joined by '|'."""
    return "concat_ws('|', " + ", ".join(f"{alias}.{c}" for c in spec.event_id_columns) + ")"


def event_date_sql(spec: UseCaseSpec, alias: str = "e") -> str:
    y, m, d = spec.events.date_columns or ()
    return f"make_date({alias}.{y}, {alias}.{m}, {alias}.{d})"


def labels_sql(spec: UseCaseSpec) -> str:
    """Outcome per event (only where it is defined), plus the columns rolling rates group by."""
    groups = "".join(f", e.{c}" for c in spec.label.group_columns)
    return (
        f"SELECT {event_id_sql(spec)} AS {EVENT_ID}, {event_date_sql(spec)} AS {EVENT_DATE}, "
        f"CAST(({spec.label.expression}) AS BOOLEAN) AS {LABEL}{groups}\n"
        f"FROM events e\nWHERE {spec.label.known_when}\nORDER BY {EVENT_DATE}, {EVENT_ID}"
    )


def feature_sql(spec: UseCaseSpec) -> str:
    """The feature query over relations `events`, `labels` and one per lookup table."""
    fs = spec.features
    delay = spec.label.delay_days
    ctes = [
        f"base AS (SELECT e.*, {event_id_sql(spec)} AS {EVENT_ID}, {event_date_sql(spec)} AS {EVENT_DATE} "
        "FROM events e)",
        f"targets AS (SELECT DISTINCT {EVENT_DATE} FROM base)",
    ]
    select = [f"e.{EVENT_ID}", f"e.{EVENT_DATE}"]
    select += [f"{expr} AS {name}" for name, expr in fs.derived.items()]
    joins: list[str] = []

    for i, lookup in enumerate(fs.lookups):
        keys = ", ".join(tc for _, tc in lookup.on)
        on = " AND ".join(f"e.{ec} = t.{tc}" for ec, tc in lookup.on)
        cols = ", ".join(f"{expr} AS {name}" for name, expr in lookup.columns.items())
        order = ", ".join(c.name for c in spec.source(lookup.table).columns)
        # Deduplicate the table on its join keys deterministically (e.g. repeated DST hours).
        ctes.append(
            f"lookup_{i} AS (SELECT e.{EVENT_ID}, {cols} FROM base e LEFT JOIN "
            f"(SELECT * FROM {lookup.table} QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {order}) = 1) t "
            f"ON {on})"
        )
        joins.append(f"LEFT JOIN lookup_{i} USING ({EVENT_ID})")
        select += [f"lookup_{i}.{name}" for name in lookup.columns]

    if fs.rolling_rates:
        max_w = fs.max_window_days
        ctes.append(
            f"label_days AS (SELECT {EVENT_DATE} AS label_date, count(*)::DOUBLE AS n, "
            f"sum(CAST({LABEL} AS INTEGER))::DOUBLE AS pos FROM labels GROUP BY 1)"
        )
        windows = sorted({w for r in fs.rolling_rates for w in r.windows_days})
        prior_cols = ", ".join(
            f"sum(d.pos) FILTER (WHERE d.label_date > t.{EVENT_DATE} - {delay + w}) / "
            f"nullif(sum(d.n) FILTER (WHERE d.label_date > t.{EVENT_DATE} - {delay + w}), 0) AS prior_{w}"
            for w in windows
        )
        ctes.append(
            f"prior AS (SELECT t.{EVENT_DATE}, {prior_cols} FROM targets t JOIN label_days d "
            f"ON d.label_date <= t.{EVENT_DATE} - {delay} AND d.label_date > t.{EVENT_DATE} - {delay + max_w} "
            "GROUP BY 1)"
        )
        joins.append(f"LEFT JOIN prior USING ({EVENT_DATE})")
        for rate in fs.rolling_rates:
            keys = ", ".join(rate.keys)
            sums = ", ".join(
                f"sum(d.n) FILTER (WHERE d.label_date > t.{EVENT_DATE} - {delay + w}) AS n_{w}, "
                f"sum(d.pos) FILTER (WHERE d.label_date > t.{EVENT_DATE} - {delay + w}) AS pos_{w}"
                for w in rate.windows_days
            )
            ctes.append(
                f"days_{rate.name} AS (SELECT {EVENT_DATE} AS label_date, {keys}, count(*)::DOUBLE AS n, "
                f"sum(CAST({LABEL} AS INTEGER))::DOUBLE AS pos FROM labels GROUP BY ALL)"
            )
            ctes.append(
                f"rate_{rate.name} AS (SELECT t.{EVENT_DATE}, {', '.join(f'd.{k}' for k in rate.keys)}, {sums} "
                f"FROM targets t JOIN days_{rate.name} d ON d.label_date <= t.{EVENT_DATE} - {delay} "
                f"AND d.label_date > t.{EVENT_DATE} - {delay + max(rate.windows_days)} GROUP BY ALL)"
            )
            on = " AND ".join([f"rate_{rate.name}.{EVENT_DATE} = e.{EVENT_DATE}"] +
                              [f"rate_{rate.name}.{k} = e.{k}" for k in rate.keys])
            joins.append(f"LEFT JOIN rate_{rate.name} ON {on}")
            for w, name in zip(rate.windows_days, rate.feature_names(), strict=True):
                select.append(
                    f"(coalesce(rate_{rate.name}.pos_{w}, 0) + {rate.prior_weight} * prior.prior_{w}) / "
                    f"(coalesce(rate_{rate.name}.n_{w}, 0) + {rate.prior_weight}) AS {name}"
                )

    return (
        "WITH " + ",\n".join(ctes) + "\nSELECT " + ",\n  ".join(select) + "\nFROM base e\n"
        + "\n".join(joins) + f"\nORDER BY e.{EVENT_DATE}, e.{EVENT_ID}"
    )


def feature_columns(spec: UseCaseSpec) -> list[str]:
    fs = spec.features
    names = [*fs.derived]
    for lookup in fs.lookups:
        names += list(lookup.columns)
    for rate in fs.rolling_rates:
        names += list(rate.feature_names())
    return names


def compute_labels(spec: UseCaseSpec, events: pl.DataFrame) -> pl.DataFrame:
    return _run(labels_sql(spec), {"events": events})


def compute_features(
    spec: UseCaseSpec,
    events: pl.DataFrame,
    lookups: dict[str, pl.DataFrame],
    labels: pl.DataFrame,
) -> pl.DataFrame:
    """Features for every row of `events`. `labels` may hold any history: only known labels are used."""
    import polars as pl

    if labels.is_empty():  # no history yet (the first partition): an empty, typed relation
        labels = pl.DataFrame(
            schema={EVENT_ID: pl.String, EVENT_DATE: pl.Date, LABEL: pl.Boolean}
            | {c: events.schema[c] for c in spec.label.group_columns}
        )
    return _run(feature_sql(spec), {"events": events, "labels": labels, **lookups})


def _run(sql: str, relations: dict[str, pl.DataFrame]) -> pl.DataFrame:
    import duckdb

    with duckdb.connect() as con:
        con.execute("SET threads TO 2")
        for name, frame in relations.items():
            con.register(name, frame.to_arrow())
        return con.sql(sql).pl()
