"""whylogs profiles keep drift sketches but no raw identifiers."""

import polars as pl

from ml_assets.profiles import whylogs_profile as wp


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
