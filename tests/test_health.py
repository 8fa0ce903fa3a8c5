"""Model health: the DeLong standard error, the CBPE estimate and the below-promise rule (pure, on
synthetic data whose truth is known), then the asset, its check and the performance sensor on real
2013 data with a concept shift (labels of one origin flipped while the features stay)."""

import json
from datetime import date, timedelta

import dagster as dg
import numpy as np
import polars as pl
import pytest

from ml_assets import lineage
from ml_assets.evaluation.metrics import _weighted_auroc
from ml_assets.keys import DATA_PARTITION_TAG, EVIDENCE_TAG, TRIGGER_TAG, UseCaseJobs, UseCaseKeys
from ml_assets.monitoring import health
from ml_assets.monitoring.health_assets import PERFORMANCE_CHECK, read_records
from ml_assets.text import readable
from resources.lakehouse import sha256_bytes
from sensors.policy import model_age, partitions_between


def _auroc(prob, y):
    return float(_weighted_auroc(np.asarray(prob, float), np.asarray(y, float), np.ones((1, len(y))))[0])


# ---- DeLong ------------------------------------------------------------------------------------------
def test_delong_auroc_is_mann_whitney_and_its_se_matches_the_sampling_spread():
    """Property: on many samples (with ties), DeLong's AUROC is the Mann-Whitney AUROC, and its standard
    error is the spread of AUROC over independent samples of the same population."""
    rng = np.random.default_rng(1)
    estimates, ses = [], []
    for _ in range(300):
        y = rng.random(800) < 0.25
        score = np.round(rng.normal(y * 0.8, 1.0), 1)  # rounded: ties
        auroc, se = health.auroc_with_se(score, y)
        assert auroc == pytest.approx(_auroc(score, y), abs=1e-12)
        estimates.append(auroc)
        ses.append(se)
    assert np.mean(ses) == pytest.approx(np.std(estimates), rel=0.15)
    assert health.auroc_with_se(np.array([0.1, 0.2]), np.array([1, 1])) == (None, None)


def test_hanley_mcneil_is_close_to_delong_on_binormal_scores():
    rng = np.random.default_rng(2)
    y = rng.random(2000) < 0.3
    auroc, se = health.auroc_with_se(rng.normal(y * 1.0, 1.0), y)
    assert health.hanley_mcneil_se(auroc, y.sum(), (~y).sum()) == pytest.approx(se, rel=0.2)


# ---- CBPE --------------------------------------------------------------------------------------------
def _calibrated(rng, n):
    p = rng.beta(2, 5, n)
    return p, rng.random(n) < p


def test_cbpe_matches_realized_auroc_within_sampling_error_on_calibrated_probabilities():
    """Property: labels drawn from the probabilities themselves. The estimate is within 2 standard errors
    of the realized AUROC about 95% of the time and unbiased; the expected ECE is the realized ECE's mean."""
    rng = np.random.default_rng(3)
    errors, z, eces, expected = [], [], [], []
    for _ in range(200):
        p, y = _calibrated(rng, int(rng.integers(300, 1500)))
        est = health.cbpe(p, 10)
        realized, se = health.auroc_with_se(p, y)
        errors.append(realized - est["auroc"])
        z.append(abs(realized - est["auroc"]) / se)
        bins = np.minimum((p * 10).astype(int), 9)
        eces.append(sum(abs(y[bins == b].mean() - p[bins == b].mean()) * (bins == b).mean() for b in np.unique(bins)))
        expected.append(est["ece"])
        assert est["positive_rate"] == pytest.approx(p.mean())
    assert np.mean(np.array(z) < 2) >= 0.9
    assert abs(np.mean(errors)) < 0.005
    assert np.mean(expected) == pytest.approx(np.mean(eces), rel=0.15)


def test_cbpe_is_visibly_off_on_miscalibrated_probabilities():
    """The same events and labels, scored with an overconfident (monotone) transform: the ranking and so
    the realized AUROC are unchanged, but the estimate, which trusts the probabilities, is far off."""
    rng = np.random.default_rng(4)
    p, y = _calibrated(rng, 5000)
    logit = np.log(p / (1 - p))
    overconfident = 1 / (1 + np.exp(-3 * logit))
    realized, se = health.auroc_with_se(overconfident, y)
    assert realized == pytest.approx(health.auroc_with_se(p, y)[0], abs=1e-12)
    assert abs(health.cbpe(p, 10)["auroc"] - realized) < 3 * se
    assert health.cbpe(overconfident, 10)["auroc"] - realized > 10 * se


