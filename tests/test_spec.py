"""The use-case spec: YAML in, validated spec out; every cross-reference mistake is named at load
(file, field, reason); spans, cadences and event times behave."""

import copy
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest
import yaml
from pydantic import ValidationError

from ml_assets.components.references import UseCaseError, check_references
from ml_assets.features.compute import feature_columns
from ml_assets.raw.event_time import local_time_expr, partition_expr
from ml_assets.spec import EventTimeSpec, UseCaseSpec
from ml_assets.spec import cadence as cad
from ml_assets.spec.catalog import DEFS_FOLDER, inline_sql_files, load_spec, spec_files
from ml_assets.spec.schema_doc import render_schema

FLIGHT_YAML = DEFS_FOLDER / "flight_delay" / "defs.yaml"


def _attributes() -> dict:
    from ml_assets.spec.catalog import inline_sql_files

    return copy.deepcopy(inline_sql_files(yaml.safe_load(FLIGHT_YAML.read_text())["attributes"], FLIGHT_YAML.parent))


def _problems(mutate) -> str:
    data = _attributes()
    mutate(data)
    with pytest.raises(UseCaseError) as info:
        check_references(UseCaseSpec.model_validate(data), "flight_delay/defs.yaml")
    return str(info.value)


def test_every_use_case_in_the_defs_folder_validates():
    names = [load_spec(p).name for p in spec_files()]
    assert "flight_delay" in names and len(names) == len(set(names))


def test_spec_round_trips(spec):
    assert UseCaseSpec.model_validate(yaml.safe_load(yaml.safe_dump(spec.to_dict()))) == spec


def test_sections_with_defaults_may_be_omitted():
    data = _attributes()
    for section in ("model", "promotion", "monitoring"):
        data.pop(section, None)
    spec = UseCaseSpec.model_validate(data)
    assert spec.model.epochs == 12 and spec.monitoring.window == 1


def test_unknown_fields_are_rejected_by_name():
    data = _attributes()
    data["model"] = {"learning_rat": 0.1}
    with pytest.raises(ValidationError, match="learning_rat"):
        UseCaseSpec.model_validate(data)


@pytest.mark.parametrize(("mutate", "field", "reason"), [
    (lambda d: d["label"].update(expression="arrival_delay >= 15"), "label.expression", "arrival_delay"),
    (lambda d: d["label"].update(known_when="arr_delay IS NOT"), "label.known_when", ""),
    (lambda d: d["features"]["derived"].update(dep_hour="e.hour + e.minutes"), "features.derived.dep_hour",
     "minutes"),
    (lambda d: d["features"]["lookups"][1].update(join={"tail": "tailnum"}), "features.lookups[1].join", "'tail'"),
    (lambda d: d["evaluation"].update(slices=["carrier", "airline"]), "evaluation.slices", "'airline'"),
    (lambda d: d["evaluation"].update(baseline_feature="route_rate_90d"), "evaluation.baseline_feature",
     "route_rate_90d"),
    (lambda d: d["features"]["rolling_rates"][0].update(keys=["tailnum"]), "features.rolling_rates[0].keys",
     "tailnum"),
    (lambda d: d["features"]["numeric"].append("speed"), "features.numeric", "'speed'"),
    (lambda d: d.update(protected_attributes=["origin"]), "protected_attributes", "model input"),
    (lambda d: d["tables"]["flights"].update(primary_key=["flight_id"]), "tables.flights.primary_key",
     "flight_id"),
    (lambda d: d["tables"]["flights"]["event_time"].update(column="sched_time"), "tables.flights.event_time",
     "sched_time"),
    (lambda d: d["tables"]["flights"]["rules"][0].update(sql="make_date(yr, month, day) = now()"),
     "tables.flights.rules", "yr"),
    (lambda d: d["training"].update(end="2014-03-01"), "training", "outside"),
])
def test_a_cross_reference_mistake_names_file_field_and_reason(mutate, field, reason):
    text = _problems(mutate)
    line = next((ln for ln in text.splitlines() if f"flight_delay/defs.yaml: {field}" in ln), None)
    assert line is not None, text
    assert reason in line, text


