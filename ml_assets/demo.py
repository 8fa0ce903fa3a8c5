"""`make demo`: the whole platform on the embedded 2013 data, as real Dagster runs.

1. Replay 2013 through the sensors (`ml_assets.replay`): each day's files land in the landing
   folder; the new-data sensor runs the daily loop; the freshness sensor bootstraps the first model
   (trained on January, evaluated on the first two weeks of February, promoted if it beats the
   baseline); drift and freshness sensors request retrains that go through the promotion gate.
2. Retrain every registered version from its recorded inputs and compare weight hashes.
3. Print the timeline, the monthly realized AUROC, the decisions and where everything is.

`mlp quickstart` runs the batch path instead (no sensors): Jan-Feb ingest, train, evaluate, score.
"""

from __future__ import annotations

import calendar
import os
import time
from datetime import date
from pathlib import Path

from ml_assets.runner import Platform
from ml_assets.spec import UseCaseSpec


def run_demo(platform: Platform, spec: UseCaseSpec, landing: Path, last: str, days_per_tick: int) -> int:
    from ml_assets.replay import print_replay, run_replay

    t0 = time.perf_counter()
    print(f"[{spec.name}] replaying {spec.partitions_start}..{last} through the sensors "
          f"(sensors evaluated every {days_per_tick} day(s)); landing folder {landing}")
    result = run_replay(platform, spec, landing, spec.partitions_start, last, days_per_tick)
    print_replay(result)
    reproduce = platform.reproduce(spec)
    _summary(platform, spec, reproduce.run_id)
    print(f"\nDemo finished in {time.perf_counter() - t0:.0f} s.")
    return 0


def _summary(platform: Platform, spec: UseCaseSpec, reproduce_run: str) -> None:
    registry = platform.defs.resources["model_registry"]
    lakehouse = platform.defs.resources["lakehouse"]
    production = registry.production(spec.name)
    reproduced = lakehouse.read_json(lakehouse.uri(spec.name, "registry", "reproducibility.json"))
    rate = sum(r["weights_match"] for r in reproduced) / len(reproduced)
    print(f"\nReproducibility: {rate:.0%} of {len(reproduced)} registered versions retrained to identical weights "
          f"(run {reproduce_run[:8]}).")
    print(f"Model registry: {lakehouse.uri(spec.name, 'registry')}")
    for record in registry.versions(spec.name):
        marker = "*" if production and record["version"] == production["version"] else " "
        ts = record["training_set"]
        print(f"  {marker} {record['version']}  trained on {ts['train_start']}..{ts['train_end']}  "
              f"card: {registry.model_card_uri(spec.name, record['version'])}")
    evaluation = lakehouse.read_json(lakehouse.uri(spec.name, "model_evaluation", "ref.json"))
    print(f"Latest evaluation report: {evaluation['report_uri']}")
    print(f"Predictions: {lakehouse.uri(spec.name, 'predictions')}   Drift reports: "
          f"{lakehouse.uri(spec.name, 'drift_report')}")
    print(f"Dagster instance (run and asset history): {os.environ.get('DAGSTER_HOME')}  ->  `make ui`")


def run_quickstart(platform: Platform, spec: UseCaseSpec) -> int:
    """The batch path: ingest Jan-Feb, train on January, evaluate on early February, score February."""
    from ml_assets.evaluation.assets import PROMOTION_GATE

    start = date.fromisoformat(spec.evaluation.start)
    last = start.replace(day=calendar.monthrange(start.year, start.month)[1]).isoformat()
    t0 = time.perf_counter()
    for label, fn in (
        (f"ingest {spec.partitions_start}..{last}", lambda: platform.ingest(spec, spec.partitions_start, last)),
        ("train + evaluate + gate", lambda: platform.train(spec)),
        (f"score {spec.evaluation.start}..{last}", lambda: platform.score(spec, spec.evaluation.start, last)),
    ):
        begin = time.perf_counter()
        result = fn()
        gate = [e for e in result.get_asset_check_evaluations() if e.check_name == PROMOTION_GATE]
        outcome = "ok" if result.success else ("refused by the promotion gate" if gate and not gate[0].passed
                                               else "FAILED")
        print(f"  {label:<40} {time.perf_counter() - begin:6.1f} s  run {result.run_id[:8]}  {outcome}")
    evaluation = platform.defs.resources["lakehouse"].read_json(
        platform.defs.resources["lakehouse"].uri(spec.name, "model_evaluation", "ref.json"))
    print(f"AUROC {evaluation['metrics']['challenger']['auroc']:.4f} (baseline "
          f"{evaluation['metrics']['baseline']['auroc']:.4f}); decision: "
          f"{'promote' if evaluation['decision']['promote'] else 'refuse'}; {time.perf_counter() - t0:.0f} s total")
    return 0