# ---- the rule ----------------------------------------------------------------------------------------
def _record(spec, day: date, auroc: float | None, *, version="v1", promised=0.70, se=0.01, estimate=None):
    return {"partition": day.isoformat(), "model_version": version,
            "labels_known_at": spec.shift(day, spec.label_delay).isoformat(), "promised": {"auroc": promised},
            health.REALIZED: None if auroc is None else {"auroc": auroc, "auroc_se": se},
            health.ESTIMATED: {"auroc": estimate if estimate is not None else promised, "auroc_se": se}}


def _policy(spec, **monitoring):
    return spec.model_copy(update={"monitoring": spec.monitoring.model_copy(update=monitoring)})


def test_streak_counts_only_realized_figures_known_in_data_time(spec):
    days = spec.partition_range("2013-03-01", "2013-03-10")
    records = {d.isoformat(): _record(spec, d, 0.55 if d >= days[3] else 0.70) for d in days}
    at = days[-1]  # the newest partition's labels are known only at the next one
    streak = health.below_promise_streak(spec, records, at)
    assert [j.partition for j in streak] == [d.isoformat() for d in days[3:-spec.label_delay]]
    assert all(j.source == health.REALIZED and j.gap == pytest.approx(-0.15) for j in streak)
    assert health.severity(spec, streak) == "error"
    assert health.severity(spec, streak[-spec.monitoring.performance_warn_partitions:]) == "warn"
    assert health.severity(spec, streak[:1]) == ("ok" if spec.monitoring.performance_warn_partitions > 1 else "warn")
    # With estimates allowed, the unlabelled newest partition counts with its estimate.
    estimated = _policy(spec, performance_use_estimate=True)
    records[at.isoformat()][health.ESTIMATED]["auroc"] = 0.5
    streak = health.below_promise_streak(estimated, records, at)
    assert streak[-1].partition == at.isoformat() and streak[-1].source == health.ESTIMATED


def test_the_check_and_the_sensor_count_the_same_streak_however_long(spec):
    """The check reads only `health_assets.lookback`; the sensor keeps a longer cursor: both judge the
    same bounded window, so a 40-partition decay is reported alike (capped at that window)."""
    from ml_assets.monitoring.health_assets import lookback

    days = spec.partition_range("2013-03-01", "2013-04-09")
    everything = {d.isoformat(): _record(spec, d, 0.55) for d in days}
    at = days[-1]
    window = {k: v for k, v in everything.items() if k in set(lookback(spec, at))}
    full, bounded = health.longest_streak(spec, everything, at), health.longest_streak(spec, window, at)
    assert [j.partition for j in full] == [j.partition for j in bounded]
    assert len(full) == spec.monitoring.performance_error_partitions + 1
    assert health.severity(spec, full) == "error"


def test_the_rule_is_a_one_sided_bound_and_breaks_on_a_new_version_or_a_missing_partition(spec):
    mon = spec.monitoring
    days = spec.partition_range("2013-03-01", "2013-03-08")
    at = days[-1]
    # Just below the margin, but too uncertain: the upper bound is not below -margin.
    noisy = {d.isoformat(): _record(spec, d, 0.70 - mon.performance_margin - 0.01, se=0.05) for d in days}
    assert health.below_promise_streak(spec, noisy, at) == []
    sure = {d.isoformat(): _record(spec, d, 0.70 - mon.performance_margin - 0.01, se=0.001) for d in days}
    assert len(health.below_promise_streak(spec, sure, at)) == len(days) - spec.label_delay
    sure[days[4].isoformat()]["model_version"] = "v0"
    assert [j.partition for j in health.below_promise_streak(spec, sure, at)] == \
        [d.isoformat() for d in days[5:-spec.label_delay]]
    del sure[days[5].isoformat()]
    assert len(health.below_promise_streak(spec, sure, at)) == len(days) - 6 - spec.label_delay
    no_promise = {d.isoformat(): _record(spec, d, 0.4, promised=None) for d in days}
    assert health.below_promise_streak(spec, no_promise, at) == []


