"""A prototype of the whylogs feeding proposed in FINDINGS.md: same profile, columnar preprocessing.

Why it exists: whylogs 1.6.4 preprocesses a pandas column in Python. For a float column it runs
`np.isinf` once per value through `Series.apply`; for an object column (how the platform hands over
categoricals) six per-value lambdas classify every value. That is where the platform's profiling
time goes, not in the sketches. This prototype computes the same split (non-null values, null / NaN
/ inf counts) with Polars and hands it to the column profiles directly, so whylogs only updates its
sketches. It also builds the schema once and reuses it.

It uses whylogs internals (`PreprocessedColumn`, `DatasetProfile._columns`); whylogs is pinned
(1.6.4), and the benchmark checks that the resulting profile matches `profile_frame` metric by metric
on real partitions before it reports any number. It is NOT used by the platform.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ml_assets.profiles import whylogs_profile as wp

if TYPE_CHECKING:
    import polars as pl


@lru_cache(maxsize=8)
def _resolved_schema(numeric: tuple[str, ...], categorical: tuple[str, ...]) -> Any:
    """The platform's schema, resolved once from an empty frame of the same dtypes (what `track` does
    with the first batch); a profile built on it creates its column profiles up front."""
    import pandas as pd

    schema = wp._schema(list(numeric), list(categorical))
    schema.resolve(pandas=pd.DataFrame({c: pd.Series([], dtype="float64") for c in numeric}
                                       | {c: pd.Series([], dtype=object) for c in categorical}))
    return schema


def _numeric_column(values: Any) -> Any:
    """What whylogs' pandas path extracts from a float column (Polars nulls arrive there as NaN)."""
    import numpy as np
    from whylogs.core.preprocessing import NumpyView, PreprocessedColumn

    missing = np.isnan(values)
    present = np.ascontiguousarray(values[~missing])
    col = PreprocessedColumn()
    col.len = len(values)
    col.null_count = int(missing.sum())
    col.nan_count = col.null_count  # whylogs counts every NaN (ex-null) again as a NaN
    col.inf_count = int(np.isinf(present).sum())
    col.numpy = NumpyView(floats=present)
    return col


def _string_column(series: pl.Series) -> Any:
    """What whylogs' pandas path extracts from an object column of strings and None."""
    import numpy as np
    import pandas as pd
    import polars as pl
    from whylogs.core.preprocessing import NumpyView, PreprocessedColumn

    values = series.cast(pl.String)
    col = PreprocessedColumn()
    col.len = values.len()
    col.null_count = values.null_count()
    col.numpy = NumpyView(floats=np.empty(0), ints=np.empty(0, dtype=int))
    col.pandas.strings = pd.Series(values.drop_nulls().to_list(), dtype=object)
    col.pandas.tensors = pd.Series([], dtype=object)
    col.pandas.objs = pd.Series([], dtype=object)
    return col


def profile_frame_columnar(frame: pl.DataFrame, numeric: list[str], categorical: list[str]) -> Any:
    """Same DatasetProfileView as `profile_frame`, with preprocessing done by Polars."""
    wp._import_whylogs()
    from whylogs.core import DatasetProfile

    profile = DatasetProfile(schema=_resolved_schema(tuple(numeric), tuple(categorical)))
    profile._track_count += 1
    import polars as pl

    block = frame.select(pl.col(c).cast(pl.Float64) for c in numeric).to_numpy()  # one copy, nulls -> NaN
    for i, name in enumerate(numeric):
        profile._columns[name]._process_extracted_column(_numeric_column(block[:, i]))
    for name in categorical:
        profile._columns[name]._process_extracted_column(_string_column(frame.get_column(name)))
    return profile.view()
