"""The retraining policy in data time, for every cadence: plans, streaks, cooldown, age."""

from datetime import date

import pytest

from sensors import policy
from tests.conftest import FLIGHTS


def _spec(cadence: str):
    start = {"daily": date(2013, 1, 1), "weekly": date(2012, 12, 31), "monthly": date(2013, 1, 1)}[cadence]
    return FLIGHTS.model_copy(update={"cadence": cadence, "partitions_start": start})


def test_a_retrain_plan_uses_only_partitions_whose_labels_are_known(spec):
    newest = date(2013, 6, 30)
    plan = policy.retrain_plan(spec, newest)
    mon = spec.monitoring
    assert plan.eval_end == spec.shift(newest, -spec.label_delay).isoformat()
    assert len(spec.partition_range(plan.eval_start, plan.eval_end)) == int(mon.retrain_eval)
    assert date.fromisoformat(plan.train_end) == spec.shift(date.fromisoformat(plan.eval_start), -1)
    # The latest `retrain_window` labelled partitions, or all of them when the history is shorter.
    known = spec.partition_range(spec.partitions_start, plan.eval_end)
    assert len(spec.partition_range(plan.train_start, plan.eval_end)) == min(int(mon.retrain_window), len(known))
    short = spec.model_copy(update={"monitoring": mon.model_copy(update={"retrain_window": 60})})
    windowed = policy.retrain_plan(short, newest)
    assert len(spec.partition_range(windowed.train_start, windowed.eval_end)) == 60


def test_no_plan_without_enough_history(spec):
    assert policy.retrain_plan(spec, spec.shift(spec.partitions_start, 3)) is None


@pytest.mark.parametrize("cadence", ["daily", "weekly", "monthly"])
def test_drift_streaks_count_consecutive_partitions_of_the_cadence(cadence):
    spec = _spec(cadence)
    p = [spec.shift(spec.partitions_start, i).isoformat() for i in range(6)]
    flags = {p[0]: True, p[1]: False, p[2]: True, p[3]: True, p[4]: True, p[5]: False}
    assert policy.drift_streak(spec, flags, p[4]) == p[2:5]
    assert policy.drift_streak(spec, flags, p[5]) == []
    assert policy.drift_streak(spec, flags, p[0]) == [p[0]]


@pytest.mark.parametrize("cadence", ["daily", "weekly", "monthly"])
def test_cooldown_and_age_are_counted_in_partitions(cadence):
    spec = _spec(cadence)
    mon = spec.monitoring
    trained = spec.shift(spec.partitions_start, 2)
    quiet = int(mon.cooldown) + int(mon.retrain_eval)
    assert policy.in_cooldown(spec, spec.shift(trained, quiet - 1), trained)
    assert not policy.in_cooldown(spec, spec.shift(trained, quiet), trained)
    assert not policy.in_cooldown(spec, trained, None)
    assert policy.model_age(spec, spec.shift(trained, 5), trained) == 5


def test_drift_evidence_names_each_column_with_the_partitions_that_exceeded(spec):
    meta = {"fired_columns": {"temp": ["2013-02-16", "2013-02-15"]}, "alarm_partitions": ["2013-02-15", "2013-02-16"]}
    assert policy.fired_columns(meta) == {"temp": ["2013-02-15", "2013-02-16"]}
    share_only = policy.fired_columns({"fired_columns": {}, "alarm_partitions": ["2013-02-18"]})
    assert share_only == {"*share": ["2013-02-18"]}
    evidence = policy.drift_evidence(spec, {"2013-02-16": policy.fired_columns(meta), "2013-02-18": share_only})
    assert evidence == {"alarm_partitions": ["2013-02-15..2013-02-16", "2013-02-18"],
                        "fired_columns": {"*share": ["2013-02-18"], "temp": ["2013-02-15..2013-02-16"]}}
    assert policy.drift_evidence(spec, {}) == {"alarm_partitions": [], "fired_columns": {}}


@pytest.mark.parametrize("cadence", ["daily", "weekly", "monthly"])
@pytest.mark.parametrize("seed", range(5))
def test_partition_runs_cover_exactly_the_partitions_given(cadence, seed):
    """Property: expanding the runs gives back the set of partitions, and no two runs touch."""
    import random

    spec = _spec(cadence)
    rng = random.Random(seed)
    every = [spec.shift(spec.partitions_start, i).isoformat() for i in range(30)]
    chosen = {p for p in every if rng.random() < 0.6}
    runs = policy.partition_runs(spec, chosen)
    expanded = [d.isoformat() for r in runs for d in spec.partition_range(*(r.split("..") * 2)[:2])]
    assert expanded == sorted(chosen)
    ends = [r.split("..")[-1] for r in runs]
    starts = [r.split("..")[0] for r in runs]
    assert all(spec.shift(date.fromisoformat(e), 1).isoformat() != s for e, s in zip(ends, starts[1:], strict=False))


@pytest.mark.parametrize("seed", range(20))
def test_calibrated_thresholds_bound_the_reference_scores_at_the_stated_rate(seed):
    """Property: a threshold is within [floor, 1], at least the empirical quantile, exceeded by at
    most the stated share of its own samples (plus one sample of resolution), and a lower rate never
    gives a lower threshold."""
    import random

    from ml_assets.monitoring import drift_calibration as dc

    rng = random.Random(seed)
    samples = [rng.betavariate(rng.uniform(0.5, 5), rng.uniform(0.5, 5)) for _ in range(rng.randint(2, 150))]
    rate, floor = rng.uniform(0.001, 0.2), rng.uniform(0, 0.2)
    t = dc.column_threshold(samples, rate, floor)
    assert floor <= t.threshold <= 1 and t.threshold >= min(1.0, t.empirical) and t.samples == len(samples)
    assert sum(s > t.threshold for s in samples) <= rate * len(samples) + 1
    assert dc.column_threshold(samples, rate / 2, floor).threshold >= t.threshold


@pytest.mark.parametrize("seed", range(20))
def test_k_of_n_fires_exactly_when_k_partitions_exceed(seed):
    import random

    from ml_assets.monitoring.drift import k_of_n

    rng = random.Random(seed)
    days = [f"2013-02-{d:02d}" for d in range(1, rng.randint(2, 8))]
    history = {d: {"a": rng.random(), "b": rng.random()} for d in days}
    thresholds, k = {"a": rng.random()}, rng.randint(1, len(days))
    out = k_of_n(history, thresholds, k)
    above = [d for d in days if history[d]["a"] > thresholds["a"]]
    assert out["a"] == {"exceedances": len(above), "exceeding_partitions": above, "fired": len(above) >= k}
    assert out["b"]["fired"] is False and out["b"]["exceeding_partitions"] == []  # no threshold: never fires
