"""The feature function on real days: no leakage, determinism, point-in-time lookups."""

from datetime import date, timedelta

import polars as pl
import pytest

from ml_assets.features.compute import EVENT_ID, LABEL, PARTITION, compute_features, compute_labels
from tests import real_data

DAYS = [date(2013, 3, 1) + timedelta(days=i) for i in range(40)]


@pytest.fixture(scope="module")
def inputs(spec):
    events = real_data.rows(spec, "flights", DAYS)
    lookups = {
        "weather": real_data.rows(spec, "weather", DAYS),
        "planes": real_data.rows(spec, "planes"),
    }
    return events, lookups, compute_labels(spec, events)


def _features(spec, inputs, labels=None):
    events, lookups, default_labels = inputs
    return compute_features(spec, events, lookups, default_labels if labels is None else labels)


def test_changing_labels_on_day_d_changes_no_feature_on_or_before_d(spec, inputs):
    before = _features(spec, inputs)
    d = DAYS[20]
    _, _, labels = inputs
    flipped = labels.with_columns(
        pl.when(pl.col(PARTITION) == d).then(~pl.col(LABEL)).otherwise(pl.col(LABEL)).alias(LABEL)
    )
    after = _features(spec, inputs, flipped)
    upto = pl.col(PARTITION) <= d
    assert before.filter(upto).equals(after.filter(upto))
    # ... and the change is visible from the first day the label is known: the test can fail.
    known = d + timedelta(days=spec.label_delay)
    later = pl.col(PARTITION) == known
    assert not before.filter(later).equals(after.filter(later))


def test_future_labels_are_ignored_entirely(spec, inputs):
    """Handing the function labels from the future (a hidden full-table read) must change nothing."""
    _, _, labels = inputs
    first_half = labels.filter(pl.col(PARTITION) < DAYS[20])
    a = _features(spec, inputs, labels).filter(pl.col(PARTITION) < DAYS[20])
    b = _features(spec, inputs, first_half).filter(pl.col(PARTITION) < DAYS[20])
    assert a.equals(b)


def test_features_are_deterministic_and_one_row_per_event(spec, inputs):
    a, b = _features(spec, inputs), _features(spec, inputs)
    assert a.equals(b)
    events, _, _ = inputs
    assert a.height == events.height
    assert a.get_column(EVENT_ID).n_unique() == a.height


def test_no_outcome_column_reaches_the_features(spec, inputs):
    features = _features(spec, inputs)
    post_departure = {"dep_time", "dep_delay", "arr_time", "arr_delay", "air_time", LABEL}
    assert not post_departure & set(features.columns)


def test_weather_is_joined_at_the_scheduled_hour(spec, inputs):
    events, lookups, _ = inputs
    features = _features(spec, inputs)
    row = events.row(500, named=True)
    weather = lookups["weather"].filter(
        (pl.col("origin") == row["origin"]) & (pl.col("year") == row["year"]) & (pl.col("month") == row["month"])
        & (pl.col("day") == row["day"]) & (pl.col("hour") == row["hour"])
    )
    event_id = "|".join(str(row[c]) for c in spec.event_id_columns)
    feature_row = features.filter(pl.col(EVENT_ID) == event_id).row(0, named=True)
    if weather.height:
        assert feature_row["temp"] == weather.get_column("temp")[0]


def test_rolling_rates_are_rates(spec, inputs):
    features = _features(spec, inputs)
    for rate in spec.features.rolling_rates:
        for name in rate.feature_names(spec.cadence):
            values = features.get_column(name).drop_nulls()
            assert values.len() > 0 and values.min() >= 0 and values.max() <= 1, name


def test_month_chunks_parquet_inputs_and_the_audited_sql_give_the_same_features(spec, inputs, tmp_path):
    """Chunking is a memory bound, not a semantic: any chunk size, Parquet or Polars inputs, and the
    one-statement SQL stored in the asset's metadata all give the same rows."""
    import duckdb

    from ml_assets.features.compute import feature_sql, iter_features

    events, lookups, labels = inputs
    whole = _features(spec, inputs)
    relations = {"events": events, "labels": labels, **lookups}
    by_month = list(iter_features(spec, relations, chunk_rows=1))
    assert len(by_month) == 2  # March and April: the test exercises a chunk boundary
    assert pl.concat(by_month).sort(PARTITION, EVENT_ID).equals(whole)
    paths = {}
    for name, frame in relations.items():
        paths[name] = str(tmp_path / f"{name}.parquet")
        frame.write_parquet(paths[name])
    assert pl.concat(iter_features(spec, paths)).sort(PARTITION, EVENT_ID).equals(whole)
    with duckdb.connect() as con:
        for name, frame in relations.items():
            con.register(name, frame.to_arrow())
        assert con.sql(feature_sql(spec)).pl().equals(whole)


def test_rolling_rates_match_a_direct_count_of_known_labels(spec, inputs):
    """Recount a sample of rates from the labels by hand: window edges, label delay and prior."""
    *_, labels = inputs
    features = _features(spec, inputs).sample(40, seed=7)
    delay = spec.label_delay
    for rate in spec.features.rolling_rates:
        for w, name in zip(rate.windows, rate.feature_names(spec.cadence), strict=True):
            for row in features.iter_rows(named=True):
                day = row[PARTITION]
                known = labels.filter((pl.col(PARTITION) <= day - timedelta(days=delay))
                                      & (pl.col(PARTITION) > day - timedelta(days=delay + w)))
                if known.is_empty():
                    assert row[name] is None
                    continue
                prior = known.get_column(LABEL).mean()
                group = known.filter(pl.all_horizontal(pl.col(k) == row[k] for k in rate.keys))
                expected = (group.get_column(LABEL).sum() + rate.prior_weight * prior) / (
                    group.height + rate.prior_weight)
                assert row[name] == pytest.approx(expected, rel=1e-12), (name, row[EVENT_ID])
