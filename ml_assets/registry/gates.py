"""Champion/challenger promotion rules: pure functions, so every decision is explainable and tested."""

from __future__ import annotations

from typing import Any

from ml_assets.spec import PromotionSpec


def decide(
    policy: PromotionSpec,
    challenger: dict[str, float],
    reference: dict[str, float],
    reference_name: str,
    challenger_slices: list[dict[str, Any]],
    reference_slices: list[dict[str, Any]],
) -> dict[str, Any]:
    """Promote only if the primary metric beats the reference by the margin and all guardrails pass.

    `reference` is the champion's metrics on the same rows, or the baseline's for the first model.
    """
    metric = policy.primary_metric
    reasons: list[str] = []
    failed: list[str] = []
    gain = challenger[metric] - reference[metric]
    margin = policy.min_improvement if reference_name == "champion" else 0.0
    line = (f"{metric}: challenger {challenger[metric]:.4f} vs {reference_name} {reference[metric]:.4f} "
            f"(gain {gain:+.4f}, required > {margin:+.4f})")
    (reasons if gain > margin else failed).append(line)

    ece = challenger["ece"]
    line = f"calibration: ECE {ece:.4f} (bound {policy.max_calibration_error:.4f})"
    (reasons if ece <= policy.max_calibration_error else failed).append(line)

    rows = int(challenger["rows"])
    line = f"rows: {rows} evaluated (minimum {policy.min_rows})"
    (reasons if rows >= policy.min_rows else failed).append(line)

    if reference_name != "champion":  # the first model only has to beat the baseline overall
        return {"promote": not failed, "reference": reference_name, "passed": reasons, "failed": failed}

    ref_by_slice = {(s["slice"], s["value"]): s for s in reference_slices}
    worst = None
    for s in challenger_slices:
        ref = ref_by_slice.get((s["slice"], s["value"]))
        if ref is None or ref[metric] != ref[metric] or s[metric] != s[metric]:
            continue
        drop = ref[metric] - s[metric]
        if worst is None or drop > worst[0]:
            worst = (drop, f"{s['slice']}={s['value']}")
    if worst is not None:
        line = (f"slices: worst regression {worst[0]:+.4f} {metric} on {worst[1]} "
                f"(allowed {policy.max_slice_regression:.4f})")
        (reasons if worst[0] <= policy.max_slice_regression else failed).append(line)

    return {"promote": not failed, "reference": reference_name, "passed": reasons, "failed": failed}
