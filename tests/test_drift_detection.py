"""Detection delay and false alarms of the drift policy on real 2013 data.

Reference: January's features (a champion trained on January). Unshifted stretch: February and
March as they really were. Shifted stretch: the same days, but from SHIFT_DAY the weather source
switches units (Fahrenheit -> Celsius, mph -> km/h, miles -> km, millibar -> inHg), a realistic
silent upstream change. The policy: a day is drifted when more than `drifted_share_threshold` of
the columns exceed `feature_drift_threshold` over the trailing window; a retrain is requested after
`consecutive_partitions` drifted days.
"""

import json
from datetime import date, timedelta

import polars as pl
import pytest

from ml_assets.features.compute import compute_features, compute_labels
from ml_assets.monitoring.drift import drift_scores, summarize
from ml_assets.profiles import whylogs_profile as wp
from sensors.policy import drift_streak
from tests import real_data

SHIFT_DAY = date(2013, 2, 15)
STRETCH = [date(2013, 2, 1) + timedelta(days=i) for i in range(59)]  # Feb 1 .. Mar 31
UNITS = {"temp": lambda c: (c - 32) * 5 / 9, "dewp": lambda c: (c - 32) * 5 / 9,
         "wind_speed": lambda c: c * 1.609, "visib": lambda c: c * 1.609, "pressure": lambda c: c * 0.02953}


@pytest.fixture(scope="module")
def features(spec):
    days = [date(2013, 1, 1) + timedelta(days=i) for i in range(90)]
    events = real_data.rows(spec, "flights", days)
    lookups = {"weather": real_data.rows(spec, "weather", days),
               "planes": real_data.rows(spec, "planes")}
    return compute_features(spec, events, lookups, compute_labels(spec, events))


def _first_alarm(spec, features: pl.DataFrame, shifted: bool) -> tuple[list[date], dict[str, float]]:
    mon = spec.monitoring
    num, cat = list(spec.features.numeric), list(spec.features.categorical)
    reference = wp.profile_frame(features.filter(pl.col("partition_date") < date(2013, 2, 1)), num, cat)
    if shifted:
        after = pl.col("partition_date") >= SHIFT_DAY
        features = features.with_columns([pl.when(after).then(f(pl.col(c))).otherwise(pl.col(c)).alias(c)
                                          for c, f in UNITS.items()])
    daily = {d: wp.profile_frame(p, num, cat) for (d,), p in features.group_by(["partition_date"])}
    flags, shares, alarms = {}, {}, []
    for day in STRETCH:
        window = [daily[day - timedelta(days=i)] for i in range(int(mon.window))]
        current = window[0]
        for view in window[1:]:
            current = current.merge(view)
        summary = summarize(drift_scores(reference, current, num, cat, mon.quantile_bins), mon.feature_drift_threshold)
        flags[day.isoformat()] = summary["drifted_share"] > mon.drifted_share_threshold
        shares[day.isoformat()] = round(summary["drifted_share"], 3)
        if len(drift_streak(spec, flags, day.isoformat())) == mon.consecutive_partitions:
            alarms.append(day)
    return alarms, shares


def test_detection_delay_and_false_alarms(spec, features, capsys):
    false_alarms, unshifted_shares = _first_alarm(spec, features, shifted=False)
    alarms, shifted_shares = _first_alarm(spec, features, shifted=True)
    detected = [a for a in alarms if a >= SHIFT_DAY]
    assert detected, f"the unit switch was never detected: {shifted_shares}"
    delay = (detected[0] - SHIFT_DAY).days + 1  # partitions from the first shifted day to the alarm
    report = {"detection_delay_partitions": delay, "false_alarms_on_unshifted_stretch": len(false_alarms),
              "unshifted_days": len(STRETCH), "max_unshifted_share": max(unshifted_shares.values()),
              "first_alarm": detected[0].isoformat()}
    with capsys.disabled():
        print("\ndrift detection:", json.dumps(report))
    # A trailing window needs a few shifted days before a column crosses, then the streak must build.
    assert delay <= int(spec.monitoring.window) + spec.monitoring.consecutive_partitions - 1
    assert len(false_alarms) == 0
