"""Replay a use case partition by partition through the real sensors, against the real instance.

Each tick lands the next partitions' files in the use case's landing folder (from its declared
sources), evaluates the code location's sensors (`build_sensor_context` on the same instance, cursors
carried tick to tick) and executes what they request, tagged as the daemon tags sensor runs
(`dagster/sensor_name`, `dagster/run_key`); a run key already used is skipped, as the daemon skips it.
At the end, the timeline of training decisions is printed and stored; `make demo` then runs the policy
backtest (`policy_backtest` asset) on what the replay served.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg

from ml_assets.keys import (
    CHALLENGER_TAG,
    EVIDENCE_TAG,
    OUTCOME_TAG,
    RUN_KEY_TAG,
    SENSOR_NAME_TAG,
    TRIGGER_TAG,
    UseCaseKeys,
)
from ml_assets.ops.runner import Platform
from ml_assets.spec import RESERVED_COLUMNS, UseCaseSpec
from ml_assets.text import markdown_table

RETRAIN_TRIGGERS = ("drift", "freshness", "performance", "bootstrap")


class Lander:
    """Writes partitions of a use case's declared sources into its landing folder, the way a producer
    delivers them: one file per table and partition, a `.sha256` beside it, published atomically."""

    def __init__(self, spec: UseCaseSpec, landing: Path):
        from resources.sources import read_bulk

        self.spec, self.landing = spec, landing
        self.frames = {t.name: read_bulk(spec, t).frame for t in spec.sources if t.source is not None}

    def _publish(self, frame, target: Path) -> None:
        import hashlib

        target.parent.mkdir(parents=True, exist_ok=True)
        declared = [c for c in frame.columns if c not in RESERVED_COLUMNS]
        tmp = target.with_name(f".{target.name}.tmp")
        frame.select(declared).write_parquet(tmp)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        Path(f"{target}.sha256").write_text(f"{digest}  {target.name}\n")
        tmp.rename(target)  # the file appears whole or not at all, after its checksum

    def land(self, partition: date) -> None:
        import polars as pl

        from ml_assets.spec import PARTITION_COLUMN

        for table in self.spec.sources:
            frame = self.frames.get(table.name)
            if frame is None:
                continue
            if not table.partitioned:
                target = self.landing / f"{table.name}.parquet"
                if not target.exists():
                    self._publish(frame, target)
                continue
            if partition.isoformat() in table.known_missing_partitions:
                continue
            self._publish(frame.filter(pl.col(PARTITION_COLUMN) == partition),
                          self.landing / table.name / f"{partition}.parquet")


@dataclass
class Replay:
    platform: Platform
    spec: UseCaseSpec
    cursors: dict[str, str | None] = field(default_factory=dict)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    seconds_in_runs: float = 0.0

    def tick(self, partition: date) -> None:
        for sensor in self.platform.defs.sensors:
            with dg.build_sensor_context(instance=self.platform.instance, cursor=self.cursors.get(sensor.name),
                                         definitions=self.platform.defs,
                                         resources=self.platform.defs.resources) as context:
                data = sensor.evaluate_tick(context)
            self.cursors[sensor.name] = data.cursor if data.cursor is not None else self.cursors.get(sensor.name)
            for request in data.run_requests or []:
                self._execute(sensor.name, request, partition)

    def _execute(self, sensor_name: str, request: dg.RunRequest, partition: date) -> None:
        runs = self.platform.instance.get_runs(
            dg.RunsFilter(tags={SENSOR_NAME_TAG: sensor_name, RUN_KEY_TAG: request.run_key}), limit=1)
        if runs:
            return  # the daemon never launches a run key twice
        tags = {k: v for k, v in request.tags.items() if not k.startswith("dagster/asset_partition_range")}
        tags |= {SENSOR_NAME_TAG: sensor_name, RUN_KEY_TAG: request.run_key}
        span = request.partition_key_range
        first = request.partition_key or (span.start if span else None)
        last = request.partition_key or (span.end if span else None)
        start = time.perf_counter()
        result = self.platform.run(request.job_name, run_config=request.run_config or {}, tags=tags,
                                   first=first, last=last, raise_on_error=False)
        self.seconds_in_runs += time.perf_counter() - start
        trigger = request.tags.get(TRIGGER_TAG)
        if trigger in RETRAIN_TRIGGERS:
            self.timeline.append(self._decision(partition, trigger, request, result))
        elif not result.success:
            raise RuntimeError(f"{request.job_name} for {first}..{last} failed:\n{Platform.failure_text(result)}")

    def _decision(self, partition: date, trigger: str, request: dg.RunRequest, result) -> dict[str, Any]:
        run = self.platform.instance.get_run_by_id(result.run_id)
        evidence = json.loads(request.tags.get(EVIDENCE_TAG, "{}"))
        failed = ""
        if run.tags.get(OUTCOME_TAG) == "refused":
            decision = result.asset_materializations_for_node(
                "__".join(UseCaseKeys(self.spec.name).promotion_decision.path))
            if decision:
                rules = decision[-1].metadata["decision"].value["rules"]
                failed = "; ".join(r["name"] for r in rules if not r["passed"])
        outcome = run.tags.get(OUTCOME_TAG, "failed" if not result.success else "unknown")
        return {
            "partition": partition.isoformat(),
            "trigger": trigger,
            "evidence": {k: v for k, v in evidence.items() if k != "plan"},
            "train_window": [evidence["plan"]["train_start"], evidence["plan"]["train_end"]],
            "challenger": run.tags.get(CHALLENGER_TAG),
            "outcome": outcome,
            "failed_rules": failed if result.success else Platform.failure_text(result)[:300],
            "run_id": result.run_id,
        }


def run_replay(platform: Platform, spec: UseCaseSpec, landing: Path, first: date, last: date,
               partitions_per_tick: int = 1, progress: bool = True) -> dict[str, Any]:
    """Land each partition's files; evaluate the sensors every `partitions_per_tick` partitions."""
    landing.mkdir(parents=True, exist_ok=True)
    lander = Lander(spec, landing)
    replay = Replay(platform, spec)
    start = time.perf_counter()
    partitions = spec.partition_range(first, last)
    for i, partition in enumerate(partitions):
        lander.land(partition)
        if (i + 1) % partitions_per_tick and partition != partitions[-1]:
            continue
        replay.tick(partition)
        if progress and ((i + 1) % (partitions_per_tick * 4) == 0 or partition == partitions[-1]):
            print(f"  {partition}  {time.perf_counter() - start:6.1f} s  training decisions so far: "
                  f"{len(replay.timeline)}", flush=True)
    registry = platform.defs.resources["model_registry"]
    result = {
        "use_case": spec.name,
        "window": [first.isoformat(), last.isoformat()],
        "partitions_per_tick": partitions_per_tick,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "seconds_in_runs": round(replay.seconds_in_runs, 1),
        "timeline": replay.timeline,
        "versions": [v.version for v in registry.versions(spec.name)],
    }
    lake = platform.defs.resources["lakehouse"]
    stored = lake.write_content_addressed(lake.uri(spec.name, "replay"), json.dumps(result, indent=2).encode(), "json")
    result["stored"] = {"uri": stored.uri, "sha256": stored.sha256}
    return result


def print_replay(result: dict[str, Any]) -> None:
    print(f"\nReplay {result['window'][0]}..{result['window'][1]}: {result['wall_seconds']} s wall, "
          f"{result['seconds_in_runs']} s inside runs; {len(result['versions'])} model version(s).")
    print("\nTraining decisions (every one is a run of the train job):")
    rows = [{"partition": t["partition"], "trigger": t["trigger"], "train window": "..".join(t["train_window"]),
             "challenger": t["challenger"], "outcome": t["outcome"], "failed rules": t["failed_rules"][:60]}
            for t in result["timeline"]]
    print(markdown_table(rows))
    print(f"\nStored: {result['stored']['uri']}")
