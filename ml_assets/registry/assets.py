"""The production pointer as an asset: each materialization is a promotion, a pin or a rollback,
so the pointer's history in Dagster is the audit log of what served when, and why."""


from typing import Any

import dagster as dg

from ml_assets.keys import UseCaseKeys
from ml_assets.policies import asset_defaults, code_version, markdown_table
from ml_assets.spec import UseCaseSpec
from resources.lakehouse import LakehouseResource
from resources.model_registry import ModelRegistryResource

ACTOR_TAG = "ml/actor"
REASON_TAG = "ml/reason"


class ProductionModelConfig(dg.Config):
    """Empty: promote the evaluated challenger (only if its gate passed). With `pin_version`: pin
    production to that registered version (a rollback), recording `reason` and `actor`."""

    pin_version: str | None = None
    reason: str | None = None
    actor: str | None = None


class ReproduceConfig(dg.Config):
    """Empty: every registered version. Otherwise the listed versions."""

    versions: list[str] | None = None


def build_registry_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    keys = UseCaseKeys(spec)

    @dg.asset(
        key=keys.production_model,
        ins={"model_evaluation": dg.AssetIn(key=keys.model_evaluation)},
        description="Which registered model version serves predictions. Materialized after a passing "
        "promotion gate (promotion) or with `pin_version` config (rollback/pin).",
        kinds={"pytorch"},
        code_version=code_version(spec, [__name__], "promotion"),
        io_manager_key="ref_io_manager",
        **asset_defaults(spec, "registry"),
    )
    def production_model(context: dg.AssetExecutionContext, config: ProductionModelConfig,
                         model_evaluation: dict[str, Any], model_registry: ModelRegistryResource
                         ):
        tags = context.run.tags
        actor = config.actor or tags.get(ACTOR_TAG) or tags.get("user") or "system"
        if config.pin_version:
            reason = config.reason or tags.get(REASON_TAG)
            if not reason:
                raise dg.Failure("a pin/rollback needs a reason (config `reason` or run tag ml/reason)",
                                 allow_retries=False)
            pointer = model_registry.set_production(spec.name, config.pin_version, run_id=context.run.run_id,
                                                    action="rollback", reason=reason, actor=actor)
        else:
            decision = model_evaluation["decision"]
            if not decision["promote"]:
                raise dg.Failure(
                    f"challenger {model_evaluation['version']} was refused by the promotion gate; "
                    f"the champion keeps serving. Failed: {decision['failed']}", allow_retries=False)
            pointer = model_registry.set_production(
                spec.name, model_evaluation["version"], run_id=context.run.run_id, action="promote",
                reason="; ".join(decision["passed"]), actor=actor)
        record = model_registry.get(spec.name, pointer["version"])
        return dg.MaterializeResult(
            value=pointer,
            metadata={
                "model_version": pointer["version"],
                "action": pointer["action"],
                "previous_version": pointer["previous_version"] or "none",
                "reason": pointer["reason"],
                "actor": pointer["actor"],
                "weights_sha256": pointer["sha256"],
                "data_window": f"{record['training_set']['train_start']}..{record['training_set']['train_end']}",
                "model_card": dg.MetadataValue.path(model_registry.model_card_uri(spec.name, pointer["version"])),
            },
        )

    @dg.asset(
        key=keys.model_reproducibility,
        deps=[keys.candidate_model],
        description="Retrains registered versions from their recorded training sets and hyperparameters and "
        "compares weight hashes; also rebuilds each training set from its partitions. Reports the "
        "reproducibility rate.",
        kinds={"pytorch"},
        code_version=code_version(spec, [__name__, "ml_assets.registry.reproduce"], "model"),
        **asset_defaults(spec, "registry"),
    )
    def model_reproducibility(config: ReproduceConfig, model_registry: ModelRegistryResource,
                              lakehouse: LakehouseResource) -> dg.MaterializeResult:
        from ml_assets.registry.reproduce import reproduce_all

        rows = reproduce_all(spec, model_registry, lakehouse, config.versions)
        if not rows:
            raise dg.Failure("no registered versions to reproduce", allow_retries=False)
        rate = sum(r["weights_match"] for r in rows) / len(rows)
        report = lakehouse.write_json(lakehouse.uri(spec.name, "registry", "reproducibility.json"), rows)
        return dg.MaterializeResult(
            metadata={
                "reproducibility_rate": rate,
                "versions_checked": len(rows),
                "training_sets_rebuilt_identically": sum(bool(r["training_set_rebuilt_matches"]) for r in rows),
                "results": dg.MetadataValue.md(markdown_table(rows)),
                "uri": dg.MetadataValue.path(report.uri),
            },
        )

    return [production_model, model_reproducibility]
