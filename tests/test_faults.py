"""Fault injection on a landing folder: each bad input gets a clear error and loses nothing.

Every fault targets a day that was already materialized successfully; after the failed run the
whole lakehouse (data, quarantine, models, registry, production pointer) must be byte-identical.
"""

import hashlib
import os
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from ml_assets.definitions import build_definitions
from ml_assets.runner import Platform
from ml_assets.spec import date_range
from resources import build_resources
from resources.sources import RawSourceResource, partition_date_expr

pytestmark = pytest.mark.integration

DAY = "2013-02-05"  # a day that is materialized before every fault


def _write_landing(root: Path, spec, first: str, last: str) -> None:
    source = RawSourceResource()
    days = date_range(first, last)
    for table in spec.sources:
        frame = source.read(table, spec.embedded_package, days if table.partitioned else None)
        if not table.partitioned:
            frame.write_parquet(root / f"{table.name}.parquet")
            continue
        (root / table.name).mkdir(parents=True, exist_ok=True)
        frame = frame.with_columns(partition_date_expr(table).alias("_d"))
        for day in days:
            frame.filter(pl.col("_d") == day).drop("_d").write_parquet(root / table.name / f"{day}.parquet")


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory, spec):
    landing = tmp_path_factory.mktemp("landing")
    lake = tmp_path_factory.mktemp("lake")
    _write_landing(landing, spec, "2013-01-01", "2013-02-10")
    with dg.instance_for_test() as instance:
        defs = build_definitions(build_resources(lakehouse_root=str(lake), landing_uri=str(landing)))
        platform = Platform(defs, instance, log_level="CRITICAL")
        assert platform.ingest(spec, "2013-01-01", "2013-02-07").success
        assert platform.train(spec).success or True  # promotion is not what these tests are about
        if platform.defs.resources["model_registry"].production(spec.name):
            assert platform.score(spec, "2013-02-01", "2013-02-07").success
        yield platform, landing, lake


@pytest.fixture
def flights_file(world):
    """The landing file of DAY, restored after the test."""
    _, landing, _ = world
    path = landing / "flights" / f"{DAY}.parquet"
    original = path.read_bytes()
    yield path
    path.write_bytes(original)
    for extra in path.parent.glob(f"{DAY}.csv"):
        extra.unlink()


def _fails_cleanly(world, spec, *expected: str) -> str:
    platform, _, lake = world
    before = _snapshot(lake)
    result = platform.ingest(spec, DAY, DAY, raise_on_error=False)
    assert not result.success
    text = platform.failure_text(result)
    for fragment in ("flight_delay/raw_flights", DAY, *expected):
        assert fragment in text, (fragment, text)
    assert _snapshot(lake) == before, "a failed run changed the lakehouse"
    return text


def _original(path: Path) -> pl.DataFrame:
    return pl.read_parquet(path)


def test_missing_file(world, spec, flights_file):
    os.remove(flights_file)
    _fails_cleanly(world, spec, "not found", str(flights_file.with_suffix("")))


def test_zero_byte_file(world, spec, flights_file):
    flights_file.write_bytes(b"")
    _fails_cleanly(world, spec, "empty (0 bytes)", str(flights_file))


