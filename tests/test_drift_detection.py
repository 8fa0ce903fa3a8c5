"""Detection delay, evidence and false alarms of the drift policy on real 2013 data.

The policy under test is the platform's own: per-partition Hellinger scores (`monitoring.window`
partitions, 1 by default) against the serving version's reference, per-column thresholds calibrated
on that reference's own partitions (`calibrate_frame`, the registration code), the k-of-n rule and
the share rule (`drift_decision`, the drift report's code) and the sensor's streak (`drift_streak`).

References: profiles of the features of the champion's training window (all its rows; the registered
reference holds the labelled rows and the model's scores too). Shifts are judged against the champion
that serves in February in the loop: the one trained on January. False alarms are counted on Feb-Apr
as they really were, with a rolling reference as the loop would hold it: the champion retrains when
the drift rule fires outside the cooldown or when it is older than `max_model_age` (assumed promoted),
on `retrain_plan`'s window, and its thresholds are recalibrated on that window.

Shifts from SHIFT_DAY, each a realistic silent upstream change inside the contracts' rules: the weather
source switches units (Fahrenheit -> Celsius, mph -> km/h, miles -> km, millibar -> inHg); the busiest
carrier's flights arrive under a new code; the busiest destination's flights arrive under a new code.
"""

import json
from datetime import date, timedelta

import polars as pl
import pytest

from ml_assets.monitoring.drift import drift_decision, drift_scores, merged
from ml_assets.monitoring.reference import calibrate_frame
from ml_assets.profiles import whylogs_profile as wp
from sensors import policy
from tests import real_data

SHIFT_DAY = date(2013, 2, 15)
JANUARY = (date(2013, 1, 1), date(2013, 1, 31))
QUARTER = [date(2013, 2, 1) + timedelta(days=i) for i in range(89)]  # Feb 1 .. Apr 30
UNITS = {"temp": lambda c: (c - 32) * 5 / 9, "dewp": lambda c: (c - 32) * 5 / 9,
         "wind_speed": lambda c: c * 1.609, "visib": lambda c: c * 1.609, "pressure": lambda c: c * 0.02953}


@pytest.fixture(scope="module")
def features(spec):
    days = [date(2013, 1, 1) + timedelta(days=i) for i in range(120)]
    events = real_data.rows(spec, "flights", days)
    lookups = {"weather": real_data.rows(spec, "weather", days), "planes": real_data.rows(spec, "planes")}
    from ml_assets.features.compute import compute_features, compute_labels

    return compute_features(spec, events, lookups, compute_labels(spec, events))


def _columns(spec) -> tuple[list[str], list[str]]:
    return list(spec.features.numeric), list(spec.features.categorical)


def _profiles(spec, frame: pl.DataFrame) -> dict[date, object]:
    num, cat = _columns(spec)
    return {d: wp.profile_frame(p, num, cat) for (d,), p in frame.group_by(["partition_date"])}


@pytest.fixture(scope="module")
def unshifted(spec, features):
    return _profiles(spec, features)


class Champion:
    """A reference as registration builds it: the window's profile and its calibrated thresholds."""

    def __init__(self, spec, features: pl.DataFrame, window: tuple[date, date]):
        num, cat = _columns(spec)
        rows = features.filter(pl.col("partition_date").is_between(*window))
        self.window = window
        self.view = wp.profile_frame(rows, num, cat)
        self.calibration = calibrate_frame(spec.monitoring, rows, self.view, num, cat)

    def decide(self, spec, daily: dict, day: date) -> dict:
        mon, (num, cat) = spec.monitoring, _columns(spec)
        w = int(mon.window)
        scored = {d: drift_scores(self.view, merged([daily[d - timedelta(days=i)] for i in range(w)]), num, cat,
                                  mon.quantile_bins)
                  for d in (day - timedelta(days=i) for i in range(mon.drift_alarm_partitions))}
        return drift_decision(spec, scored, day, self.calibration)


def _shifted(spec, features: pl.DataFrame, kind: str) -> dict[date, object]:
    after = pl.col("partition_date") >= SHIFT_DAY
    if kind == "units":
        frame = features.with_columns([pl.when(after).then(f(pl.col(c))).otherwise(pl.col(c)).alias(c)
                                       for c, f in UNITS.items()])
    else:
        busiest = features.get_column(kind).value_counts(sort=True).row(0)[0]
        frame = features.with_columns(pl.when(after & (pl.col(kind) == busiest)).then(pl.lit(f"N{busiest}"))
                                      .otherwise(pl.col(kind)).alias(kind))
    near = frame.filter(pl.col("partition_date").is_between(SHIFT_DAY - timedelta(days=14),
                                                            SHIFT_DAY + timedelta(days=6)))
    return _profiles(spec, near)


