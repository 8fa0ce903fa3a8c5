"""Evaluation of a challenger against the champion and a naive baseline on the same labelled events:
overall and per-slice metrics, fairness evidence, paired confidence intervals, and the report.

Pure: takes scored tensors/frames, returns a JSON-able document and Markdown (no Dagster, no I/O).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ml_assets.evaluation.metrics import (
    METRICS,
    binary_metrics,
    clean,
    group_rates,
    paired_auroc_difference,
    slice_metrics,
)
from ml_assets.features.compute import LABEL, PARTITION
from ml_assets.spec import UseCaseSpec
from ml_assets.text import markdown_table

if TYPE_CHECKING:
    import polars as pl

GROUP_COLUMNS = ["group", "rows", "auroc", "positive_rate", "flag_rate", "tpr", "fpr"]


@dataclass(frozen=True)
class Scored:
    """One model's scores on the evaluation events."""

    name: str  # challenger | champion | baseline
    version: str | None
    prob: Any  # numpy float array, one per event
    threshold: float


def baseline_scores(spec: UseCaseSpec, frame: pl.DataFrame, challenger: Scored) -> Scored:
    """The historical-rate feature used as a score; its threshold flags the same share as the challenger."""
    import numpy as np
    import polars as pl

    base = frame.get_column(spec.evaluation.baseline_feature).cast(pl.Float64)
    prob = base.fill_null(base.mean() or 0.0).to_numpy()
    share = float((challenger.prob >= challenger.threshold).mean()) if len(prob) else 0.0
    threshold = float(np.quantile(prob, 1 - share)) if 0 < share < 1 else 0.5
    return Scored("baseline", None, prob, threshold)