def test_one_slice_below_its_promise_is_enough_with_a_bonferroni_bound(spec):
    days = spec.partition_range("2013-03-01", "2013-03-06")
    at = days[-1]
    records = {}
    for d in days:
        r = _record(spec, d, 0.70)
        r["promised"][health.SLICES] = {"origin=A": {"auroc": 0.70}, "origin=B": {"auroc": 0.70}}
        r[health.REALIZED][health.SLICES] = {"origin=A": {"auroc": 0.70, "auroc_se": 0.03},
                                             "origin=B": {"auroc": 0.40, "auroc_se": 0.03}}
        records[d.isoformat()] = r
    streak = health.longest_streak(spec, records, at)
    assert {j.scope for j in streak} == {"origin=B"} and len(streak) == len(days) - spec.label_delay
    assert health.below_promise_streak(spec, records, at) == []  # overall keeps its promise
    # The same slice gap is not significant once the partition is judged in many more scopes.
    one = records[days[0].isoformat()]
    gap = spec.monitoring.performance_margin + 0.06
    one[health.REALIZED][health.SLICES]["origin=B"] = {"auroc": 0.70 - gap, "auroc_se": 0.03}
    assert health.judge(spec, one, at, "origin=B").below
    one[health.REALIZED][health.SLICES] |= {f"carrier={c}": {"auroc": 0.7, "auroc_se": 0.03} for c in "CDEFGHIJ"}
    assert not health.judge(spec, one, at, "origin=B").below


def test_streak_equals_the_trailing_run_of_below_partitions(spec):
    """Property: on random sequences, the streak is the run of judged-below partitions that ends at
    the newest judgeable one (brute force over the same flags)."""
    rng = np.random.default_rng(5)
    days = spec.partition_range("2013-05-01", "2013-05-30")
    for _ in range(200):
        below = rng.random(len(days)) < 0.6
        records = {d.isoformat(): _record(spec, d, 0.5 if b else 0.72) for d, b in zip(days, below, strict=True)}
        at = days[int(rng.integers(spec.label_delay, len(days)))]
        last = days.index(health.newest_judgeable(spec, at))
        expected = 0
        while last - expected >= 0 and below[last - expected]:
            expected += 1
        assert len(health.below_promise_streak(spec, records, at)) == expected


# ---- real data: the asset, its check and the sensor ---------------------------------------------------
SHIFT = date(2013, 3, 1)
UNSHIFTED = ("2013-02-15", "2013-02-28")


def _flip_origin(path, origin: str) -> None:
    """The outcome of every flight from `origin` inverted (late <-> on time); features untouched."""
    import hashlib

    frame = pl.read_parquet(path)
    late = pl.col("arr_delay") >= 15
    frame = frame.with_columns(pl.when(pl.col("origin") != origin).then(pl.col("arr_delay"))
                               .when(late).then(0.0).otherwise(30.0).alias("arr_delay")
                               .cast(frame.schema["arr_delay"]))
    frame.write_parquet(path)
    (path.parent / f"{path.name}.sha256").write_text(hashlib.sha256(path.read_bytes()).hexdigest())


def _tick(platform, spec, cursor):
    sensor = next(s for s in platform.defs.sensors if s.name == f"{spec.name}__performance_retrain")
    with dg.build_sensor_context(instance=platform.instance, cursor=cursor, definitions=platform.defs,
                                 resources=platform.defs.resources) as context:
        return sensor.evaluate_tick(context)


@pytest.fixture(scope="module")
def shifted_world(tmp_path_factory, spec):
    """January trains the champion (evaluated on Feb 1-14); Feb 15-28 run as they were; from March 1 the
    busiest origin's outcomes are flipped, one daily run per partition with a sensor tick after each."""
    import time

    from ml_assets.ops.replay import Lander
    from tests.conftest import make_platform

    landing = tmp_path_factory.mktemp("landing")
    lander = Lander(spec, landing / spec.name)
    flights = lander.frames[spec.events_table]
    origin = flights.group_by("origin").len().sort("len").get_column("origin")[-1]
    with dg.instance_for_test() as instance:
        platform = make_platform(tmp_path_factory.mktemp("lake"), instance, landing)
        platform.log_level = "CRITICAL"
        for day in spec.partition_range("2013-01-01", SHIFT + timedelta(days=6)):
            lander.land(day)
            if day >= SHIFT:
                _flip_origin(lander.landing / spec.events_table / f"{day}.parquet", origin)
        start = time.perf_counter()
        assert platform.ingest(spec, "2013-01-01", spec.evaluation.end.isoformat()).success
        t = spec.training
        assert platform.train(spec, train_start=t.start.isoformat(), train_end=t.end.isoformat(),
                              eval_start=spec.evaluation.start.isoformat(),
                              eval_end=spec.evaluation.end.isoformat()).success
        unshifted = platform.daily(spec, *UNSHIFTED)
        ticks = [(None, _tick(platform, spec, None))]
        runs, cursor = {}, ticks[0][1].cursor
        for day in spec.partition_range(SHIFT, SHIFT + timedelta(days=6)):
            runs[day] = platform.daily(spec, day.isoformat())
            data = _tick(platform, spec, cursor)
            ticks.append((day, data))
            cursor = data.cursor
            if data.run_requests:
                break
        yield {"platform": platform, "origin": origin, "unshifted": unshifted, "runs": runs, "ticks": ticks,
               "seconds": time.perf_counter() - start}


