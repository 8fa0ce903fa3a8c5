"""The policy backtest as an asset: the closed loop as it ran against frozen, blind periodic and
hindsight policies (ml_assets.monitoring.backtest), from verified reads of what was recorded. The
table, the plot and every counterfactual model's weight hash are in its materialization."""

import json
from datetime import date
from typing import Any

import dagster as dg

from ml_assets import tables
from ml_assets.errors import MissingDataError, fatal_errors
from ml_assets.features import compute
from ml_assets.keys import DATA_PARTITION_TAG, UseCaseKeys
from ml_assets.lineage import compact
from ml_assets.policies import asset_defaults, code_version
from ml_assets.spec import UseCaseSpec
from ml_assets.text import markdown_table
from resources.lakehouse import LakehouseResource
from resources.model_registry import ModelRegistryResource


class BacktestConfig(dg.Config):
    """Leave empty to backtest every scored partition."""

    last: str | None = None


def build_backtest_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    keys = UseCaseKeys(spec.name)
    every = int(spec.monitoring.backtest_every)

    @dg.asset(
        key=keys.policy_backtest,
        deps=[keys.predictions, keys.labels, keys.features, keys.production_model],
        description="Was the closed loop worth running? Month by month realized AUROC on the same served events of "
        f"the loop as run, the first promoted model frozen, blind retraining every {every} partition(s) on the "
        "loop's retrain window (always promoted), and the best registered version per month in hindsight.",
        kinds={"pytorch", "polars"},
        code_version=code_version(spec, __name__, "training", "monitoring"),
        **asset_defaults(spec, "monitoring"),
    )
    def policy_backtest(context: dg.AssetExecutionContext, config: BacktestConfig, lakehouse: LakehouseResource,
                        model_registry: ModelRegistryResource) -> dg.MaterializeResult:
        with fatal_errors():
            return _backtest(context, config, lakehouse, model_registry)

    def _backtest(context, config, lakehouse, registry) -> dg.MaterializeResult:
        from ml_assets.audit.ledger import Ledger
        from ml_assets.evaluation.plots import png_markdown, policy_backtest_png
        from ml_assets.monitoring import backtest as bt

        last = date.fromisoformat(config.last) if config.last else spec.partitions_end
        ledger = Ledger(context.instance, lakehouse, registry, spec.name)
        promotions = [m for m in ledger.all(keys.production_model) if m.metadata.get("action") == "promote"]
        if not promotions:
            raise MissingDataError(f"asset {keys.policy_backtest.to_user_string()}: no model was ever promoted")
        frozen_version = str(promotions[0].metadata["model_version"])
        decided_at = ledger.run_tags(promotions[0].run_id).get(DATA_PARTITION_TAG)

        history = spec.partition_range(spec.partitions_start, last)
        preds, pred_receipts = tables.read_partitions(context, lakehouse, spec, keys.predictions, history,
                                                      missing_ok=True)
        if preds.is_empty():
            raise MissingDataError(f"asset {keys.predictions.to_user_string()}: nothing was scored up to {last}")
        last_scored = max(date.fromisoformat(p) for p in pred_receipts)
        # Blind retraining starts where the loop's first promotion was decided (a manual promotion has no
        # decision partition: the day before that model first served).
        first_decision = date.fromisoformat(decided_at) if decided_at else spec.shift(
            preds.filter(preds.get_column("model_version") == frozen_version).get_column(compute.PARTITION).min(), -1)
        history = spec.partition_range(spec.partitions_start, last_scored)
        features, feature_receipts = tables.read_partitions(context, lakehouse, spec, keys.features, history)
        labels, label_receipts = tables.read_partitions(context, lakehouse, spec, keys.labels, history,
                                                        columns=[compute.EVENT_ID, compute.LABEL])
        served = (preds.select(compute.EVENT_ID, "probability", "model_version")
                  .join(labels, on=compute.EVENT_ID).join(features, on=compute.EVENT_ID).sort(compute.EVENT_ID))

        candidates = [_candidate(ledger, v) for v in sorted({m.metadata["model_version"]
                                                             for m in ledger.all(keys.candidate_model)})]
        by_version = {c.version: c for c in candidates}
        decisions = bt.blind_decisions(spec, first_decision, last_scored, every)
        blind, scorers = [], [by_version[frozen_version].score]
        for decision in decisions:
            model, plan = _blind_model(spec, features, labels, decision)
            blind.append({"decision_partition": decision.isoformat(), "plan": plan, "weights_sha256": model[1]})
            scorers.append(model[0].score)
        import torch

        scores = {
            "closed_loop": torch.tensor(served.get_column("probability").to_numpy(), dtype=torch.float32),
            "frozen": by_version[frozen_version].score(served).float(),
            "blind_periodic": bt.serve_segments(served, decisions, scorers),
        }
        rows = bt.monthly(served, scores, candidates)
        summary = bt.summarize(rows)
        from ml_assets.monitoring import recalibration

        recal = recalibration.study(spec, served, scores["closed_loop"].numpy(), int(spec.monitoring.retrain_eval),
                                    spec.evaluation.calibration_bins)
        inputs = {keys.predictions.to_user_string(): pred_receipts, keys.features.to_user_string(): feature_receipts,
                  keys.labels.to_user_string(): label_receipts}
        from sensors.policy import partition_runs

        document = {"use_case": spec.name, "served_partitions": [min(pred_receipts), max(pred_receipts)],
                    "scored_partitions": partition_runs(spec, set(pred_receipts)),
                    "events": served.height, "frozen_version": frozen_version,
                    "frozen_promotion": {"storage_id": promotions[0].storage_id, "run_id": promotions[0].run_id,
                                         "decision_partition": decided_at},
                    "first_decision_partition": first_decision.isoformat(), "blind_every_partitions": every,
                    "blind_models": blind, "months": rows, "summary": summary, "recalibration": recal,
                    "input_receipts": compact(inputs)}
        stored = lakehouse.write_content_addressed(lakehouse.uri(spec.name, "policy_backtest"),
                                                   json.dumps(document, indent=2, sort_keys=True).encode(), "json")
        png = policy_backtest_png(rows, bt.POLICIES)
        plot = lakehouse.write_content_addressed(lakehouse.uri(spec.name, "policy_backtest"), png, "png")
        monitoring = _monitoring_plot(context, lakehouse, sorted(pred_receipts))
        means = summary["mean_monthly_auroc"]
        return dg.MaterializeResult(
            data_version=dg.DataVersion(stored.sha256),
            metadata={
                **{f"mean_monthly_auroc_{p}": dg.MetadataValue.float(means[p]) for p in bt.POLICIES
                   if means[p] is not None},
                "months": summary["months"],
                "closed_loop_at_least_frozen_months": summary["closed_loop_at_least_frozen_months"],
                "closed_loop_at_least_blind_months": summary["closed_loop_at_least_blind_months"],
                "frozen_version": frozen_version,
                "blind_models": len(blind),
                "monthly_auroc": dg.MetadataValue.md(markdown_table(rows, list(bt.COLUMNS))),
                "recalibration_monthly_ece": dg.MetadataValue.md(markdown_table(recal["months"], [
                    "month", "rows", "fit_rows", "ece_served", *(f"ece_{k}" for k in recalibration.MAPS)])),
                **{f"recalibration_{k}_qualifies": v["qualifies"] for k, v in recal["verdicts"].items()},
                "plot": dg.MetadataValue.md(png_markdown(png, "policy backtest")),
                "uri": dg.MetadataValue.path(stored.uri), "sha256": stored.sha256,
                "plot_uri": dg.MetadataValue.path(plot.uri), "plot_sha256": plot.sha256,
                **monitoring,
            },
        )

    def _monitoring_plot(context, lakehouse, partitions: list[str]) -> dict[str, Any]:
        """Each scored partition's realized AUROC (its verified model_health record) against what its
        serving version promised, plotted by partition: the monitoring history in data time."""
        from ml_assets.evaluation.plots import by_partition_png, png_markdown
        from ml_assets.monitoring import health
        from ml_assets.monitoring.health_assets import read_records

        records = read_records(context.instance, lakehouse, spec, partitions)
        points = [{"partition": p, "realized": (r.get(health.REALIZED) or {}).get("auroc"),
                   "promised": (r.get("promised") or {}).get("auroc")} for p, r in sorted(records.items())]
        if not any(p["realized"] is not None for p in points):
            return {}
        png = by_partition_png(points, f"{spec.name}: realized AUROC per partition vs the serving version's promise")
        stored = lakehouse.write_content_addressed(lakehouse.uri(spec.name, "policy_backtest"), png, "png")
        return {"monitoring_plot": dg.MetadataValue.md(png_markdown(png, "realized AUROC by partition")),
                "monitoring_plot_uri": dg.MetadataValue.path(stored.uri), "monitoring_plot_sha256": stored.sha256,
                "monitoring_partitions_plotted": len(points)}

    return [policy_backtest]


