"""The production pointer as an asset: each materialization is a promotion, a pin or a rollback,
so the pointer's history in Dagster is the audit log of what served when, and why."""


from typing import Any

import dagster as dg

from ml_assets.keys import UseCaseKeys
from ml_assets.policies import asset_defaults, code_version
from ml_assets.spec import UseCaseSpec
from resources.model_registry import ModelRegistryResource

ACTOR_TAG = "ml/actor"
REASON_TAG = "ml/reason"


class ProductionModelConfig(dg.Config):
    """Empty: promote the evaluated challenger (only if its gate passed). With `pin_version`: pin
    production to that registered version (a rollback), recording `reason` and `actor`."""

    pin_version: str | None = None
    reason: str | None = None
    actor: str | None = None


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
            },
        )

    return [production_model]
