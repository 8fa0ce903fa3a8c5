"""Data contracts for source tables: row-level rules (quarantine) and partition-level rules (fail).

Row rules come from each column's spec: `not_null`, `finite` (no NaN/inf in numeric columns),
`min`/`max`, `allowed`, plus `unique_key` on the primary key (the first row of a key is kept).
A partition fails, before anything is written, when its schema is wrong (raised while reading),
when more than `max_quarantine_fraction` of its rows break a rule, or when its row count is outside
`rows_per_partition`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ml_assets.spec import SourceTableSpec

if TYPE_CHECKING:
    import polars as pl

RULE = "_rule"


@dataclass(frozen=True)
class RowSplit:
    good: pl.DataFrame
    quarantined: pl.DataFrame  # the offending rows with a `_rule` column naming the first rule broken


def _rules(table: SourceTableSpec) -> list[tuple[str, pl.Expr]]:
    import polars as pl

    rules: list[tuple[str, pl.Expr]] = []
    for col in table.columns:
        c = pl.col(col.name)
        if not col.nullable:
            rules.append((f"not_null({col.name})", c.is_null()))
        if col.dtype == "float64":
            rules.append((f"finite({col.name})", c.is_nan() | c.is_infinite()))
        if col.min is not None:
            rules.append((f"min({col.name}>={col.min:g})", c < col.min))
        if col.max is not None:
            rules.append((f"max({col.name}<={col.max:g})", c > col.max))
        if col.allowed is not None:
            rules.append((f"allowed({col.name} in {list(col.allowed)})", ~c.is_in(list(col.allowed))))
    if table.primary_key:
        rules.append((f"unique_key({', '.join(table.primary_key)})",
                      ~pl.struct(list(table.primary_key)).is_first_distinct()))
    return rules


def split_rows(frame: pl.DataFrame, table: SourceTableSpec) -> RowSplit:
    import polars as pl

    rule = pl.lit(None, dtype=pl.String)
    for name, broken in reversed(_rules(table)):
        rule = pl.when(broken.fill_null(False)).then(pl.lit(name)).otherwise(rule)
    tagged = frame.with_columns(rule.alias(RULE))
    return RowSplit(tagged.filter(pl.col(RULE).is_null()).drop(RULE), tagged.filter(pl.col(RULE).is_not_null()))


def partition_problems(table: SourceTableSpec, day: str, total_rows: int, split: RowSplit) -> list[str]:
    """Partition-level contract breaches, each a sentence naming the rule, counts and examples."""
    import polars as pl

    problems = []
    if total_rows and split.quarantined.height / total_rows > table.max_quarantine_fraction:
        summary = split.quarantined.group_by(RULE).agg(pl.len().alias("rows")).sort("rows", descending=True)
        for rule, rows in summary.iter_rows():
            column = rule[rule.index("(") + 1 :].split(">")[0].split("<")[0].split(" in ")[0].rstrip(")")
            examples = (split.quarantined.filter(pl.col(RULE) == rule).get_column(column).head(3).to_list()
                        if column in split.quarantined.columns else [])
            problems.append(
                f"rule {rule} broken by {rows} of {total_rows} rows "
                f"({split.quarantined.height / total_rows:.1%} quarantined > allowed "
                f"{table.max_quarantine_fraction:.1%}), e.g. {examples}"
            )
    if table.rows_per_partition and day not in table.known_missing_partitions:
        low, high = table.rows_per_partition
        if not low <= split.good.height <= high:
            problems.append(f"rule row_count: {split.good.height} valid rows, expected {low}..{high} per partition")
    return problems
