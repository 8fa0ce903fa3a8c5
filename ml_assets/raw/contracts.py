"""Data contracts for source tables: row-level rules (quarantine) and partition-level rules (fail).

Row rules, in order (a row is quarantined under the first one it breaks):
- `event_time(<column>)`: the event time could not be read;
- `partition_mismatch(...)`: the row's event time belongs to another partition than the file it
  was delivered in (it is never moved to, or silently dropped from, a partition);
- per column: `not_null`, `finite` (no NaN/inf in float columns), `min`/`max`, `allowed`;
- the table's cross-column rules (DuckDB SQL, e.g. date columns agree with the timestamp);
- `unique_key` on the primary key (the first row of a key is kept).
A partition fails, before anything is written, when its schema is wrong (raised while reading),
when more than `max_quarantine_fraction` of its rows break a rule, or when its valid row count is
outside `rows_per_partition`. Every row read is either written or quarantined: the accounting
`rows_read = rows_written + rows_quarantined` is recorded per partition. Pure: Polars and DuckDB.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ml_assets.spec import EVENT_TIME_COLUMN, PARTITION_COLUMN, TableSpec

if TYPE_CHECKING:
    import polars as pl

RULE = "_rule"
DELIVERED = "_delivered_partition"  # set by landing reads: the partition of the file a row came in


@dataclass(frozen=True)
class RowSplit:
    good: pl.DataFrame
    quarantined: pl.DataFrame  # the offending rows with a `_rule` column naming the first rule broken

    @property
    def rows_read(self) -> int:
        return self.good.height + self.quarantined.height


def _rules(table: TableSpec, frame: pl.DataFrame) -> list[tuple[str, pl.Expr]]:
    import polars as pl

    rules: list[tuple[str, pl.Expr]] = []
    if table.event_time is not None and PARTITION_COLUMN in frame.columns:
        rules.append((f"event_time({', '.join(table.event_time.columns)} readable)",
                      pl.col(PARTITION_COLUMN).is_null()))
        if DELIVERED in frame.columns:
            rules.append(("partition_mismatch(event time in the file's partition)",
                          pl.col(PARTITION_COLUMN) != pl.col(DELIVERED)))
    for name, col in table.columns.items():
        c = pl.col(name)
        if not col.nullable:
            rules.append((f"not_null({name})", c.is_null()))
        if col.dtype == "float64":
            rules.append((f"finite({name})", c.is_nan() | c.is_infinite()))
        if col.min is not None:
            rules.append((f"min({name}>={col.min:g})", c < col.min))
        if col.max is not None:
            rules.append((f"max({name}<={col.max:g})", c > col.max))
        if col.allowed is not None:
            rules.append((f"allowed({name} in {list(col.allowed)})", ~c.is_in(list(col.allowed))))
    rules += [(f"rule({rule.name})", ~pl.col(f"__rule_{i}").fill_null(False)) for i, rule in enumerate(table.rules)]
    if table.primary_key:
        rules.append((f"unique_key({', '.join(table.primary_key)})",
                      ~pl.struct(list(table.primary_key)).is_first_distinct()))
    return rules


def _with_sql_rules(frame: pl.DataFrame, table: TableSpec) -> pl.DataFrame:
    """Evaluate the table's cross-column SQL rules in DuckDB, as boolean columns `__rule_<i>`."""
    if not table.rules or frame.is_empty():
        import polars as pl

        return frame.with_columns([pl.lit(True).alias(f"__rule_{i}") for i in range(len(table.rules))])
    import duckdb

    with duckdb.connect() as con:
        con.register("row_frame", frame.to_arrow())
        cols = ", ".join(f"CAST(({r.sql}) AS BOOLEAN) AS __rule_{i}" for i, r in enumerate(table.rules))
        flags = con.sql(f"SELECT {cols} FROM row_frame").pl()
    return frame.hstack(flags)


def split_rows(frame: pl.DataFrame, table: TableSpec) -> RowSplit:
    import polars as pl

    checked = _with_sql_rules(frame, table)
    rule = pl.lit(None, dtype=pl.String)
    for name, broken in reversed(_rules(table, checked)):
        rule = pl.when(broken.fill_null(False)).then(pl.lit(name)).otherwise(rule)
    helpers = [c for c in checked.columns if c.startswith("__rule_") or c == DELIVERED]
    tagged = checked.with_columns(rule.alias(RULE)).drop(helpers)
    return RowSplit(tagged.filter(pl.col(RULE).is_null()).drop(RULE), tagged.filter(pl.col(RULE).is_not_null()))


def _rule_column(rule: str) -> str | None:
    inner = rule[rule.index("(") + 1:].rstrip(")") if "(" in rule else ""
    for sep in (">=", "<=", " in ", ", ", " readable"):
        inner = inner.split(sep)[0]
    return inner or None


def partition_problems(table: TableSpec, partition: str, split: RowSplit) -> list[str]:
    """Partition-level contract breaches, each a sentence naming the rule, counts and examples."""
    import polars as pl

    problems = []
    total = split.rows_read
    if total and split.quarantined.height / total > table.max_quarantine_fraction:
        summary = split.quarantined.group_by(RULE).agg(pl.len().alias("rows")).sort(["rows", RULE],
                                                                                    descending=[True, False])
        for rule, rows in summary.iter_rows():
            column = _rule_column(rule)
            if rule.startswith("partition_mismatch"):
                column = PARTITION_COLUMN
            elif rule.startswith("event_time("):
                column = table.event_time.columns[0] if table.event_time else None
            examples = (split.quarantined.filter(pl.col(RULE) == rule).get_column(column).head(3).to_list()
                        if column in split.quarantined.columns else [])
            problems.append(
                f"rule {rule} broken by {rows} of {total} rows "
                f"({split.quarantined.height / total:.1%} quarantined > allowed "
                f"{table.max_quarantine_fraction:.1%}), e.g. {[str(e) for e in examples]}"
            )
    if table.rows_per_partition and partition not in table.known_missing_partitions:
        low, high = table.rows_per_partition
        if not low <= split.good.height <= high:
            problems.append(f"rule row_count: {split.good.height} valid rows, expected {low}..{high} per partition")
    return problems


def drop_platform_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """Raw files keep `_partition_date` and `_event_time`; helper columns are never written."""
    return frame.drop([c for c in (DELIVERED,) if c in frame.columns])


__all__ = ["DELIVERED", "EVENT_TIME_COLUMN", "RULE", "RowSplit", "partition_problems", "split_rows"]
