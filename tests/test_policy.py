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
    assert len(spec.partition_range(plan.train_start, plan.eval_end)) == int(mon.retrain_window)


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
