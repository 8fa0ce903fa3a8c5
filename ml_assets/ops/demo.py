"""`make demo` and `make quickstart` for any use case, with every default taken from its spec.

demo: replay the use case's whole range through the sensors (`ml_assets.ops.replay`): partitions land
in its landing folder; the new-data sensor runs each partition's loop; the freshness sensor
bootstraps the first model from the declared training and evaluation windows; drift and freshness
sensors request retrains that go through the promotion decision. Then the policy backtest compares the
loop with frozen, blind periodic and hindsight policies; every registered version is retrained from its
recorded inputs; and the summary says where everything is.

quickstart: the batch path without sensors: ingest through the first evaluation window, train,
evaluate, decide, score the evaluation window.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ml_assets.keys import OUTCOME_TAG, UseCaseJobs, UseCaseKeys
from ml_assets.ops.runner import Platform
from ml_assets.spec import UseCaseSpec

TICK = {"daily": 7, "weekly": 2, "monthly": 1}  # partitions landed between two sensor evaluations


def run_demo(platform: Platform, spec: UseCaseSpec, landing: Path, last: str | None = None,
             partitions_per_tick: int | None = None) -> int:
    from ml_assets.ops.replay import print_replay, run_replay

    t0 = time.perf_counter()
    last_day = spec.partition_range(last, last)[0] if last else spec.partitions_end
    tick = partitions_per_tick or TICK[spec.cadence]
    print(f"[{spec.name}] replaying {spec.partitions_start}..{last_day} ({spec.cadence}) through the sensors, "
          f"{tick} partition(s) per tick; landing folder {landing}")
    result = run_replay(platform, spec, landing, spec.partitions_start, last_day, tick)
    print_replay(result)
    print_backtest(platform, spec, platform.run(UseCaseJobs(spec.name).backtest, raise_on_error=False))
    reproduce = platform.reproduce(spec)
    summary(platform, spec, reproduce)
    trace_sample(platform, spec)
    serving_state(platform, spec)
    print(f"\nDemo finished in {time.perf_counter() - t0:.0f} s.")
    return 0


def print_backtest(platform: Platform, spec: UseCaseSpec, run) -> None:
    """The policy backtest's table and the closed loop's targets, read back from its verified record."""
    import json

    from ml_assets import lineage
    from ml_assets.monitoring.backtest import COLUMNS
    from ml_assets.text import markdown_table

    if not run.success:
        print(f"\nPolicy backtest run {run.run_id[:8]} failed:\n{Platform.failure_text(run)}")
        return
    key = UseCaseKeys(spec.name).policy_backtest
    _, meta = lineage.recorded_latest(platform.instance, key)
    lakehouse = platform.defs.resources["lakehouse"]
    document = json.loads(lakehouse.read_bytes(str(meta["uri"]), str(meta["sha256"]), what="policy backtest"))
    s = document["summary"]
    print(f"\nPolicy backtest (run {run.run_id[:8]}): realized AUROC per month on the same {document['events']} "
          f"served events; blind = retrain every {document['blind_every_partitions']} partitions, always promote; "
          "hindsight = best registered version trained before the month.")
    print(markdown_table(document["months"], list(COLUMNS)))
    means = s["mean_monthly_auroc"]
    print("Mean monthly AUROC: " + ", ".join(f"{p} {v}" for p, v in means.items()))
    print(f"Closed loop >= frozen in {s['closed_loop_at_least_frozen_months']} of {s['months']} months"
          f" (below in: {', '.join(s['months_below_frozen']) or 'none'}); >= blind periodic in "
          f"{s['closed_loop_at_least_blind_months']} of {s['months']}.")
    recal = document.get("recalibration")
    if recal:
        verdicts = "; ".join(f"{kind}: lower ECE in {v['months_better']} of {v['months']} months, mean ECE "
                             f"{v['mean_ece_served']} -> {v['mean_ece_recalibrated']}, "
                             f"{'qualifies' if v['qualifies'] else 'does not qualify'}"
                             for kind, v in recal["verdicts"].items())
        print(f"Recalibration study (maps fitted on the {recal['fit_partitions']} labelled partitions before each "
              f"month, applied to the month): {verdicts}. The platform serves the models' own probabilities.")
    print(f"Stored: {meta['uri']} (plot: {meta['plot_uri']}; in the UI: asset {key.to_user_string()})")


def summary(platform: Platform, spec: UseCaseSpec, reproduce) -> None:
    from ml_assets.registry.models import production_pointer

    registry = platform.defs.resources["model_registry"]
    lakehouse = platform.defs.resources["lakehouse"]
    node = "__".join(UseCaseKeys(spec.name).model_reproducibility.path)
    done = reproduce.asset_materializations_for_node(node) if reproduce.success else []
    if done:
        meta = done[-1].metadata
        print(f"\nReproducibility: {meta['reproducibility_rate'].value:.0%} of {meta['versions_checked'].value} "
              f"registered version(s) retrained to identical weights (run {reproduce.run_id[:8]}).")
    else:
        print(f"\nReproducibility run {reproduce.run_id[:8]} failed:\n{Platform.failure_text(reproduce)}")
    pointer = production_pointer(platform.instance, registry, spec.name)
    print(f"Model registry: {lakehouse.uri(spec.name, 'registry')}")
    for record in registry.versions(spec.name):
        marker = "*" if pointer and record.version == pointer.version else " "
        ts = record.training_set
        print(f"  {marker} {record.version}  trained on {ts.train_start}..{ts.train_end}  run {record.run_id[:8]}")
    print(f"Dagster instance (run and asset history): {os.environ.get('DAGSTER_HOME')}  ->  `make ui`")


def serving_state(platform: Platform, spec: UseCaseSpec) -> None:
    """Build what `mlp serve` loads (the serving state of the partition the newest labels serve), so the
    service answers right after the demo."""
    from ml_assets.errors import PlatformError
    from ml_assets.serving.server import build_state

    try:
        partition = build_state(spec.name, platform=platform)
    except PlatformError as exc:
        print(f"\nOnline scoring: no serving state built: {exc}")
        return
    print(f"\nOnline scoring: serving state of {partition} built; `mlp --use-case {spec.name} serve` answers "
          f"POST /v1/{spec.name}/predict for events of {partition} (README: Online scoring).")


def trace_sample(platform: Platform, spec: UseCaseSpec) -> None:
    """Trace one served prediction of every version that served (`mlp trace`): the audit chain from the
    prediction to the landed bytes, every cited file re-hashed. Predictions are picked from the current
    partition files, read verified."""
    import random

    from ml_assets import lineage
    from ml_assets.audit.ledger import Ledger
    from ml_assets.audit.trace import trace
    from resources.lakehouse import read_parquet_bytes

    res = platform.defs.resources
    lakehouse = res["lakehouse"]
    ledger = Ledger(platform.instance, lakehouse, res["model_registry"], spec.name)
    key = UseCaseKeys(spec.name).predictions
    current = lineage.recorded_partitions(platform.instance, key, [p.isoformat() for p in spec.partition_range(
        spec.partitions_start, spec.partitions_end)])
    chosen: dict[str, str] = {}
    for pkey in sorted(current):
        receipt = current[pkey]
        frame = read_parquet_bytes(lakehouse.read_bytes(receipt.uri, receipt.sha256, what=f"{key.to_user_string()}"
                                                        f"[{pkey}]"), receipt.uri)
        for version in sorted(set(frame.get_column("model_version").to_list()) - set(chosen)):
            ids = frame.filter(frame.get_column("model_version") == version).get_column("prediction_id")
            chosen[version] = random.Random(spec.model.seed).choice(sorted(ids.to_list()))
    traces = [trace(ledger, i) for i in chosen.values()]
    files = sum(1 for t in traces for h in t.hops if h.verified is not None)
    bad = [t.prediction_id for t in traces if not t.verified]
    print(f"Audit trace: {len(traces) - len(bad)} of {len(traces)} sampled predictions (one per serving version) "
          f"trace to their landed bytes; {files} cited files re-hashed"
          + (f"; NOT verified: {', '.join(bad)}" if bad else "") + "  ->  `mlp trace <prediction id>`")


def run_quickstart(platform: Platform, spec: UseCaseSpec) -> int:
    """Ingest through the first evaluation window (and its label delay), train, decide, score it."""
    last = min(spec.shift(spec.evaluation.end, spec.label_delay), spec.partitions_end).isoformat()
    first = spec.partitions_start.isoformat()
    t0 = time.perf_counter()
    for label, fn in (
        (f"ingest {first}..{last}", lambda: platform.ingest(spec, first, last)),
        ("train + evaluate + decide (+ promote)", lambda: platform.train(spec)),
        (f"score {spec.evaluation.start}..{spec.evaluation.end}",
         lambda: platform.score(spec, spec.evaluation.start.isoformat(), spec.evaluation.end.isoformat(),
                                raise_on_error=False)),
    ):
        begin = time.perf_counter()
        result = fn()
        outcome = platform.instance.get_run_by_id(result.run_id).tags.get(OUTCOME_TAG, "ok")
        print(f"  {label:<44} {time.perf_counter() - begin:6.1f} s  run {result.run_id[:8]}  "
              f"{outcome if result.success else 'FAILED: ' + Platform.failure_text(result)[:200]}")
    print(f"{time.perf_counter() - t0:.0f} s total; open the UI with `make ui` to browse the runs and assets.")
    return 0