def _candidate(ledger: Any, version: str) -> Any:
    from ml_assets.monitoring.backtest import CandidateVersion
    from ml_assets.training.train import from_safetensors

    record = ledger.record(version)
    return CandidateVersion(version, date.fromisoformat(record.training_set.train_end),
                            from_safetensors(ledger.weights(version)).score)


def _blind_model(spec: UseCaseSpec, features: Any, labels: Any, decision: date) -> tuple[tuple[Any, str], dict]:
    """The model blind retraining would have deployed at `decision`: the loop's retrain window, the
    use case's training code and hyperparameters, the same deterministic seed."""
    import hashlib
    from dataclasses import asdict

    from ml_assets.training import train
    from ml_assets.training.assets import TrainingWindowConfig, resolve_window
    from ml_assets.training.dataset import fit, labelled_split
    from sensors.policy import retrain_plan

    plan = retrain_plan(spec, decision)
    if plan is None:
        raise MissingDataError(f"blind retraining at {decision}: not enough labelled history")
    window = resolve_window(spec, TrainingWindowConfig(train_start=plan.train_start, train_end=plan.train_end,
                                                       validation_partitions=plan.validation_partitions))
    frame = labelled_split(features, labels, window)
    fs = spec.features
    artifact = train.to_safetensors(fit(frame, spec.model, fs.numeric, fs.categorical),
                                    {"use_case": spec.name, "backtest": "blind_periodic"})
    return (train.from_safetensors(artifact), hashlib.sha256(artifact).hexdigest()), asdict(plan)
