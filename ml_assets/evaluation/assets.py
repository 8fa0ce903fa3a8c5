"""Evaluation on held-out partitions: challenger vs champion vs a naive baseline on the same events,
overall, per slice and per protected group, with paired confidence intervals; a report and a plot.
The decision itself is the registry's (`promotion_decision`)."""

from typing import Any

import dagster as dg

from ml_assets import tables
from ml_assets.errors import ContractError, fatal_errors
from ml_assets.evaluation.metrics import METRICS
from ml_assets.features import compute
from ml_assets.keys import UseCaseKeys
from ml_assets.lineage import compact
from ml_assets.policies import asset_defaults, code_version, readable_metadata
from ml_assets.registry.models import load_version, production_pointer
from ml_assets.spec import UseCaseSpec
from resources.lakehouse import LakehouseResource
from resources.model_registry import ModelRegistryResource


class EvaluationWindowConfig(dg.Config):
    """Leave empty to use the use case's first held-out period. Dates are partition starts."""

    start: str | None = None
    end: str | None = None


def build_evaluation_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    keys = UseCaseKeys(spec.name)

    @dg.asset(
        key=keys.model_evaluation,
        ins={"candidate_model": dg.AssetIn(key=keys.candidate_model)},
        deps=[keys.features, keys.labels],
        description="Challenger, current champion and a historical-rate baseline scored on the same held-out "
        "partitions (AUROC, AP, F1, Brier, ECE; per slice and protected group), with a paired bootstrap interval "
        "of the AUROC difference. The report (Markdown, the ROC/reliability plot embedded as a data URI) is in "
        "the metadata; report and plot files are recorded with their sha256.",
        kinds={"pytorch", "polars"},
        code_version=code_version(spec, __name__, "evaluation", "promotion", "protected_attributes"),
        io_manager_key="ref_io_manager",
        **asset_defaults(spec, "evaluation"),
    )
    def model_evaluation(context: dg.AssetExecutionContext, config: EvaluationWindowConfig,
                         candidate_model: dict[str, Any], lakehouse: LakehouseResource,
                         model_registry: ModelRegistryResource) -> dg.MaterializeResult:
        with fatal_errors():
            return _evaluate(context, config, candidate_model, lakehouse, model_registry)

    def _evaluate(context, config, candidate, lakehouse, registry) -> dg.MaterializeResult:
        from ml_assets.evaluation.plots import png_markdown, roc_and_reliability_png
        from ml_assets.evaluation.report import Scored, baseline_scores, evaluate, render_report
        from ml_assets.registry.shadow import shadow_scores

        start = config.start or spec.evaluation.start.isoformat()
        end = config.end or spec.evaluation.end.isoformat()
        partitions = spec.partition_range(start, end)
        feats, feature_receipts = tables.read_partitions(context, lakehouse, spec, keys.features, partitions)
        labels, label_receipts = tables.read_partitions(context, lakehouse, spec, keys.labels, partitions,
                                                        columns=[compute.EVENT_ID, compute.LABEL])
        frame = feats.join(labels, on=compute.EVENT_ID, how="inner").sort(compute.PARTITION, compute.EVENT_ID)
        if frame.is_empty():
            raise ContractError(f"evaluation window {start}..{end} has no labelled events")
        # The challenger as candidate_model recorded it: weights and record both verified.
        version = candidate["version"]
        challenger = load_version(registry, spec.name, version, candidate["sha256"], candidate["record_sha256"])
        models = [Scored("challenger", version, challenger.score(frame).numpy(), challenger.threshold)]
        pointer = production_pointer(context.instance, registry, spec.name)
        if pointer is not None and pointer.version != version:
            champion = load_version(registry, spec.name, pointer.version, pointer.sha256, pointer.record_sha256)
            models.append(Scored("champion", pointer.version, champion.score(frame).numpy(), champion.threshold))
        models.append(baseline_scores(spec, frame, models[0]))
        evaluation = evaluate(spec, frame, models, samples=spec.promotion.bootstrap_samples)

        folder = lakehouse.uri(spec.name, "model_evaluation", version, context.run.run_id)
        import torch

        png = roc_and_reliability_png({m.name: torch.tensor(m.prob, dtype=torch.float32) for m in models},
                                      torch.tensor(frame.get_column(compute.LABEL).cast(float).to_numpy()),
                                      spec.evaluation.calibration_bins)
        plot = lakehouse.write_bytes(f"{folder}/roc_reliability.png", png)
        image = png_markdown(png)
        report_md = render_report(spec, evaluation, version, plot_markdown=image)
        report = lakehouse.write_bytes(f"{folder}/report.md", report_md.encode())
        shadow = shadow_scores(context, spec, lakehouse, challenger, version, folder)
        inputs = {keys.features.to_user_string(): feature_receipts, keys.labels.to_user_string(): label_receipts}
        document = {**evaluation, "version": version, "champion_version": pointer.version if pointer else None,
                    "champion_pointer_sequence": pointer.sequence if pointer else None,
                    "files": {"report": {"uri": report.uri, "sha256": report.sha256},
                              "plot": {"uri": plot.uri, "sha256": plot.sha256}},
                    "shadow": shadow, "inputs": compact(inputs)}
        metrics = evaluation["metrics"]
        c = evaluation["comparison"]
        metadata = {
            "model_version": version,
            "reference": c["reference"],
            "window": f"{evaluation['window'][0]}..{evaluation['window'][1]}",
            "dagster/row_count": frame.height,
            **{f"challenger_{m}": metrics["challenger"][m] for m in METRICS if metrics["challenger"][m] is not None},
            **({"champion_auroc": metrics["champion"]["auroc"]} if "champion" in metrics else {}),
            "baseline_auroc": metrics["baseline"]["auroc"],
            "auroc_difference": c["difference"], "auroc_difference_low": c["low"],
            "auroc_difference_high": c["high"],
            "report": dg.MetadataValue.md(report_md),
            "report_uri": dg.MetadataValue.path(report.uri), "report_sha256": report.sha256,
            "plot_uri": dg.MetadataValue.path(plot.uri), "plot_sha256": plot.sha256,
            "input_receipts": dg.MetadataValue.json(compact(inputs)),
        }
        return dg.MaterializeResult(value=document,
                                    metadata=readable_metadata({k: v for k, v in metadata.items() if v is not None}))

    return [model_evaluation]
