"""A prototype of the feature query proposed in FINDINGS.md: the same features, linear in days.

Why it exists: the platform's query (`ml_assets.features.compute.feature_sql`) computes trailing-window
label rates by joining every target day to every label day of the preceding window with inequality
conditions only; DuckDB plans that as a piecewise merge join whose cost grows much faster than the
rows (10x the rows took about 90x the time here). It also joins each lookup back on the string
`event_id`. This module changes only the shape of the query:

- rolling rates become window sums over a dense calendar of (day, key) counts, then one equality
  join on (event day - label delay, key): linear in days x keys;
- lookups join the deduplicated tables directly on their keys (no string join-back);
- `stream_to_parquet` reads the Parquet inputs and writes the output with one `COPY`, so the inputs
  and the output never exist as Python frames.

It is NOT used by the platform: the benchmark runs it next to the real function, asserts the outputs
agree row for row, and reports its numbers as the evidence for the proposed change.
"""

from __future__ import annotations

import re

from ml_assets.features.compute import EVENT_DATE, EVENT_ID, LABEL, event_date_sql, event_id_sql
from ml_assets.spec import UseCaseSpec


def _retarget(expr: str, alias: str) -> str:
    """Lookup expressions are written over aliases `e` and `t`; give each lookup table its own alias."""
    return re.sub(r"\bt\.", f"{alias}.", expr)


def _window(name: str, partition: str, w: int) -> str:
    part = f"PARTITION BY {partition} " if partition else ""
    return f"{name} AS ({part}ORDER BY c.label_date ROWS BETWEEN {w - 1} PRECEDING AND CURRENT ROW)"


def proposed_feature_sql(spec: UseCaseSpec) -> str:
    """The proposed query over relations `events`, `labels` and one per lookup table (same output)."""
    fs = spec.features
    delay = spec.label.delay_days
    ctes = [f"base AS (SELECT e.*, {event_id_sql(spec)} AS {EVENT_ID}, {event_date_sql(spec)} AS {EVENT_DATE} "
            "FROM events e)"]
    select = [f"e.{EVENT_ID}", f"e.{EVENT_DATE}"]
    select += [f"{expr} AS {name}" for name, expr in fs.derived.items()]
    joins: list[str] = []

    for i, lookup in enumerate(fs.lookups):
        alias = f"t{i}"
        keys = ", ".join(tc for _, tc in lookup.on)
        order = ", ".join(c.name for c in spec.source(lookup.table).columns)
        ctes.append(f"lookup_{i} AS (SELECT * FROM {lookup.table} "
                    f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {order}) = 1)")
        on = " AND ".join(f"e.{ec} = {alias}.{tc}" for ec, tc in lookup.on)
        joins.append(f"LEFT JOIN lookup_{i} {alias} ON {on}")
        select += [f"{_retarget(expr, alias)} AS {name}" for name, expr in lookup.columns.items()]

    if fs.rolling_rates:
        max_w = fs.max_window_days
        windows = sorted({w for r in fs.rolling_rates for w in r.windows_days})
        ctes += [
            # Every label day any event of this range can read, as a dense calendar.
            f"span AS (SELECT min({event_date_sql(spec)}) - {delay + max_w - 1} AS lo, "
            f"max({event_date_sql(spec)}) - {delay} AS hi FROM events e)",
            "cal AS (SELECT CAST(unnest(range(lo::TIMESTAMP, hi::TIMESTAMP + INTERVAL 1 DAY, INTERVAL 1 DAY)) AS DATE) "
            "AS label_date FROM span)",
            f"label_days AS (SELECT {EVENT_DATE} AS label_date, count(*)::DOUBLE AS n, "
            f"sum(CAST({LABEL} AS INTEGER))::DOUBLE AS pos FROM labels GROUP BY 1)",
        ]
        prior_cols = ", ".join(
            f"sum(coalesce(d.pos, 0)) OVER w{w} / nullif(sum(coalesce(d.n, 0)) OVER w{w}, 0) AS prior_{w}"
            for w in windows
        )
        ctes.append(
            f"prior AS (SELECT c.label_date + {delay} AS {EVENT_DATE}, {prior_cols} "
            "FROM cal c LEFT JOIN label_days d USING (label_date) "
            "WINDOW " + ", ".join(_window(f"w{w}", "", w) for w in windows) + ")"
        )
        joins.append(f"LEFT JOIN prior ON prior.{EVENT_DATE} = e.{EVENT_DATE}")
        for rate in fs.rolling_rates:
            keys = ", ".join(rate.keys)
            kk = ", ".join(f"k.{k}" for k in rate.keys)
            sums = ", ".join(
                f"sum(coalesce(d.n, 0)) OVER w{w} AS n_{w}, sum(coalesce(d.pos, 0)) OVER w{w} AS pos_{w}"
                for w in rate.windows_days
            )
            d_on = " AND ".join(["d.label_date = c.label_date", *(f"d.{k} = k.{k}" for k in rate.keys)])
            ctes += [
                f"days_{rate.name} AS (SELECT {EVENT_DATE} AS label_date, {keys}, count(*)::DOUBLE AS n, "
                f"sum(CAST({LABEL} AS INTEGER))::DOUBLE AS pos FROM labels GROUP BY ALL)",
                f"keys_{rate.name} AS (SELECT DISTINCT {keys} FROM days_{rate.name})",
                f"rate_{rate.name} AS (SELECT c.label_date + {delay} AS {EVENT_DATE}, {kk}, {sums} "
                f"FROM cal c CROSS JOIN keys_{rate.name} k LEFT JOIN days_{rate.name} d ON {d_on} "
                "WINDOW " + ", ".join(_window(f"w{w}", kk, w) for w in rate.windows_days) + ")",
            ]
            on = " AND ".join([f"r_{rate.name}.{EVENT_DATE} = e.{EVENT_DATE}"]
                              + [f"r_{rate.name}.{k} = e.{k}" for k in rate.keys])
            joins.append(f"LEFT JOIN rate_{rate.name} r_{rate.name} ON {on}")
            for w, name in zip(rate.windows_days, rate.feature_names(), strict=True):
                select.append(
                    f"(coalesce(r_{rate.name}.pos_{w}, 0) + {rate.prior_weight} * prior.prior_{w}) / "
                    f"(coalesce(r_{rate.name}.n_{w}, 0) + {rate.prior_weight}) AS {name}"
                )

    return ("WITH " + ",\n".join(ctes) + "\nSELECT " + ",\n  ".join(select) + "\nFROM base e\n"
            + "\n".join(joins) + f"\nORDER BY e.{EVENT_DATE}, e.{EVENT_ID}")


def stream_to_parquet(spec: UseCaseSpec, inputs: dict[str, str], out_path: str, threads: int = 2) -> None:
    """Run the proposed query from Parquet files (`relation name -> path`) straight into `out_path`."""
    import duckdb

    with duckdb.connect() as con:
        con.execute(f"SET threads TO {threads}")
        for name, path in inputs.items():
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{path}')")
        con.execute(f"COPY ({proposed_feature_sql(spec)}) TO '{out_path}' (FORMAT parquet, COMPRESSION zstd)")