def _gap(record, scope):
    if scope == health.OVERALL:
        return record["gap"]["realized"]
    return record[health.REALIZED][health.SLICES][scope]["auroc"] - record["promised"][health.SLICES][scope]["auroc"]


def _records(world, spec, first, last):
    platform = world["platform"]
    days = [d.isoformat() for d in spec.partition_range(first, last)]
    return read_records(platform.instance, platform.defs.resources["lakehouse"], spec, days)


@pytest.mark.integration
def test_concept_shift_is_detected_through_realized_performance_within_label_delay_plus_two(shifted_world, spec,
                                                                                          capsys):
    ticks, runs = shifted_world["ticks"], shifted_world["runs"]
    assert ticks[0][1].run_requests == [], ticks[0][1].skip_message  # Feb 15-28 as they were: no request
    fired = [day for day, data in ticks if day is not None and data.run_requests]
    assert fired, [(str(d), t.skip_message) for d, t in ticks]
    # Data time from the first shifted partition to the decision: its labels are known after the label
    # delay, and the streak needs `performance_warn_partitions` of them.
    delay = partitions_between(spec, SHIFT, fired[0])
    unshifted = _records(shifted_world, spec, *UNSHIFTED)
    false_warnings = [p for p in unshifted
                      if health.severity(spec, health.longest_streak(spec, unshifted, date.fromisoformat(p))) != "ok"]
    errors = [r["estimate_error"] for r in unshifted.values() if r["estimate_error"] is not None]
    ses = [r[health.REALIZED]["auroc_se"] for r in unshifted.values()]
    shifted = _records(shifted_world, spec, SHIFT, fired[0])
    report = {"shifted_origin": shifted_world["origin"], "label_delay": spec.label_delay,
              "detection_delay_partitions": delay, "fired_at": fired[0].isoformat(),
              "false_warnings_unshifted": len(false_warnings), "unshifted_partitions": len(unshifted),
              "cbpe_minus_realized_mean": round(-float(np.mean(errors)), 4),
              "cbpe_abs_error_mean": round(float(np.mean(np.abs(errors))), 4),
              "realized_auroc_se_mean": round(float(np.mean(ses)), 4),
              "unshifted_gap": {p: round(r["gap"]["realized"], 3) for p, r in unshifted.items()},
              "shifted_gap": {p: round(r["gap"]["realized"], 3) for p, r in shifted.items()},
              "shifted_origin_gap": {p: round(_gap(r, f"origin={shifted_world['origin']}"), 3)
                                     for p, r in shifted.items()},
              "world_seconds": round(shifted_world["seconds"], 1)}
    with capsys.disabled():
        print("\nperformance monitoring:", json.dumps(report))
    assert delay <= spec.label_delay + 2
    assert false_warnings == []
    # The check of the run that fired warns with the same partitions as evidence.
    (check,) = [e for e in runs[fired[0]].get_asset_check_evaluations() if e.check_name == PERFORMANCE_CHECK]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    request = next(d for day, d in ticks if day == fired[0]).run_requests[0]
    evidence = json.loads(request.tags[EVIDENCE_TAG])
    assert check.metadata["below_partitions"].value == ", ".join(evidence["below_partitions"])
    # Its full-precision evidence is the rule's own arithmetic, row by row.
    rows = check.metadata["evidence_records"].value
    assert [r["partition"] for r in rows] == evidence["below_partitions"]
    for r in rows:
        assert r["gap"] == r["auroc"] - r["promised_auroc"]
        assert r["below"] and r["gap_upper"] < -spec.monitoring.performance_margin
        assert r["gap_upper"] >= r["gap"]  # an upper confidence bound
    # The unshifted runs' checks passed.
    (ok,) = [e for e in shifted_world["unshifted"].get_asset_check_evaluations() if e.check_name == PERFORMANCE_CHECK]
    assert ok.passed