def test_all_problems_are_reported_at_once():
    def two(d):
        d["label"]["expression"] = "nope >= 1"
        d["evaluation"]["slices"] = ["nowhere"]

    assert "2 problem(s)" in _problems(two)


def test_every_broken_expression_of_one_scope_is_named():
    """Expressions of one scope are bound in one query first; a failure must still name each broken field."""
    def two(d):
        d["features"]["derived"].update(dep_hour="e.hour + e.minutes", log_distance="ln(e.dist)")

    text = _problems(two)
    assert "features.derived.dep_hour: " in text and "minutes" in text, text
    assert "features.derived.log_distance: " in text and "dist" in text, text
    assert "features.derived.dep_hour, " not in text  # each named alone, not the group


def test_a_passing_sql_check_is_memoized_by_its_statements_and_a_failing_one_never(tmp_path, monkeypatch):
    """The memo skips DuckDB only for the exact statements (and DuckDB version) that once bound."""
    from ml_assets.components import references

    monkeypatch.setenv(references.MEMO_ENV, str(tmp_path))
    spec = UseCaseSpec.model_validate(_attributes())
    check_references(spec)
    assert len(list(tmp_path.glob("*.ok"))) == 1

    def no_duckdb(*_args):
        raise AssertionError("bound in DuckDB although these statements passed before")

    monkeypatch.setattr(references, "_bind", no_duckdb)
    check_references(spec)  # the memo: no bind
    monkeypatch.undo()
    monkeypatch.setenv(references.MEMO_ENV, str(tmp_path))
    for _ in range(2):  # a changed expression is a new key: bound, refused, and never memoized
        assert "features.derived.dep_hour" in _problems(
            lambda d: d["features"]["derived"].update(dep_hour="e.hour + e.minutes"))
    assert len(list(tmp_path.glob("*.ok"))) == 1
    monkeypatch.setenv(references.MEMO_ENV, "off")  # `make validate`: always bound
    monkeypatch.setattr(references, "_bind", no_duckdb)
    with pytest.raises(AssertionError, match="bound in DuckDB"):
        check_references(spec)


def test_every_model_input_is_produced_by_the_feature_function(spec):
    assert set(spec.features.model_inputs) <= set(feature_columns(spec))


def test_label_history_offsets_respect_the_label_delay(spec):
    start, end = spec.label_history_offsets
    assert end == -spec.label_delay
    assert end - start + 1 == spec.features.max_window


def test_fingerprint_is_stable_and_sensitive(spec):
    changed = spec.model_copy(update={"model": spec.model.model_copy(update={"epochs": spec.model.epochs + 1})})
    assert spec.fingerprint() == UseCaseSpec.model_validate(spec.to_dict()).fingerprint()
    assert changed.fingerprint("model") != spec.fingerprint("model")
    assert changed.fingerprint("features") == spec.fingerprint("features")


@pytest.mark.parametrize(("value", "cadence", "partitions"), [
    (28, "daily", 28), ("28d", "daily", 28), ("4w", "daily", 28), ("4w", "weekly", 4), ("3mo", "monthly", 3),
    ("1y", "monthly", 12), ("2w", "weekly", 2),
])
def test_spans_become_partition_counts(value, cadence, partitions):
    assert cad.span_partitions(value, cadence) == partitions


@pytest.mark.parametrize(("value", "cadence"), [("10d", "weekly"), ("1mo", "daily"), ("5x", "daily"), (-3, "daily")])
def test_spans_that_are_not_whole_partitions_are_refused(value, cadence):
    with pytest.raises(ValueError):
        cad.span_partitions(value, cadence)


def test_a_span_mistake_names_its_field():
    data = _attributes()
    data["monitoring"] = {"window": "10d"}
    data["cadence"] = "weekly"
    with pytest.raises(ValidationError, match=r"monitoring\.window"):
        UseCaseSpec.model_validate(data)