def evaluate(spec: UseCaseSpec, frame: pl.DataFrame, models: list[Scored], *, samples: int) -> dict[str, Any]:
    """The evaluation document: window, metrics, slices (and the groups too small to judge), fairness
    per protected attribute, and challenger-vs-reference AUROC differences with paired bootstrap
    intervals (overall and per slice), resampling whole partitions when there are enough."""
    import numpy as np
    import polars as pl
    import torch

    ev, policy = spec.evaluation, spec.promotion
    y = frame.get_column(LABEL).cast(pl.Float64).to_numpy()
    blocks = frame.get_column(PARTITION).cast(pl.String).to_numpy()
    by_name = {m.name: m for m in models}
    overall = {m.name: {k: clean(v) if v is not None else None for k, v in
                        binary_metrics(torch.tensor(m.prob, dtype=torch.float32), torch.tensor(y), m.threshold,
                                       ev.calibration_bins).items()} for m in models}
    scored = frame.with_columns([pl.Series(f"p_{m.name}", m.prob, dtype=pl.Float64) for m in models])
    slices, small = {}, []
    for m in models:
        rows = []
        for col in ev.slices:
            judged, too_small = slice_metrics(scored, f"p_{m.name}", LABEL, col, m.threshold, ev.calibration_bins,
                                              ev.min_slice_rows)
            rows += judged
            if m.name == "challenger":
                small += too_small
        slices[m.name] = [{k: (clean(v) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]
    fairness = {m.name: [group_rates(scored, f"p_{m.name}", LABEL, attr, m.threshold, ev.min_slice_rows)
                         for attr in spec.protected_attributes] for m in models if m.name != "baseline"}
    reference = "champion" if "champion" in by_name else "baseline"
    ref = by_name[reference]
    challenger = by_name["challenger"]
    comparison = {"reference": reference,
                  **paired_auroc_difference(challenger.prob, ref.prob, y, samples=samples, level=policy.confidence,
                                            seed=spec.model.seed, blocks=blocks)}
    slice_comparisons = []
    if reference == "champion":
        judged = []
        for col in ev.slices:
            values = scored.get_column(col).cast(pl.String).to_numpy()
            for value in sorted(set(values[values != None])):  # noqa: E711 - numpy object comparison
                mask = values == value
                if mask.sum() >= ev.min_slice_rows:
                    judged.append((col, value, mask))
        # Bonferroni: with many slices, some would look significant by chance at the overall level.
        level = 1 - (1 - policy.confidence) / max(1, len(judged))
        slice_samples = max(200, min(2000, int(10 / ((1 - level) / 2))))
        for col, value, mask in judged:
            diff = paired_auroc_difference(challenger.prob[mask], ref.prob[mask], y[mask], samples=slice_samples,
                                           level=level, seed=spec.model.seed, blocks=blocks[mask])
            if diff["difference"] is not None:
                slice_comparisons.append({"slice": col, "value": str(value), "rows": int(mask.sum()), **diff})
    partitions = sorted(set(blocks.tolist()))
    return {
        "window": [partitions[0], partitions[-1]] if partitions else [str(ev.start), str(ev.end)],
        "partitions": len(partitions),
        "rows": len(y),
        "models": {m.name: {"version": m.version, "threshold": m.threshold} for m in models},
        "metrics": overall,
        "slices": slices,
        "small_slices": small,
        "fairness": fairness,
        "comparison": comparison,
        "slice_comparisons": slice_comparisons,
        "positive_rate": float(np.mean(y)) if len(y) else None,
    }


def render_report(spec: UseCaseSpec, evaluation: dict[str, Any], version: str, *, plot_markdown: str = "") -> str:
    cols = ["model", "rows", "positive_rate", *METRICS]
    c = evaluation["comparison"]
    champion = evaluation["models"].get("champion", {}).get("version")
    lines = [
        f"# Evaluation of `{version}` ({spec.name})",
        "",
        f"Held-out partitions {evaluation['window'][0]}..{evaluation['window'][1]} ({evaluation['partitions']} "
        f"{spec.cadence} partitions, {evaluation['rows']} labelled events, positive rate "
        f"{_num(evaluation['positive_rate'])}). Champion at evaluation time: `{champion or 'none'}`. "
        f"Baseline: `{spec.evaluation.baseline_feature}` used as the score.",
        "",
        "## Overall",
        markdown_table([{"model": n, **m} for n, m in evaluation["metrics"].items()], cols),
        "",
        f"## Challenger vs {c['reference']}",
        f"AUROC difference {_num(c['difference'])} with a {c['level']:.0%} paired bootstrap interval "
        f"[{_num(c['low'])}, {_num(c['high'])}] ({c['samples']} paired bootstrap resamples of {c['unit']}s).",
        "",
        "## Challenger per slice",
        markdown_table(evaluation["slices"]["challenger"], ["slice", "value", "rows", "auroc", "f1", "brier", "ece"]),
        "",
        "Too few rows to judge (under "
        f"{spec.evaluation.min_slice_rows}): " + (", ".join(f"{s['slice']}={s['value']} ({s['rows']})"
                                                            for s in evaluation["small_slices"]) or "none"),
    ]
    if evaluation["slice_comparisons"]:
        lines += ["", "### Slice AUROC differences vs the champion",
                  markdown_table(evaluation["slice_comparisons"], ["slice", "value", "rows", "difference", "low",
                                                                   "high"])]
    for name, attrs in evaluation["fairness"].items():
        for f in attrs:
            lines += ["", f"## Fairness: `{f['attribute']}` ({name})",
                      f"Demographic-parity difference (flag rate) {_num(f['demographic_parity_difference'])}; "
                      f"equalized-odds difference {_num(f['equalized_odds_difference'])} (TPR gap "
                      f"{_num(f['tpr_gap'])}, FPR gap {_num(f['fpr_gap'])}); AUROC gap {_num(f['auroc_gap'])}.",
                      markdown_table(f["groups"], GROUP_COLUMNS)]
            if f["small_groups"]:
                lines.append("Groups too small to compare: " + ", ".join(f"{g['group']} ({g['rows']})"
                                                                         for g in f["small_groups"]))
    if plot_markdown:
        lines += ["", "## ROC and reliability", plot_markdown]
    return "\n".join(lines)


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{value:+.4f}" if isinstance(value, float) and value < 0 else (
        f"{value:.4f}" if isinstance(value, float) else str(value))
