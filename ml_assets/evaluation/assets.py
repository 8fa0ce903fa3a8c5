"""Evaluation on the held-out period: challenger vs champion vs a naive baseline on the same rows,
overall and per slice, with a Markdown report and a plot; the promotion gate is a blocking check."""


from typing import Any

import dagster as dg

from ml_assets import tables
from ml_assets.features import compute
from ml_assets.keys import UseCaseKeys
from ml_assets.policies import asset_defaults, code_version
from ml_assets.spec import UseCaseSpec, date_range
from resources.lakehouse import LakehouseResource
from resources.model_registry import ModelRegistryResource

PROMOTION_GATE = "promotion_gate"


class EvaluationWindowConfig(dg.Config):
    """Leave empty to use the use case's default held-out period."""

    start: str | None = None
    end: str | None = None


def build_evaluation_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    keys = UseCaseKeys(spec)

    @dg.asset(
        key=keys.model_evaluation,
        ins={"candidate_model": dg.AssetIn(key=keys.candidate_model)},
        deps=[keys.features, keys.labels],
        description="Challenger, current champion and a historical-rate baseline scored on the same held-out "
        "days with torchmetrics (AUROC, AP, F1, Brier, ECE; per slice). The blocking `promotion_gate` "
        "check fails at ERROR severity when the challenger must not be promoted.",
        kinds={"pytorch", "polars"},
        code_version=code_version(
            spec, [__name__, "ml_assets.evaluation.metrics", "ml_assets.evaluation.report",
                   "ml_assets.registry.gates"], "evaluation", "promotion"),
        io_manager_key="ref_io_manager",
        check_specs=[dg.AssetCheckSpec(PROMOTION_GATE, asset=keys.model_evaluation, blocking=True,
                                       description="Challenger beats the reference and passes all guardrails.")],
        **asset_defaults(spec, "evaluation"),
    )
    def model_evaluation(context: dg.AssetExecutionContext, config: EvaluationWindowConfig,
                         candidate_model: dict[str, Any], lakehouse: LakehouseResource,
                         model_registry: ModelRegistryResource):
        from ml_assets.evaluation.report import evaluate_challenger

        days = date_range(config.start or spec.evaluation.start, config.end or spec.evaluation.end)
        frame = tables.read_daily(lakehouse, spec, keys.features, days).join(
            tables.read_daily(lakehouse, spec, keys.labels, days, columns=[compute.EVENT_ID, compute.LABEL]),
            on=compute.EVENT_ID, how="inner",
        )
        result = evaluate_challenger(spec, frame, candidate_model["version"], lakehouse, model_registry)
        decision = result["decision"]
        return dg.MaterializeResult(
            value=result["ref"],
            metadata=result["metadata"],
            check_results=[
                dg.AssetCheckResult(
                    check_name=PROMOTION_GATE,
                    passed=decision["promote"],
                    severity=dg.AssetCheckSeverity.ERROR,
                    metadata={"decision": "promote" if decision["promote"] else "refuse",
                              "passed": dg.MetadataValue.md("\n".join(f"- {r}" for r in decision["passed"]) or "-"),
                              "failed": dg.MetadataValue.md("\n".join(f"- {r}" for r in decision["failed"]) or "-")},
                )
            ],
        )

    return [model_evaluation]