@pytest.mark.parametrize("cadence", ["daily", "weekly", "monthly"])
def test_cadence_arithmetic_is_consistent(cadence):
    first = cad.floor(date(2013, 3, 17), cadence)
    for n in (-5, -1, 0, 1, 13):
        shifted = cad.shift(first, n, cadence)
        assert cad.floor(shifted, cadence) == shifted
        assert cad.shift(shifted, -n, cadence) == first
        if n >= 0:
            assert len(cad.partition_range(first, shifted, cadence)) == n + 1
    assert cad.floor(date(2013, 3, 17), "weekly") == date(2013, 3, 11)  # ISO weeks start on Monday
    assert cad.floor(date(2013, 3, 17), "monthly") == date(2013, 3, 1)


@pytest.mark.parametrize(("fmt", "values", "dtype"), [
    ("iso", ["2013-03-10T06:30:00Z", "2013-03-10T07:30:00Z", "2013-11-03T05:30:00Z", "2013-11-03T06:30:00Z"],
     pl.String),
    ("iso", ["2013-03-10T01:30:00-05:00", "2013-03-10T03:30:00-04:00", "2013-11-03T01:30:00-04:00",
             "2013-11-03T01:30:00-05:00"], pl.String),
    ("unix_seconds", [1362897000, 1362900600, 1383456600, 1383460200], pl.Int64),
])
def test_event_time_is_local_and_correct_across_dst(fmt, values, dtype):
    """Around both 2013 DST switches in New York: UTC instants -> local wall-clock times."""
    spec = EventTimeSpec(column="t", format=fmt)
    frame = pl.DataFrame({"t": pl.Series(values, dtype=dtype)})
    local = frame.select(local_time_expr(spec, "America/New_York", frame.schema["t"]).alias("x")).get_column("x")
    assert local.to_list() == [datetime(2013, 3, 10, 1, 30), datetime(2013, 3, 10, 3, 30),
                               datetime(2013, 11, 3, 1, 30), datetime(2013, 11, 3, 1, 30)]


def test_event_time_partitions_follow_the_cadence():
    frame = pl.DataFrame({"x": [datetime(2013, 3, 17, 23, 59), datetime(2013, 3, 18, 0, 1)]})
    weeks = frame.select(partition_expr(pl.col("x"), "weekly")).to_series().to_list()
    months = frame.select(partition_expr(pl.col("x"), "monthly")).to_series().to_list()
    assert weeks == [date(2013, 3, 11), date(2013, 3, 18)] and months == [date(2013, 3, 1)] * 2


def test_the_schema_document_is_generated_from_the_models():
    doc = Path(__file__).resolve().parents[1] / "docs" / "use-case-schema.md"
    assert doc.read_text() == render_schema() + "\n", "run `mlp schema > docs/use-case-schema.md`"
    for section in ("UseCaseSpec", "TableSpec", "EventTimeSpec", "PromotionSpec", "MonitoringSpec"):
        assert f"## `{section}`" in doc.read_text()


def test_long_sql_lives_in_files_beside_the_yaml(tmp_path):
    (tmp_path / "rule.sql").write_text("-- a comment\nhour = hour(_event_time);\n")
    assert inline_sql_files({"a": ["file:rule.sql", "x"]}, tmp_path) == {"a": ["-- a comment\nhour = hour(_event_time)",
                                                                             "x"]}
    with pytest.raises(ValueError, match="inside"):
        inline_sql_files({"a": "file:../../etc/evil.sql"}, tmp_path)
    with pytest.raises(FileNotFoundError, match=r"missing\.sql"):
        inline_sql_files({"a": "file:missing.sql"}, tmp_path)


@pytest.mark.parametrize(("override", "reason"), [
    ({"drift_alarm_exceedances": 4, "drift_alarm_partitions": 3}, "no column could ever fire"),
    ({"performance_warn_partitions": 5, "performance_error_partitions": 4}, "fewer than"),
    ({"health_window": 0}, "health_window .0. must be at least one partition"),
])
def test_monitoring_settings_that_could_never_work_fail_at_load(override, reason):
    from ml_assets.spec.model import MonitoringSpec

    with pytest.raises(ValueError, match=reason):
        MonitoringSpec.model_validate(override)