def test_truncated_parquet(world, spec, flights_file):
    data = flights_file.read_bytes()
    flights_file.write_bytes(data[: len(data) // 2])
    _fails_cleanly(world, spec, "cannot be read", str(flights_file))


def test_truncated_csv(world, spec, flights_file):
    csv = flights_file.with_suffix(".csv")
    rows = _original(flights_file).height
    text = _original(flights_file).write_csv()
    os.remove(flights_file)
    csv.write_text(text[: len(text) - 40])  # cut in the middle of the last row
    platform, _, lake = world
    before = _snapshot(lake)
    result = platform.ingest(spec, DAY, DAY, raise_on_error=False)
    if result.success:  # the cut row is incomplete: it must be quarantined, never silently kept
        quarantine = lake / spec.name / "raw_flights_quarantine" / f"date={DAY}.parquet"
        assert pl.read_parquet(quarantine).height >= 1
        kept = pl.read_parquet(lake / spec.name / "raw_flights" / f"date={DAY}.parquet")
        assert kept.height == rows - 1
    else:
        text = platform.failure_text(result)
        assert DAY in text and str(csv) in text
        assert _snapshot(lake) == before


@pytest.mark.parametrize(
    ("mutate", "fragments"),
    [
        (lambda f: f.rename({"arr_delay": "arrival_delay"}), ["missing column(s) ['arr_delay']", "rule: schema"]),
        (lambda f: f.drop("carrier"), ["missing column(s) ['carrier']"]),
        (lambda f: f.with_columns(pl.lit("late").alias("dep_delay")), ["column 'dep_delay'", "rule: dtype", "late"]),
    ],
    ids=["renamed", "dropped", "retyped"],
)
def test_schema_faults(world, spec, flights_file, mutate, fragments):
    mutate(_original(flights_file)).write_parquet(flights_file)
    _fails_cleanly(world, spec, str(flights_file.with_suffix("")), *fragments)


@pytest.mark.parametrize(
    ("value", "rule"),
    [(float("nan"), "finite(arr_delay)"), (float("inf"), "finite(arr_delay)"), (None, "not_null(carrier)")],
    ids=["nan", "inf", "null"],
)
def test_value_floods(world, spec, flights_file, value, rule):
    frame = _original(flights_file)
    column = "carrier" if value is None else "arr_delay"
    half = pl.int_range(pl.len()) % 2 == 0
    dtype = pl.String if column == "carrier" else pl.Float64
    frame.with_columns(pl.when(half).then(pl.lit(value, dtype=dtype)).otherwise(pl.col(column)).alias(column)) \
        .write_parquet(flights_file)
    text = _fails_cleanly(world, spec, f"rule {rule}", "quarantined > allowed")
    assert "e.g. [" in text


def test_a_few_duplicate_keys_are_quarantined_not_kept(world, spec, flights_file):
    platform, _, lake = world
    frame = _original(flights_file)
    pl.concat([frame, frame.head(3)]).write_parquet(flights_file)
    assert platform.ingest(spec, DAY, DAY).success
    raw = pl.read_parquet(lake / spec.name / "raw_flights" / f"date={DAY}.parquet")
    quarantine = pl.read_parquet(lake / spec.name / "raw_flights_quarantine" / f"date={DAY}.parquet")
    assert raw.height == frame.height
    assert quarantine.height == 3 and quarantine.get_column("_rule").str.starts_with("unique_key").all()
    feats = pl.read_parquet(lake / spec.name / "features" / f"date={DAY}.parquet")
    assert feats.get_column("event_id").n_unique() == feats.height == frame.height
    meta = platform.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey([spec.name, "raw_flights"]), asset_partitions=[DAY]), limit=1
    ).records[0].asset_materialization.metadata
    assert meta["quarantined_rows"].value == 3 and "unique_key" in meta["quarantine_preview"].value


def test_many_duplicate_rows_fail_the_partition(world, spec, flights_file):
    frame = _original(flights_file)
    pl.concat([frame, frame.head(100)]).write_parquet(flights_file)
    _fails_cleanly(world, spec, "rule unique_key(")


def test_empty_day(world, spec, flights_file):
    _original(flights_file).head(0).write_parquet(flights_file)
    _fails_cleanly(world, spec, "rule row_count: 0 valid rows")


def test_late_file_replaces_the_partition_without_duplicates(world, spec, flights_file):
    platform, _, lake = world
    frame = _original(flights_file)
    late = frame.head(5).with_columns((pl.col("flight") + 9000).alias("flight"))  # flights that arrived late
    pl.concat([frame, late]).write_parquet(flights_file)
    assert platform.ingest(spec, DAY, DAY).success
    for asset in ("raw_flights", "features"):
        data = pl.read_parquet(lake / spec.name / asset / f"date={DAY}.parquet")
        assert data.height == frame.height + 5, asset
    feats = pl.read_parquet(lake / spec.name / "features" / f"date={DAY}.parquet")
    assert feats.get_column("event_id").n_unique() == feats.height
    frame.write_parquet(flights_file)
    assert platform.ingest(spec, DAY, DAY).success  # and back: the partition is replaced again
    assert pl.read_parquet(lake / spec.name / "raw_flights" / f"date={DAY}.parquet").height == frame.height


def test_contract_violations_are_not_retried(world, spec, flights_file):
    platform, _, _ = world
    flights_file.write_bytes(b"")
    result = platform.ingest(spec, DAY, DAY, raise_on_error=False)
    assert not result.success
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert retries == []
