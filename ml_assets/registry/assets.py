"""The registry's state changes as assets, so each is a Dagster run an auditor can browse.

`promotion_decision` is materialized for every evaluated challenger, promoted or refused: the gate's
rules with their numbers and intervals, and the model card. `production_model` is materialized only
when production changes (a promotion, a pin or a rollback); a refusal is recorded as an observation
of it, so its materialization history is exactly the history of what served.
"""


from typing import Any

import dagster as dg

from ml_assets.errors import ContractError, RegistryError, fatal_errors
from ml_assets.keys import ACTOR_TAG, OUTCOME_TAG, REASON_TAG, UseCaseKeys
from ml_assets.policies import asset_defaults, code_version
from ml_assets.records import Decision, check_version_id
from ml_assets.spec import UseCaseSpec
from ml_assets.text import markdown_table
from resources.lakehouse import LakehouseResource
from resources.model_registry import ModelRegistryResource
from resources.refs_io_manager import read_latest_ref


class ProductionModelConfig(dg.Config):
    """Empty: promote this run's challenger if its decision says so. With `pin_version`: pin production
    to that registered version (a rollback), recording `reason` and `actor`."""

    pin_version: str | None = None
    reason: str | None = None
    actor: str | None = None


class ReproduceConfig(dg.Config):
    """Empty: every registered version. Otherwise the listed versions."""

    versions: list[str] | None = None


def actor_of(context: dg.AssetExecutionContext, configured: str | None) -> str:
    """Who changed production: configured, the run's ml/actor tag, the launching user, or the sensor."""
    tags = context.run.tags
    sensor = tags.get("dagster/sensor_name")
    return (configured or tags.get(ACTOR_TAG) or tags.get("user")
            or (f"sensor:{sensor}" if sensor else None) or "unknown")


def champion_age(spec: UseCaseSpec, registry: ModelRegistryResource, champion: str | None,
                 window_end: str) -> int | None:
    """Partitions from the end of the champion's training window to the end of the evaluation window."""
    if champion is None:
        return None
    trained_to = registry.get(spec.name, champion).training_set.train_end
    return len(spec.partition_range(trained_to, window_end)) - 1


def build_registry_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    return [_promotion_decision(spec), _production_model(spec), _model_reproducibility(spec)]


def _promotion_decision(spec: UseCaseSpec) -> dg.AssetsDefinition:
    keys = UseCaseKeys(spec.name)

    @dg.asset(
        key=keys.promotion_decision,
        ins={"model_evaluation": dg.AssetIn(key=keys.model_evaluation)},
        description="The promotion gate's decision on the evaluated challenger, promoted or refused: every rule "
        "with the numbers and interval it used, and the model card. A refusal is a normal outcome.",
        kinds={"json"},
        code_version=code_version(spec, __name__, "promotion", "monitoring"),
        io_manager_key="ref_io_manager",
        **asset_defaults(spec, "registry"),
    )
    def promotion_decision(context: dg.AssetExecutionContext, model_evaluation: dict[str, Any],
                           model_registry: ModelRegistryResource) -> dg.MaterializeResult:
        from ml_assets.registry.gates import decide
        from ml_assets.registry.model_card import render_model_card

        with fatal_errors():
            version = check_version_id(model_evaluation["version"])
            age = champion_age(spec, model_registry, model_evaluation["champion_version"],
                               model_evaluation["window"][1])
            decision = decide(spec, model_evaluation, age)
            record = model_registry.get(spec.name, version)
            card = render_model_card(spec, record, model_evaluation, decision,
                                     plot_markdown=_plot_markdown(model_registry, model_evaluation))
            card_uri, card_sha = model_registry.write_model_card(spec.name, version, card)
            if not decision.promote:  # a promotion is tagged by production_model once it happened
                context.instance.add_run_tags(context.run.run_id, {OUTCOME_TAG: "refused"})
            rows = [{"rule": r.name, "result": "PASS" if r.passed else "FAIL", "detail": r.detail}
                    for r in decision.rules]
            return dg.MaterializeResult(
                value={"decision": decision.model_dump(mode="json"), "version": version,
                       "champion_version": model_evaluation["champion_version"],
                       "champion_pointer_sequence": model_evaluation["champion_pointer_sequence"],
                       "champion_age": age, "card_uri": card_uri, "card_sha256": card_sha},
                metadata={
                    "outcome": decision.outcome,
                    "model_version": version,
                    "reference": decision.reference,
                    "champion_version": model_evaluation["champion_version"] or "none",
                    "champion_age_partitions": age if age is not None else -1,
                    "rules_failed": len(decision.failed),
                    "rules": dg.MetadataValue.md(markdown_table(rows)),
                    "decision": dg.MetadataValue.json(decision.model_dump(mode="json")),
                    "model_card": dg.MetadataValue.md(card),
                    "model_card_uri": dg.MetadataValue.path(card_uri),
                    "model_card_sha256": card_sha,
                    "trained_by_run": dg.MetadataValue.dagster_run(record.run_id),
                },
            )

    return promotion_decision


def _plot_markdown(registry: ModelRegistryResource, evaluation: dict[str, Any]) -> str:
    """The evaluation's ROC/reliability plot (sha256-verified) embedded in the card."""
    from ml_assets.evaluation.plots import png_markdown

    plot = (evaluation.get("files") or {}).get("plot")
    if not plot:
        return ""
    return png_markdown(registry.lakehouse.read_bytes(plot["uri"], plot["sha256"], what="evaluation plot"))


