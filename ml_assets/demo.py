"""The demo: the whole lineage on real days, as real Dagster runs, then a summary of where it is.

1. ingest the days from the first partition through the end of the evaluation month (one run);
2. train on the spec's window, evaluate on its held-out days, promote if the gate passes;
3. score every day of the evaluation month with the production model;
4. train a second challenger one week later and let the gate decide against the champion;
5. score again and print the registry, decisions and file locations.
"""

from __future__ import annotations

import calendar
import os
import time
from datetime import date, timedelta

from ml_assets.runner import Platform
from ml_assets.spec import UseCaseSpec


def _shift(day: str, days: int) -> str:
    return (date.fromisoformat(day) + timedelta(days=days)).isoformat()


def demo_window(spec: UseCaseSpec) -> tuple[str, str]:
    """Score range: the evaluation month (first day of evaluation to the end of its month)."""
    start = date.fromisoformat(spec.evaluation.start)
    end = start.replace(day=calendar.monthrange(start.year, start.month)[1])
    return start.isoformat(), end.isoformat()


def _outcome(result) -> str:
    from ml_assets.evaluation.assets import PROMOTION_GATE

    if result.success:
        return "ok"
    gate = [e for e in result.get_asset_check_evaluations() if e.check_name == PROMOTION_GATE]
    if gate and not gate[0].passed:
        return "challenger refused by the promotion gate; the champion keeps serving"
    return "FAILED (see the run in the UI)"


def run_demo(platform: Platform, spec: UseCaseSpec) -> int:
    from ml_assets.evaluation.assets import PROMOTION_GATE

    timings: dict[str, float] = {}
    score_first, score_last = demo_window(spec)
    t0 = time.perf_counter()

    def step(label: str, fn):
        start = time.perf_counter()
        result = fn()
        timings[label] = round(time.perf_counter() - start, 1)
        print(f"  {label:<50} {timings[label]:>6.1f} s  run {result.run_id[:8]}  {_outcome(result)}")
        return result

    print(f"[{spec.name}] demo on {spec.partitions_start}..{score_last}")
    ingest = step(f"ingest {spec.partitions_start}..{score_last}",
                  lambda: platform.ingest(spec, spec.partitions_start, score_last))
    if not ingest.success:
        return 1
    first = step(f"train {spec.training.train_start}..{spec.training.train_end} + evaluate + gate",
                 lambda: platform.train(spec))
    step(f"score {score_first}..{score_last}", lambda: platform.score(spec, score_first, score_last))
    second = step(
        "train one week later + evaluate vs champion",
        lambda: platform.train(
            spec,
            train_start=_shift(spec.training.train_start, 7), train_end=_shift(spec.training.train_end, 7),
            eval_start=_shift(spec.evaluation.start, 7), eval_end=_shift(spec.evaluation.end, 7),
        ),
    )
    step(f"score {score_first}..{score_last} again", lambda: platform.score(spec, score_first, score_last))
    step("reproduce every registered version", lambda: platform.reproduce(spec))
    total = round(time.perf_counter() - t0, 1)

    registry = platform.defs.resources["model_registry"]
    lakehouse = platform.defs.resources["lakehouse"]
    production = registry.production(spec.name)
    print(f"\nTotal {total} s.\n\nModel versions (registry: {lakehouse.uri(spec.name, 'registry')}):")
    for record in registry.versions(spec.name):
        marker = "*" if production and record["version"] == production["version"] else " "
        ts = record["training_set"]
        print(f"  {marker} {record['version']}  trained on {ts['train_start']}..{ts['train_end']}")
    for label, result in (("first training", first), ("second training", second)):
        for evaluation in result.get_asset_check_evaluations():
            if evaluation.check_name == PROMOTION_GATE:
                meta = evaluation.metadata
                print(f"\nPromotion decision ({label}): {meta['decision'].value}")
                print(meta["passed"].value)
                if meta["failed"].value.strip("- "):
                    print(meta["failed"].value)
    evaluation = lakehouse.read_json(lakehouse.uri(spec.name, "model_evaluation", "ref.json"))
    print(f"\nLatest evaluation report: {evaluation['report_uri']}")
    print(f"Challenger AUROC {evaluation['metrics']['challenger']['auroc']:.4f} "
          f"(baseline {evaluation['metrics']['baseline']['auroc']:.4f}) on {evaluation['window'][0]}.."
          f"{evaluation['window'][1]}")
    reproduced = lakehouse.read_json(lakehouse.uri(spec.name, "registry", "reproducibility.json"))
    rate = sum(r["weights_match"] for r in reproduced) / len(reproduced)
    print(f"Reproducibility: {rate:.0%} of {len(reproduced)} versions retrained to identical weights")
    print(f"Production model: {production['version'] if production else 'none'} "
          f"(model card: {registry.model_card_uri(spec.name, production['version']) if production else '-'})")
    print(f"Predictions: {lakehouse.uri(spec.name, 'predictions')}")
    print(f"Dagster instance (run history): {os.environ.get('DAGSTER_HOME')}   -> `make ui` to browse it")
    return 0
