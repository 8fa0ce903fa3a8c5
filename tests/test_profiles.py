"""whylogs profiles keep drift sketches but no raw identifiers."""

import polars as pl

from ml_assets.profiles import whylogs_profile as wp
from tests import real_data


def _frame():
    return pl.DataFrame({
        "event_id": [f"secret-id-{i}" for i in range(500)],
        "temp": [float(i % 40) for i in range(500)],
        "carrier": ["AA", "UA", "B6", "DL", "EV"] * 100,
    })


def test_profile_has_distribution_and_frequent_items_only_where_wanted():
    view = wp.profile_frame(_frame(), numeric=["temp"], categorical=["carrier"])
    table = view.to_pandas()
    assert set(table.index) == {"temp", "carrier"}
    assert table.loc["temp", "distribution/n"] == 500
    top = {item.value for item in table.loc["carrier", "frequent_items/frequent_strings"]}
    assert top == {"AA", "UA", "B6", "DL", "EV"}


def test_serialized_profile_contains_no_identifier_values():
    data = wp.serialize(wp.profile_frame(_frame(), numeric=["temp"], categorical=["carrier"]))
    assert b"secret-id" not in data
    again = wp.deserialize(data)
    assert again.get_column("temp") is not None


def test_summary_rows_for_the_ui():
    rows = wp.summary_rows(wp.profile_frame(_frame(), numeric=["temp"], categorical=["carrier"]))
    by_col = {r["column"]: r for r in rows}
    assert by_col["temp"]["n"] == 500
    assert by_col["temp"]["mean"] == round(_frame().get_column("temp").mean(), 4)
    assert "AA" in by_col["carrier"]["top"] or "UA" in by_col["carrier"]["top"]


def test_summary_counts_each_null_once():
    frame = pl.DataFrame({"temp": [1.0, None, 3.0, None], "carrier": ["AA", None, "UA", "AA"]})
    rows = {r["column"]: r for r in wp.summary_rows(wp.profile_frame(frame, ["temp"], ["carrier"]))}
    assert rows["temp"]["nulls"] == 2


def _why_log(frame: pl.DataFrame, numeric: list[str], categorical: list[str]):
    """The reference: whylogs' own pandas path, fed as its documentation does."""
    import pandas as pd

    why = wp._import_whylogs()
    data = {c: frame.get_column(c).cast(pl.Float64).to_numpy() for c in numeric}
    data |= {c: frame.get_column(c).cast(pl.String).to_numpy().astype(object) for c in categorical}
    return why.log(pandas=pd.DataFrame(data), schema=wp._schema(numeric, categorical)).view()


def _same(a, b) -> bool:
    return a.to_pandas().sort_index().astype(str).equals(b.to_pandas().sort_index().astype(str))


def test_columnar_feed_gives_whylogs_own_profile_on_edge_cases():
    frame = pl.DataFrame({"temp": [1.0, None, float("nan"), float("inf"), -float("inf"), 3.5] * 50,
                          "seats": [None, 1, 2, 3, 4, 5] * 50,
                          "carrier": ["AA", None, "UA", "AA", "", "B6"] * 50})
    for part in (frame, frame.head(1), frame.clear()):
        assert _same(wp.profile_frame(part, ["temp", "seats"], ["carrier"]),
                     _why_log(part, ["temp", "seats"], ["carrier"]))


def test_columnar_feed_gives_whylogs_own_profile_on_real_feature_partitions(spec):
    from datetime import date, timedelta

    from ml_assets.features.compute import PARTITION, compute_features, compute_labels

    days = [date(2013, 2, 20) + timedelta(days=i) for i in range(4)]
    events = real_data.rows(spec, "flights", days)
    lookups = {"weather": real_data.rows(spec, "weather", days),
               "planes": real_data.rows(spec, "planes")}
    features = compute_features(spec, events, lookups, compute_labels(spec, events))
    numeric, categorical = list(spec.features.numeric), list(spec.features.categorical)
    for day in days:
        part = features.filter(pl.col(PARTITION) == day)
        assert _same(wp.profile_frame(part, numeric, categorical), _why_log(part, numeric, categorical)), day