def _production_model(spec: UseCaseSpec) -> dg.AssetsDefinition:
    keys = UseCaseKeys(spec.name)

    @dg.asset(
        key=keys.production_model,
        deps=[keys.promotion_decision],
        description="Which registered model version serves predictions. Materialized only when production "
        "changes: a promotion this run's decision allows, or a pin/rollback (`pin_version` + `reason`). Each "
        "materialization records the pointer file's uri and sha256; readers trust only that record.",
        kinds={"pytorch"},
        code_version=code_version(spec, __name__, "promotion"),
        output_required=False,
        io_manager_key="ref_io_manager",
        **asset_defaults(spec, "registry"),
    )
    def production_model(context: dg.AssetExecutionContext, config: ProductionModelConfig,
                         model_registry: ModelRegistryResource):
        with fatal_errors():
            change = _requested_change(context, config, model_registry)
        if change is None:
            return
        version, action, reason, expected = change
        with fatal_errors():
            pointer, pointer_sha = model_registry.set_production(
                spec.name, version, run_id=context.run.run_id, action=action, reason=reason,
                actor=actor_of(context, config.actor), expected_sequence=expected)
            record = model_registry.get(spec.name, version)
        context.instance.add_run_tags(context.run.run_id, {OUTCOME_TAG: "promoted" if action == "promote"
                                                           else "pinned"})
        yield dg.Output(
            pointer.model_dump(mode="json"),
            metadata={
                "model_version": pointer.version,
                "action": pointer.action,
                "sequence": pointer.sequence,
                "previous_version": pointer.previous_version or "none",
                "reason": pointer.reason,
                "actor": pointer.actor,
                "weights_sha256": pointer.sha256,
                "pointer_uri": dg.MetadataValue.path(model_registry.pointer_uri(spec.name, pointer.sequence)),
                "pointer_sha256": pointer_sha,
                "data_window": f"{record.training_set.train_start}..{record.training_set.train_end}",
                "trained_by_run": dg.MetadataValue.dagster_run(record.run_id),
                "decided_by": dg.MetadataValue.asset(keys.promotion_decision),
            },
        )

    def _requested_change(context, config: ProductionModelConfig, registry: ModelRegistryResource):
        """(version, action, reason, expected pointer sequence), or None when production stays."""
        if config.pin_version is not None:
            version = check_version_id(config.pin_version.strip())
            reason = (config.reason or context.run.tags.get(REASON_TAG) or "").strip()
            if not reason:
                raise ContractError("a pin/rollback needs a non-empty reason (config `reason` or run tag ml/reason)")
            registry.get(spec.name, version)  # unknown versions fail before anything is written
            return version, "rollback", reason, None
        run_id, document = read_latest_ref(context.instance, registry.lakehouse, keys.promotion_decision)
        if run_id != context.run.run_id:
            raise ContractError("production_model promotes only a decision made in the same run; to pin a version "
                                "set config `pin_version` and `reason`")
        decision = Decision.model_validate(document["decision"])
        if not decision.promote:
            context.log_event(dg.AssetObservation(
                asset_key=keys.production_model,
                metadata={"outcome": "refused", "challenger": document["version"],
                          "champion_keeps_serving": document["champion_version"] or "none",
                          "failed_rules": dg.MetadataValue.md("\n".join(f"- {d}" for d in decision.failed))}))
            context.log.info(f"challenger {document['version']} refused; production unchanged: "
                             + "; ".join(decision.failed))
            return None
        reason = "promotion gate passed: " + "; ".join(r.name for r in decision.rules)
        return document["version"], "promote", reason, document["champion_pointer_sequence"] or 0

    return production_model


def _model_reproducibility(spec: UseCaseSpec) -> dg.AssetsDefinition:
    keys = UseCaseKeys(spec.name)

    @dg.asset(
        key=keys.model_reproducibility,
        deps=[keys.candidate_model],
        description="Retrains registered versions from their recorded training sets and hyperparameters and "
        "compares weight hashes; also rebuilds each training set from its partitions. Reports the rate.",
        kinds={"pytorch"},
        code_version=code_version(spec, __name__, "model"),
        **asset_defaults(spec, "registry"),
    )
    def model_reproducibility(context: dg.AssetExecutionContext, config: ReproduceConfig,
                              model_registry: ModelRegistryResource, lakehouse: LakehouseResource
                              ) -> dg.MaterializeResult:
        from ml_assets.registry.reproduce import reproduce_all

        with fatal_errors():
            rows = reproduce_all(context, spec, model_registry, lakehouse, config.versions)
            if not rows:
                raise RegistryError("no registered versions to reproduce")
            rate = sum(r["weights_match"] for r in rows) / len(rows)
            report = lakehouse.write_content_addressed(lakehouse.uri(spec.name, "registry", "reproducibility"),
                                                       _json(rows), "json")
            return dg.MaterializeResult(metadata={
                "reproducibility_rate": rate,
                "versions_checked": len(rows),
                "training_sets_rebuilt_identically": sum(bool(r["training_set_rebuilt_matches"]) for r in rows),
                "results": dg.MetadataValue.md(markdown_table(rows)),
                "uri": dg.MetadataValue.path(report.uri), "sha256": report.sha256,
            })

    return model_reproducibility


def _json(document: Any) -> bytes:
    import json

    return json.dumps(document, indent=2, sort_keys=True, default=str).encode()