@pytest.mark.integration
def test_the_performance_request_names_its_evidence_and_happens_once(shifted_world, spec):
    platform, ticks = shifted_world["platform"], shifted_world["ticks"]
    day, data = next((d, t) for d, t in ticks if d is not None and t.run_requests)
    (request,) = data.run_requests
    assert request.job_name == UseCaseJobs(spec.name).train
    assert request.tags[TRIGGER_TAG] == "performance" and request.tags[DATA_PARTITION_TAG] == day.isoformat()
    evidence = json.loads(request.tags[EVIDENCE_TAG])
    below = evidence["below_partitions"]
    assert below[0] == SHIFT.isoformat()  # the streak starts where the shift does
    assert below == [d.isoformat() for d in spec.partition_range(below[0], below[-1])]  # consecutive
    assert below[-1] == spec.shift(day, -spec.label_delay).isoformat()  # the newest partition with known labels
    assert len(below) >= spec.monitoring.performance_warn_partitions
    assert evidence["scope"] in (health.OVERALL, f"origin={shifted_world['origin']}")  # the shifted origin
    records = _records(shifted_world, spec, below[0], below[-1])
    for p in below:
        assert evidence["gap"][p] == pytest.approx(_gap(records[p], evidence["scope"]), abs=1e-4)
        assert evidence["gap"][p] < -spec.monitoring.performance_margin
    assert evidence["champion"] == records[below[-1]]["model_version"]
    assert request.run_key == f"performance:{evidence['champion']}:{day.isoformat()}"
    plan = evidence["plan"]
    assert plan["eval_end"] == spec.shift(day, -spec.label_delay).isoformat()  # trains on the labelled window
    again = _tick(platform, spec, None)  # the same tick re-evaluated from scratch: the same decision
    assert [r.run_key for r in again.run_requests] == [request.run_key]
    assert _tick(platform, spec, data.cursor).run_requests == []  # nothing new since the cursor


@pytest.mark.integration
def test_model_health_records_are_true_of_their_inputs(shifted_world, spec):
    """Each partition's record: its bytes match the recorded sha256, its realized AUROC is the one
    realized_performance recorded, its age is the champion's data-time age, its promise the evaluation's."""
    platform = shifted_world["platform"]
    instance, lake = platform.instance, platform.defs.resources["lakehouse"]
    keys = UseCaseKeys(spec.name)
    days = [d.isoformat() for d in spec.partition_range(UNSHIFTED[0], max(shifted_world["runs"]))]
    receipts = lineage.require_partitions(instance, keys.model_health, days)
    realized = lineage.recorded_partitions(instance, keys.realized_performance, days)
    evaluation = instance.fetch_materializations(keys.model_evaluation, limit=1).records[0]
    ev_meta = evaluation.asset_materialization.metadata
    registry = platform.defs.resources["model_registry"]
    for day in days:
        data = lake.read_bytes(receipts[day].uri, None)
        assert sha256_bytes(data) == receipts[day].sha256
        record = json.loads(data)
        served = json.loads(lineage.verify_recorded(lake, realized[day]))
        assert record["model_version"] == served["model_version"] == ev_meta["model_version"].value
        assert record[health.REALIZED]["auroc"] == pytest.approx(served["auroc"], abs=1e-4)
        assert record[health.REALIZED]["ece"] == pytest.approx(served["ece"], abs=1e-6)
        # The promise is the evaluation document's exact figure (the UI metadata shows it rounded).
        document = json.loads(lake.read_bytes(str(ev_meta["ref_uri"].value), str(ev_meta["ref_sha256"].value)))
        assert record["promised"]["auroc"] == document["metrics"]["challenger"]["auroc"]
        assert readable(record["promised"]["auroc"]) == ev_meta["challenger_auroc"].value
        assert record["promised"]["evaluation_storage_id"] == evaluation.storage_id
        trained_to = registry.get(spec.name, record["model_version"]).training_set.train_end
        assert record["age_partitions"] == model_age(spec, date.fromisoformat(day), date.fromisoformat(trained_to))
        assert record["labels_known_at"] == spec.shift(date.fromisoformat(day), spec.label_delay).isoformat()
        assert 0 < record[health.ESTIMATED]["auroc"] < 1 and record["rows"] >= served["rows"]
        meta = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=keys.model_health, asset_partitions=[day]), limit=1
        ).records[0].asset_materialization.metadata
        assert meta["realized_auroc"].value == round(record[health.REALIZED]["auroc"], 4)
        inputs = meta["input_receipts"].value
        assert inputs[keys.predictions.to_user_string()][day] == lineage.recorded_partitions(
            instance, keys.predictions, [day])[day].storage_id