@pytest.mark.parametrize(("kind", "broken"), [("units", set(UNITS)), ("carrier", {"carrier"}), ("dest", {"dest"})])
def test_a_silent_break_is_detected_within_two_partitions_naming_its_days_and_columns(
        spec, features, kind, broken, capsys):
    champion = Champion(spec, features, JANUARY)
    daily = _shifted(spec, features, kind)
    flags, first = {}, None
    for day in sorted(d for d in daily if d >= SHIFT_DAY - timedelta(days=14) + timedelta(days=3)):
        decision = champion.decide(spec, daily, day)
        flags[day.isoformat()] = decision["drifted"]
        if len(policy.drift_streak(spec, flags, day.isoformat())) >= spec.monitoring.consecutive_partitions:
            first = first or (day, decision)
    assert first is not None, f"the {kind} break was never detected"
    day, decision = first
    delay = (day - SHIFT_DAY).days + 1  # partitions from the first shifted day to the alarm, inclusive
    fired = decision["fired_columns"]
    with capsys.disabled():
        print(f"\ndrift detection ({kind}):", json.dumps({
            "detection_delay_partitions": delay, "alarm": day.isoformat(), "fired_columns": fired,
            "scores_vs_thresholds": {c: [round(decision["columns"][c]["score"], 3),
                                         round(decision["columns"][c]["threshold"], 3)] for c in fired}}))
    assert delay <= 2
    assert set(fired) <= broken, f"columns the break did not touch fired: {fired}"
    assert decision["alarm_partitions"] and min(decision["alarm_partitions"]) >= SHIFT_DAY.isoformat()
    assert all(decision["columns"][c]["score"] > decision["columns"][c]["threshold"] for c in fired)


def test_at_most_one_false_alarm_per_quarter_on_unshifted_data(spec, features, unshifted, capsys):
    mon = spec.monitoring
    champion, last_trained = Champion(spec, features, JANUARY), JANUARY[1]
    flags, alarms, retrains, worst = {}, [], [], {}
    for day in QUARTER:
        decision = champion.decide(spec, unshifted, day)
        for c, v in decision["columns"].items():
            if v["threshold"]:
                worst[c] = max(worst.get(c, 0.0), v["score"] / v["threshold"])
        flags[day.isoformat()] = decision["drifted"]
        streak = policy.drift_streak(spec, flags, day.isoformat())
        if len(streak) == mon.consecutive_partitions:  # an alarm starts: the sensor would fire
            alarms.append({"day": day.isoformat(), "fired": decision["fired_columns"],
                           "share_rule": decision["share_rule_fired"]})
        cooling = policy.in_cooldown(spec, day, last_trained)
        stale = policy.model_age(spec, day, champion.window[1]) > int(mon.max_model_age)
        drifting = len(streak) >= mon.consecutive_partitions
        if not cooling and (drifting or stale):
            plan = policy.retrain_plan(spec, day)
            window = (date.fromisoformat(plan.train_start), date.fromisoformat(plan.train_end))
            champion, last_trained = Champion(spec, features, window), window[1]
            retrains.append(f"{day}: {'drift' if drifting else 'age'} -> {window[0]}..{window[1]}")
    by_quarter = len(alarms) * 90 / len(QUARTER)
    with capsys.disabled():
        print("\ndrift false alarms (Feb-Apr, rolling reference):", json.dumps({
            "alarms": alarms, "alarms_per_90_partitions": round(by_quarter, 2), "retrains": retrains,
            "max_score_over_threshold": {c: round(v, 2) for c, v in sorted(worst.items(), key=lambda kv: -kv[1])[:6]},
            "feb_mar_alarms": sum(a["day"] < "2013-04-01" for a in alarms)}))
    assert len(alarms) <= 1  # measured: one, 2013-04-25, the 7-day origin and route delay rates in the week
    # of the FAA controller furloughs (21-27 April 2013): a real change, but no shift was injected


def test_a_record_without_calibration_falls_back_to_the_fixed_threshold_and_says_so(spec, features, unshifted):
    champion = Champion(spec, features, JANUARY)
    champion.calibration = None
    decision = champion.decide(spec, unshifted, date(2013, 2, 10))
    mon = spec.monitoring
    assert decision["threshold_source"].startswith(f"fixed {mon.feature_drift_threshold}")
    assert {v["threshold"] for v in decision["columns"].values()} == {mon.feature_drift_threshold}
    assert decision["fired_columns"] == {}  # only the share rule, as before calibration existed
    assert decision["drifted"] == (decision["drifted_share"] > mon.drifted_share_threshold)


def test_the_stored_calibration_reads_back_equal_and_an_edited_one_is_refused(spec, features):
    from ml_assets.errors import RegistryError
    from ml_assets.monitoring import drift_calibration as dc

    calibration = Champion(spec, features, JANUARY).calibration
    data = calibration.to_json()
    assert dc.parse(data, "calibration.json") == calibration
    assert calibration.partitions == [d.isoformat() for d in spec.partition_range(*JANUARY)]
    assert calibration.columns["temp"].samples == 31  # one held-out window per January day
    edited = json.loads(data)
    edited["columns"]["temp"]["threshold"] = "high"
    with pytest.raises(RegistryError, match=r"calibration\.json"):
        dc.parse(json.dumps(edited).encode(), "calibration.json")
