"""Scores the challenger, the champion and the baseline on the same rows and writes the report."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dagster as dg

from ml_assets.evaluation.metrics import METRICS, binary_metrics, slice_metrics
from ml_assets.features.compute import LABEL
from ml_assets.policies import markdown_table
from ml_assets.registry.gates import decide
from ml_assets.spec import UseCaseSpec

if TYPE_CHECKING:
    import polars as pl

    from resources.lakehouse import LakehouseResource
    from resources.model_registry import ModelRegistryResource


def evaluate_challenger(spec: UseCaseSpec, frame: pl.DataFrame, version: str, lakehouse: LakehouseResource,
                        registry: ModelRegistryResource) -> dict[str, Any]:
    import polars as pl
    import torch

    ev = spec.evaluation
    y = torch.tensor(frame.get_column(LABEL).cast(float).to_numpy())
    challenger = registry.load(spec.name, version)
    scored: dict[str, tuple[torch.Tensor, float]] = {"challenger": (challenger.score(frame), challenger.threshold)}
    champion_pointer = registry.production(spec.name)
    champion_version = champion_pointer["version"] if champion_pointer else None
    if champion_version and champion_version != version:
        champion = registry.load(spec.name, champion_version)
        scored["champion"] = (champion.score(frame), champion.threshold)
    base = frame.get_column(ev.baseline_feature).cast(pl.Float64)
    base_prob = torch.tensor(base.fill_null(base.mean() or 0.0).to_numpy(), dtype=torch.float32)
    # The baseline's threshold: the same positive share as the challenger predicts.
    share = float((scored["challenger"][0] >= challenger.threshold).float().mean())
    base_threshold = float(torch.quantile(base_prob, 1 - share)) if 0 < share < 1 else 0.5
    scored["baseline"] = (base_prob, base_threshold)

    overall = {name: binary_metrics(p.float(), y, t, ev.calibration_bins) for name, (p, t) in scored.items()}
    with_scores = frame.with_columns([pl.Series(f"p_{n}", p.numpy()) for n, (p, _) in scored.items()])
    slices = {
        name: [row for col in ev.slices
               for row in slice_metrics(with_scores, f"p_{name}", LABEL, col, t, ev.calibration_bins,
                                        ev.min_slice_rows)]
        for name, (_, t) in scored.items()
    }
    reference = "champion" if "champion" in scored else "baseline"
    decision = decide(spec.promotion, overall["challenger"], overall[reference], reference,
                      slices["challenger"], slices[reference])

    from ml_assets.evaluation.plots import roc_and_reliability_png

    folder = lakehouse.uri(spec.name, "model_evaluation", version)
    png = lakehouse.write_bytes(f"{folder}/roc_reliability.png",
                                roc_and_reliability_png({n: p.float() for n, (p, _) in scored.items()}, y,
                                                        ev.calibration_bins))
    shadow = shadow_score(spec, lakehouse, challenger) if champion_version else None
    report = render_report(spec, version, champion_version, frame, overall, slices, decision, png.uri)
    if shadow:
        from ml_assets.registry.model_card import shadow_summary

        report += "\n\n## Shadow scoring (latest prediction partitions)\n" + shadow_summary(shadow)
    report_receipt = lakehouse.write_bytes(f"{folder}/report.md", report.encode())
    lakehouse.write_json(f"{folder}/metrics.json", {"overall": overall, "slices": slices, "decision": decision})

    ch = overall["challenger"]
    ref = {
        "version": version,
        "champion_version": champion_version,
        "window": [ev.start, ev.end] if frame.is_empty() else
        [str(frame.get_column("event_date").min()), str(frame.get_column("event_date").max())],
        "metrics": overall,
        "decision": decision,
        "slices": {"challenger": slices["challenger"]},
        "shadow": shadow,
        "report_uri": report_receipt.uri,
    }
    from ml_assets.registry.model_card import render_model_card

    card = render_model_card(spec, registry.get(spec.name, version), ref)
    ref["model_card_uri"] = registry.write_model_card(spec.name, version, card)
    metadata = {
        "model_version": version,
        "reference": reference,
        "decision": "promote" if decision["promote"] else "refuse",
        "dagster/row_count": frame.height,
        **{f"challenger_{m}": ch[m] for m in METRICS},
        **{f"baseline_{m}": overall["baseline"][m] for m in ("auroc", "average_precision")},
        "report": dg.MetadataValue.md(report),
        "report_uri": dg.MetadataValue.path(report_receipt.uri),
        "plot": dg.MetadataValue.path(png.uri),
        "model_card": dg.MetadataValue.path(ref["model_card_uri"]),
    }
    if shadow:
        metadata["shadow_agreement"] = shadow["agreement"]
    if "champion" in overall:
        metadata["champion_auroc"] = overall["champion"]["auroc"]
    return {"ref": ref, "metadata": metadata, "decision": decision}


def render_report(spec: UseCaseSpec, version: str, champion: str | None, frame: pl.DataFrame,
                  overall: dict[str, dict[str, float]], slices: dict[str, list[dict[str, Any]]],
                  decision: dict[str, Any], plot_uri: str) -> str:
    cols = ["model", "rows", "positive_rate", *METRICS]
    overall_rows = [{"model": n, **m} for n, m in overall.items()]
    slice_cols = ["slice", "value", "rows", "auroc", "average_precision", "f1", "brier", "ece"]
    verdict = "PROMOTE" if decision["promote"] else "REFUSE (champion keeps serving)"
    lines = [
        f"# Evaluation of `{version}` ({spec.name})",
        "",
        f"Held-out period: {spec.evaluation.start}..{spec.evaluation.end}, {frame.height} labelled events. "
        f"Champion at evaluation time: `{champion or 'none'}`. Baseline: `{spec.evaluation.baseline_feature}` "
        "used as the score.",
        "",
        "## Overall",
        markdown_table(overall_rows, cols),
        "",
        f"## Promotion decision: {verdict} (reference: {decision['reference']})",
        *[f"- PASS {r}" for r in decision["passed"]],
        *[f"- FAIL {r}" for r in decision["failed"]],
        "",
        "## Challenger per slice",
        markdown_table(slices["challenger"], slice_cols),
        "",
        f"Plot (ROC and reliability diagram): `{plot_uri}`",
    ]
    return "\n".join(lines)


def shadow_score(spec: UseCaseSpec, lakehouse: LakehouseResource, challenger, days: int = 7) -> dict[str, Any] | None:
    """Score the latest served prediction partitions with the challenger, beside what was served."""
    import polars as pl

    from ml_assets.features.compute import EVENT_ID

    folder = lakehouse.uri(spec.name, "predictions")
    served_days = sorted(u.rsplit("date=", 1)[1].removesuffix(".parquet") for u in lakehouse.list(folder)
                         if "date=" in u)[-days:]
    if not served_days:
        return None
    served = lakehouse.read_partitions(spec.name, "predictions", served_days)
    feats = lakehouse.read_partitions(spec.name, "features", served_days, missing_ok=True)
    joined = feats.join(served.select(EVENT_ID, "probability", "predicted_positive", "model_version"),
                        on=EVENT_ID, how="inner")
    if joined.is_empty():
        return None
    prob = challenger.score(joined).numpy()
    joined = joined.with_columns(pl.Series("p_challenger", prob, dtype=pl.Float64)).with_columns(
        (pl.col("p_challenger") >= challenger.threshold).alias("challenger_positive"))
    agree = pl.col("challenger_positive") == pl.col("predicted_positive")
    slice_col = spec.evaluation.slices[0]
    by_slice = (
        joined.group_by(slice_col)
        .agg(pl.len().alias("rows"), (1 - agree.mean()).alias("disagreement"),
             (pl.col("p_challenger") - pl.col("probability")).abs().mean().alias("mean_abs_diff"))
        .sort("disagreement", descending=True).head(8)
    )
    return {
        "days": served_days,
        "rows": joined.height,
        "served_by": sorted(joined.get_column("model_version").unique().to_list()),
        "agreement": float(joined.select(agree.mean()).item()),
        "mean_abs_diff": float(joined.select((pl.col("p_challenger") - pl.col("probability")).abs().mean()).item()),
        "challenger_only": int(joined.filter(pl.col("challenger_positive") & ~pl.col("predicted_positive")).height),
        "champion_only": int(joined.filter(~pl.col("challenger_positive") & pl.col("predicted_positive")).height),
        "by_slice": [{k: (str(v) if k == slice_col else v) for k, v in r.items()} for r in by_slice.to_dicts()],
    }
