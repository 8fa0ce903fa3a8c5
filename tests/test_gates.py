"""Promotion rules, decided on metrics alone."""

from ml_assets.registry.gates import decide
from ml_assets.spec import PromotionSpec

POLICY = PromotionSpec(min_improvement=0.005, max_calibration_error=0.05, max_slice_regression=0.03, min_rows=1000)


def _m(auroc, ece=0.02, rows=5000):
    return {"auroc": auroc, "ece": ece, "rows": rows}


def _slices(*aurocs):
    return [{"slice": "carrier", "value": f"c{i}", "auroc": a} for i, a in enumerate(aurocs)]


def test_challenger_that_beats_the_champion_by_the_margin_is_promoted():
    d = decide(POLICY, _m(0.70), _m(0.69), "champion", _slices(0.7, 0.68), _slices(0.69, 0.69))
    assert d["promote"] and not d["failed"]
    assert any("gain +0.0100" in r for r in d["passed"])


def test_improvement_below_the_margin_is_refused():
    d = decide(POLICY, _m(0.693), _m(0.69), "champion", [], [])
    assert not d["promote"] and "auroc" in d["failed"][0]


def test_each_guardrail_refuses_on_its_own():
    assert not decide(POLICY, _m(0.75, ece=0.09), _m(0.69), "champion", [], [])["promote"]
    assert not decide(POLICY, _m(0.75, rows=10), _m(0.69), "champion", [], [])["promote"]
    worse_slice = decide(POLICY, _m(0.75), _m(0.69), "champion", _slices(0.80, 0.60), _slices(0.70, 0.70))
    assert not worse_slice["promote"]
    assert "c1" in worse_slice["failed"][0]


def test_first_model_needs_only_to_beat_the_baseline_overall():
    d = decide(POLICY, _m(0.62), _m(0.60), "baseline", _slices(0.5), _slices(0.7))
    assert d["promote"] and d["reference"] == "baseline"
    assert not decide(POLICY, _m(0.59), _m(0.60), "baseline", [], [])["promote"]
