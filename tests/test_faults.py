"""Fault injection: each bad input gets a clear error naming asset, partition, file, column and rule,
and loses nothing; every byte read is verified; no row is dropped silently.

Every landing fault targets a partition that was already materialized successfully; after the failed
run the whole lakehouse (data, quarantine, models, registry, production pointer) must be byte-identical.
"""

import hashlib
import os
import random
import stat
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from ml_assets import tables
from ml_assets.keys import UseCaseKeys
from ml_assets.ops.replay import Lander
from tests.conftest import make_platform, train_window

pytestmark = pytest.mark.integration

DAY = "2013-02-05"  # a partition that is materialized before every fault


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory, spec):
    landing_root = tmp_path_factory.mktemp("landing")
    lake = tmp_path_factory.mktemp("lake")
    landing = landing_root / spec.name
    lander = Lander(spec, landing)
    for day in spec.partition_range("2013-01-01", "2013-02-10"):
        lander.land(day)
    with dg.instance_for_test() as instance:
        platform = make_platform(lake, instance, landing_root)
        platform.log_level = "CRITICAL"
        assert platform.ingest(spec, "2013-01-01", "2013-02-07").success
        assert train_window(platform).success
        assert platform.score(spec, "2013-02-01", "2013-02-07").success
        yield platform, landing, lake


@pytest.fixture
def flights_file(world):
    """The landing file of DAY without its delivered checksum (restored after the test)."""
    _, landing, _ = world
    path = landing / "flights" / f"{DAY}.parquet"
    sidecar = Path(f"{path}.sha256")
    original, checksum = path.read_bytes(), sidecar.read_bytes()
    sidecar.unlink()
    yield path
    path.write_bytes(original)
    sidecar.write_bytes(checksum)
    for extra in path.parent.glob(f"{DAY}.csv"):
        extra.unlink()


def _raw_meta(platform, spec, day=DAY):
    return platform.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=UseCaseKeys(spec.name).raw("flights"), asset_partitions=[day]), limit=1
    ).records[0].asset_materialization.metadata


def _read(platform, spec, asset_key, day=DAY):
    frame, _ = tables.read_partitions(platform, platform.defs.resources["lakehouse"], spec, asset_key,
                                      spec.partition_range(day, day))
    return frame


