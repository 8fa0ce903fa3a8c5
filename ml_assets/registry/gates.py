"""Champion/challenger promotion rules: a pure function of the evaluation, so every decision is
explainable, reproducible and tested. Every number a rule used is in its `numbers`."""

from __future__ import annotations

from typing import Any

from ml_assets.records import Decision, RuleResult
from ml_assets.spec import UseCaseSpec


def decide(spec: UseCaseSpec, evaluation: dict[str, Any], champion_age: int | None) -> Decision:
    """Promote only if every rule passes. `champion_age`: partitions from the end of the champion's
    training window to the end of the evaluation window (None: no champion, the baseline is the reference)."""
    policy, mon = spec.promotion, spec.monitoring
    comparison = evaluation["comparison"]
    reference = comparison["reference"]
    challenger = evaluation["metrics"]["challenger"]
    ref_metrics = evaluation["metrics"][reference]
    rules: list[RuleResult] = []

    # 1. AUROC: superiority while the champion is fresh (and always against the baseline);
    #    non-inferiority once the champion is past its maximum age; once it has expired, the challenger
    #    passes unless it is significantly worse (the burden of proof shifts to the old model).
    low, high = comparison["low"], comparison["high"]
    mode, bound = _auroc_mode(spec, champion_age)
    passed = (high is not None and high >= 0) if mode == "expired" else (low is not None and low > bound)
    required = "upper bound >= 0" if mode == "expired" else f"lower bound > {bound:+.4f}"
    label = {"superiority": "superiority", "non_inferiority": "non-inferiority (champion past its maximum age)",
             "expired": "champion expired: refused only if significantly worse"}[mode]
    rules.append(RuleResult(
        name="auroc", passed=passed,
        detail=(f"auroc ({label}): challenger {_f(challenger['auroc'])} vs {reference} {_f(ref_metrics['auroc'])}, "
                f"difference {_f(comparison['difference'])} with {comparison['level']:.0%} interval "
                f"[{_f(low)}, {_f(high)}]; required {required}"
                + (f"; champion age {champion_age} partitions (max {mon.max_model_age})" if champion_age is not None
                   else "")),
        numbers={"challenger": challenger["auroc"], "reference": ref_metrics["auroc"],
                 "difference": comparison["difference"], "low": low, "high": high,
                 "level": comparison["level"], "required_low_above": None if mode == "expired" else bound,
                 "required_high_at_least": 0.0 if mode == "expired" else None, "champion_age": champion_age,
                 "max_model_age": int(mon.max_model_age),
                 "expired_model_age": None if policy.expired_model_age is None else int(policy.expired_model_age),
                 "mode": mode}))

    # 2. Calibration: under the absolute bound, or no worse than the champion on the same events.
    ece, ref_ece = challenger["ece"], ref_metrics["ece"] if reference == "champion" else None
    relative = ref_ece + policy.calibration_tolerance if ref_ece is not None else None
    passed = ece is not None and (ece <= policy.max_calibration_error or (relative is not None and ece <= relative))
    rules.append(RuleResult(
        name="calibration", passed=passed,
        detail=(f"calibration: ECE {_f(ece)} (absolute bound {policy.max_calibration_error:.4f}"
                + (f"; or champion's {_f(ref_ece)} + {policy.calibration_tolerance:.4f} = {relative:.4f}"
                   if relative is not None else "") + ")"),
        numbers={"ece": ece, "absolute_bound": policy.max_calibration_error, "champion_ece": ref_ece,
                 "relative_bound": relative}))

    # 3. Enough evidence.
    required = policy.min_rows_per_partition * evaluation["partitions"]
    rules.append(RuleResult(
        name="rows", passed=evaluation["rows"] >= required,
        detail=(f"rows: {evaluation['rows']} labelled events in {evaluation['partitions']} partitions "
                f"(minimum {policy.min_rows_per_partition} x {evaluation['partitions']} = {required})"),
        numbers={"rows": evaluation["rows"], "partitions": evaluation["partitions"], "required": required}))

    # 4. Slices (against a champion): a significant drop larger than allowed fails.
    if reference == "champion" and evaluation["slice_comparisons"]:
        worst = min(evaluation["slice_comparisons"], key=lambda s: s["difference"])
        failing = [s for s in evaluation["slice_comparisons"]
                   if -s["difference"] > policy.max_slice_regression and s["high"] < 0]
        shown = failing[0] if failing else worst
        small = len(evaluation["small_slices"])
        rules.append(RuleResult(
            name="slices", passed=not failing,
            detail=(f"slices: {len(failing)} significant regression(s) > {policy.max_slice_regression:.4f}; "
                    f"{'e.g.' if failing else 'worst'} {shown['slice']}={shown['value']} difference "
                    f"{_f(shown['difference'])} [{_f(shown['low'])}, {_f(shown['high'])}] "
                    f"({shown['level']:.2%} interval, "
                    f"Bonferroni over {len(evaluation['slice_comparisons'])} slices) on {shown['rows']} rows; "
                    f"{len(evaluation['slice_comparisons'])} slices judged, {small} too small to judge"),
            numbers={"failing": len(failing), "judged": len(evaluation["slice_comparisons"]), "too_small": small,
                     "worst_slice": f"{worst['slice']}={worst['value']}", "worst_difference": worst["difference"],
                     "allowed": policy.max_slice_regression}))

    # 5. Fairness gates, when configured.
    for f in evaluation["fairness"].get("challenger", []):
        for field, limit in (("equalized_odds_difference", policy.max_equalized_odds_difference),
                             ("demographic_parity_difference", policy.max_demographic_parity_difference)):
            if limit is None:
                continue
            value = f[field]
            rules.append(RuleResult(
                name=f"fairness:{f['attribute']}:{field}", passed=value is not None and value <= limit,
                detail=f"fairness: {field.replace('_', ' ')} on {f['attribute']} {_f(value)} (bound {limit:.4f})",
                numbers={"value": value, "bound": limit}))

    return Decision(outcome="promote" if all(r.passed for r in rules) else "refuse", reference=reference, rules=rules)


def _auroc_mode(spec: UseCaseSpec, champion_age: int | None) -> tuple[str, float]:
    """(mode, lower-bound requirement) of the AUROC rule at the champion's age in partitions."""
    policy = spec.promotion
    if champion_age is None or champion_age <= int(spec.monitoring.max_model_age):
        return "superiority", policy.min_improvement
    if policy.expired_model_age is not None and champion_age > int(policy.expired_model_age):
        return "expired", -policy.non_inferiority_margin
    return "non_inferiority", -policy.non_inferiority_margin


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
