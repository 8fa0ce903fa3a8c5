"""Promotion rules, decided on an evaluation document alone: every rule refuses on its own, and the
interval (not the point estimate) decides."""

import pytest

from ml_assets.registry.gates import decide
from tests.conftest import FLIGHTS

SPEC = FLIGHTS.model_copy(update={"promotion": FLIGHTS.promotion.model_copy(update={
    "min_improvement": 0.0, "max_calibration_error": 0.05, "max_slice_regression": 0.03,
    "min_rows_per_partition": 100, "non_inferiority_margin": 0.005})})
MAX_AGE = int(SPEC.monitoring.max_model_age)


def _evaluation(low=0.004, high=0.02, diff=0.012, ece=0.02, champion_ece=0.02, rows=5000, partitions=7,
                reference="champion", slices=(), fairness=None):
    return {
        "comparison": {"reference": reference, "difference": diff, "low": low, "high": high, "level": 0.9},
        "metrics": {"challenger": {"auroc": 0.70, "ece": ece}, reference: {"auroc": 0.70 - diff, "ece": champion_ece}},
        "rows": rows, "partitions": partitions,
        "slice_comparisons": [{"slice": "carrier", "value": v, "difference": d, "low": lo, "high": hi, "rows": 500,
                               "level": 0.99}
                              for v, d, lo, hi in slices],
        "small_slices": [], "fairness": {"challenger": fairness or []},
    }


def _failed(decision):
    return [r.name for r in decision.rules if not r.passed]


def test_a_significant_improvement_is_promoted_with_its_numbers():
    d = decide(SPEC, _evaluation(), champion_age=10)
    assert d.promote and not d.failed
    auroc = next(r for r in d.rules if r.name == "auroc")
    assert auroc.numbers["low"] == 0.004 and auroc.numbers["mode"] == "superiority"


def test_the_interval_decides_not_the_point_estimate():
    assert _failed(decide(SPEC, _evaluation(low=-0.001, diff=0.02), champion_age=10)) == ["auroc"]


def test_a_stale_champion_needs_only_non_inferiority():
    even = _evaluation(low=-0.004, diff=0.001)
    assert not decide(SPEC, even, champion_age=MAX_AGE).promote
    d = decide(SPEC, even, champion_age=MAX_AGE + 1)
    assert d.promote and d.rules[0].numbers["mode"] == "non_inferiority"
    assert not decide(SPEC, _evaluation(low=-0.006, diff=0.001), champion_age=MAX_AGE + 1).promote


def test_an_expired_champion_is_replaced_unless_the_challenger_is_significantly_worse():
    spec = SPEC.model_copy(update={"promotion": SPEC.promotion.model_copy(update={"expired_model_age": 2 * MAX_AGE})})
    uncertain = _evaluation(low=-0.03, high=0.004, diff=-0.013)
    assert not decide(spec, uncertain, champion_age=2 * MAX_AGE).promote  # still only stale: non-inferiority
    d = decide(spec, uncertain, champion_age=2 * MAX_AGE + 1)
    assert d.promote and d.rules[0].numbers["mode"] == "expired"
    assert d.rules[0].numbers["required_high_at_least"] == 0.0 and "significantly worse" in d.rules[0].detail
    worse = _evaluation(low=-0.05, high=-0.001, diff=-0.02)
    assert _failed(decide(spec, worse, champion_age=10 * MAX_AGE)) == ["auroc"]
    never = SPEC.model_copy(update={"promotion": SPEC.promotion.model_copy(update={"expired_model_age": None})})
    assert not decide(never, uncertain, champion_age=10 * MAX_AGE).promote  # unset: a champion never expires


@pytest.mark.parametrize(("change", "rule"), [
    ({"ece": 0.09, "champion_ece": 0.02}, "calibration"),
    ({"rows": 699}, "rows"),
    ({"slices": [("c1", -0.05, -0.08, -0.01)]}, "slices"),
])
def test_each_guardrail_refuses_on_its_own(change, rule):
    assert _failed(decide(SPEC, _evaluation(**change), champion_age=10)) == [rule]


def test_calibration_no_worse_than_the_champion_passes_a_base_rate_shift():
    assert decide(SPEC, _evaluation(ece=0.08, champion_ece=0.075), champion_age=10).promote


def test_a_slice_drop_that_is_not_significant_does_not_refuse():
    assert decide(SPEC, _evaluation(slices=[("c1", -0.05, -0.09, 0.01)]), champion_age=10).promote


def test_first_model_needs_only_to_beat_the_baseline():
    d = decide(SPEC, _evaluation(reference="baseline"), champion_age=None)
    assert d.promote and d.reference == "baseline"
    assert not decide(SPEC, _evaluation(reference="baseline", low=-0.01), champion_age=None).promote


def test_fairness_bounds_gate_only_when_configured():
    unfair = [{"attribute": "origin", "equalized_odds_difference": 0.2, "demographic_parity_difference": 0.1}]
    assert decide(SPEC, _evaluation(fairness=unfair), champion_age=10).promote
    gated = SPEC.model_copy(update={"promotion": SPEC.promotion.model_copy(
        update={"max_equalized_odds_difference": 0.1})})
    assert _failed(decide(gated, _evaluation(fairness=unfair), champion_age=10)) == [
        "fairness:origin:equalized_odds_difference"]