def _fails_cleanly(world, spec, *expected: str, job: str = "ingest") -> str:
    platform, _, lake = world
    before = _snapshot(lake)
    result = getattr(platform, job)(spec, DAY, DAY, raise_on_error=False)
    assert not result.success
    text = platform.failure_text(result)
    for fragment in (DAY, *expected):
        assert fragment in text, (fragment, text)
    assert "Exceeded max_retries" not in text
    assert [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"] == []
    assert _snapshot(lake) == before, "a failed run changed the lakehouse"
    return text


def _original(path: Path) -> pl.DataFrame:
    return pl.read_parquet(path)


def test_missing_file(world, spec, flights_file):
    os.remove(flights_file)
    _fails_cleanly(world, spec, "flight_delay/raw_flights", "not found", str(flights_file.with_suffix("")))


def test_zero_byte_file(world, spec, flights_file):
    flights_file.write_bytes(b"")
    _fails_cleanly(world, spec, "flight_delay/raw_flights", "empty (0 bytes)", str(flights_file))


def test_truncated_parquet(world, spec, flights_file):
    data = flights_file.read_bytes()
    flights_file.write_bytes(data[: len(data) // 2])
    _fails_cleanly(world, spec, "flight_delay/raw_flights", "cannot be read", str(flights_file))


def test_every_byte_flip_in_a_checksummed_delivery_is_detected(world, spec):
    """With the producer's checksum beside the file, no flipped byte can pass as changed values."""
    _, landing, _ = world
    path = landing / "flights" / f"{DAY}.parquet"
    original = path.read_bytes()
    rng = random.Random(7)
    try:
        for offset in rng.sample(range(len(original)), 3):
            flipped = bytearray(original)
            flipped[offset] ^= 1 << rng.randrange(8)
            path.write_bytes(bytes(flipped))
            _fails_cleanly(world, spec, "delivered checksum", str(path))
    finally:
        path.write_bytes(original)


def test_latin1_csv_names_the_offset_line_and_column(world, spec, flights_file):
    frame = _original(flights_file).with_columns(pl.lit("Zürich").alias("dest"))
    csv = flights_file.with_suffix(".csv")
    os.remove(flights_file)
    csv.write_bytes(frame.write_csv().encode("latin-1"))
    _fails_cleanly(world, spec, "not valid UTF-8 at byte offset", "line 2", "column 'dest'", str(csv))


@pytest.mark.parametrize(
    ("mutate", "fragments"),
    [
        (lambda f: f.rename({"arr_delay": "arrival_delay"}), ["missing column(s) ['arr_delay']", "rule: schema"]),
        (lambda f: f.drop("carrier"), ["missing column(s) ['carrier']"]),
        (lambda f: f.with_columns(pl.lit("late").alias("dep_delay")), ["column 'dep_delay'", "rule: dtype", "late"]),
        (lambda f: f.with_columns(pl.lit(515.7).alias("dep_time")), ["column 'dep_time'", "rule: dtype", "515.7"]),
    ],
    ids=["renamed", "dropped", "retyped", "fractional-int"],
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


def test_rows_dated_elsewhere_are_quarantined_and_counted(world, spec, flights_file):
    """Rows of another partition in a file are never dropped: quarantined (partition_mismatch), counted."""
    platform, _, _ = world
    frame = _original(flights_file)
    nextday = _original(flights_file.with_name("2013-02-06.parquet")).head(4)
    pl.concat([frame, nextday]).write_parquet(flights_file)
    assert platform.ingest(spec, DAY, DAY).success
    meta = _raw_meta(platform, spec)
    assert meta["rows_read"].value == frame.height + 4
    assert meta["rows_written"].value == frame.height and meta["quarantined_rows"].value == 4
    quarantine = _read(platform, spec, UseCaseKeys(spec.name).quarantine("flights"))
    assert quarantine.height == 4 and quarantine.get_column("_rule").str.contains("partition_mismatch").all()


def test_many_rows_dated_elsewhere_fail_the_partition(world, spec, flights_file):
    frame = _original(flights_file)
    nextday = _original(flights_file.with_name("2013-02-06.parquet"))
    pl.concat([frame, nextday.head(frame.height // 3)]).write_parquet(flights_file)
    _fails_cleanly(world, spec, "partition_mismatch", "quarantined > allowed")


def test_a_cross_column_rule_quarantines_inconsistent_rows(world, spec, flights_file):
    platform, _, _ = world
    frame = _original(flights_file)
    bad = pl.int_range(pl.len()) < 2
    frame.with_columns(pl.when(bad).then((pl.col("hour") + 1) % 24).otherwise(pl.col("hour")).alias("hour")) \
        .write_parquet(flights_file)
    assert platform.ingest(spec, DAY, DAY).success
    quarantine = _read(platform, spec, UseCaseKeys(spec.name).quarantine("flights"))
    assert quarantine.get_column("_rule").str.contains("date_columns_match_time_hour").sum() == 2


def test_undeclared_columns_are_noted(world, spec, flights_file):
    platform, _, _ = world
    _original(flights_file).with_columns(pl.lit(1).alias("gate")).write_parquet(flights_file)
    assert platform.ingest(spec, DAY, DAY).success
    assert _raw_meta(platform, spec)["extra_columns"].value == "gate"


def test_a_few_duplicate_keys_are_quarantined_not_kept(world, spec, flights_file):
    platform, _, _ = world
    keys = UseCaseKeys(spec.name)
    frame = _original(flights_file)
    pl.concat([frame, frame.head(3)]).write_parquet(flights_file)
    assert platform.ingest(spec, DAY, DAY).success
    assert _read(platform, spec, keys.raw("flights")).height == frame.height
    quarantine = _read(platform, spec, keys.quarantine("flights"))
    assert quarantine.height == 3 and quarantine.get_column("_rule").str.starts_with("unique_key").all()
    feats = _read(platform, spec, keys.features)
    assert feats.get_column("event_id").n_unique() == feats.height == frame.height
    meta = _raw_meta(platform, spec)
    assert meta["quarantined_rows"].value == 3 and "unique_key" in meta["quarantine_preview"].value


def test_empty_day(world, spec, flights_file):
    _original(flights_file).head(0).write_parquet(flights_file)
    _fails_cleanly(world, spec, "rule row_count: 0 valid rows")


def test_late_file_replaces_the_partition_without_duplicates(world, spec, flights_file):
    platform, _, _ = world
    keys = UseCaseKeys(spec.name)
    frame = _original(flights_file)
    late = frame.head(5).with_columns((pl.col("flight") + 9000).alias("flight"))  # flights that arrived late
    pl.concat([frame, late]).write_parquet(flights_file)
    assert platform.ingest(spec, DAY, DAY).success
    for key in (keys.raw("flights"), keys.features):
        assert _read(platform, spec, key).height == frame.height + 5, key
    frame.write_parquet(flights_file)
    assert platform.ingest(spec, DAY, DAY).success  # and back: the partition is replaced again
    assert _read(platform, spec, keys.raw("flights")).height == frame.height


def test_a_flipped_byte_in_a_stored_partition_fails_every_reader(world, spec):
    """Features and predictions are read only if their bytes match the sha256 recorded at write."""
    platform, _, _ = world
    keys = UseCaseKeys(spec.name)
    lakehouse = platform.defs.resources["lakehouse"]
    for key, job in ((keys.features, "score"), (keys.raw("flights"), "ingest")):
        path = Path(lakehouse.partition_uri(spec.name, key.path[-1], DAY))
        original = path.read_bytes()
        flipped = bytearray(original)
        flipped[len(flipped) // 2] ^= 0x10
        try:
            path.write_bytes(bytes(flipped))
            if job == "score":
                _fails_cleanly(world, spec, key.to_user_string(), "sha256", str(path), job=job)
            else:  # the labels step reads the raw partition this run just rewrote: the damage is repaired
                assert platform.ingest(spec, DAY, DAY).success
                assert path.read_bytes() == original
        finally:
            path.write_bytes(original)


def test_files_are_owner_only_and_stale_temp_files_are_cleaned(world, spec):
    platform, _, lake = world
    lakehouse = platform.defs.resources["lakehouse"]
    path = Path(lakehouse.partition_uri(spec.name, "features", DAY))
    stale = path.with_name(f".tmp-{'d' * 32}-{path.name}")  # as a killed write leaves it
    stale.write_bytes(b"partial")
    os.utime(stale, (0, 0))
    assert platform.ingest(spec, DAY, DAY).success
    assert not stale.exists()
    for p in [path, *Path(lake).rglob("*.safetensors")]:
        assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, p
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
