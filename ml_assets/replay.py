"""Replay 2013 day by day through the real sensors, against the real instance.

Each tick lands the next day's files in the landing folder, evaluates the code location's sensor
definitions (`build_sensor_context` on the same instance, with cursors carried tick to tick) and
executes what they request, tagged exactly as the daemon tags sensor runs (`dagster/sensor_name`,
`dagster/run_key`). A run key already used is skipped, as the daemon skips it. At the end the
timeline of retrains and the monthly realized AUROC (closed loop vs a model frozen after its first
training) are printed and stored.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg

from ml_assets.runner import Platform
from ml_assets.spec import UseCaseSpec, date_range

SENSOR_NAME_TAG = "dagster/sensor_name"
RUN_KEY_TAG = "dagster/run_key"


def land_day(spec: UseCaseSpec, landing: Path, day: date) -> None:
    """Copy one day of every partitioned source table (and dimensions once) to the landing folder."""
    from resources.sources import RawSourceResource

    source = RawSourceResource()
    for table in spec.sources:
        if not table.partitioned:
            target = landing / f"{table.name}.parquet"
            if not target.exists():
                source.read(table, spec.embedded_package).write_parquet(target)
            continue
        if day.isoformat() in table.known_missing_partitions:
            continue
        frame = source.read(table, spec.embedded_package, [day])
        (landing / table.name).mkdir(parents=True, exist_ok=True)
        tmp = landing / table.name / f".{day}.parquet.tmp"
        frame.write_parquet(tmp)
        tmp.rename(landing / table.name / f"{day}.parquet")  # a file appears whole or not at all


@dataclass
class Replay:
    platform: Platform
    spec: UseCaseSpec
    landing: Path
    cursors: dict[str, str | None] = field(default_factory=dict)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    seconds_in_runs: float = 0.0

    def tick(self, day: date) -> None:
        for sensor in self.platform.defs.sensors:
            with dg.build_sensor_context(instance=self.platform.instance, cursor=self.cursors.get(sensor.name),
                                         definitions=self.platform.defs,
                                         resources=self.platform.defs.resources) as context:
                data = sensor.evaluate_tick(context)
            self.cursors[sensor.name] = data.cursor if data.cursor is not None else self.cursors.get(sensor.name)
            for request in data.run_requests or []:
                self._execute(sensor.name, request, day)

    def _execute(self, sensor_name: str, request: dg.RunRequest, day: date) -> None:
        runs = self.platform.instance.get_runs(
            dg.RunsFilter(tags={SENSOR_NAME_TAG: sensor_name, RUN_KEY_TAG: request.run_key}), limit=1)
        if runs:
            return  # the daemon never launches a run key twice
        tags = {**request.tags, SENSOR_NAME_TAG: sensor_name, RUN_KEY_TAG: request.run_key}
        start = time.perf_counter()
        span = request.partition_key_range
        first = request.partition_key or (span.start if span else None)
        last = request.partition_key or (span.end if span else None)
        tags = {k: v for k, v in tags.items() if not k.startswith("dagster/asset_partition_range")}
        result = self.platform.run(request.job_name, run_config=request.run_config or {}, tags=tags,
                                   first=first, last=last, raise_on_error=False)
        self.seconds_in_runs += time.perf_counter() - start
        trigger = request.tags.get("ml/trigger")
        if trigger in ("drift", "freshness", "bootstrap"):
            self.timeline.append(self._decision(day, trigger, request, result))
        elif not result.success:
            raise RuntimeError(f"{request.job_name} for {request.partition_key} failed:\n"
                               f"{Platform.failure_text(result)}")

    def _decision(self, day: date, trigger: str, request: dg.RunRequest, result) -> dict[str, Any]:
        gate = [e for e in result.get_asset_check_evaluations() if e.check_name == "promotion_gate"]
        evidence = json.loads(request.tags.get("ml/evidence", "{}"))
        registry = self.platform.defs.resources["model_registry"]
        versions = registry.versions(self.spec.name)
        return {
            "date": day.isoformat(),
            "trigger": trigger,
            "evidence": {k: v for k, v in evidence.items() if k != "plan"},
            "train_window": [evidence["plan"]["train_start"], evidence["plan"]["train_end"]],
            "challenger": versions[-1]["version"] if versions else None,
            "outcome": "promoted" if gate and gate[0].passed and result.success else "refused",
            "reasons": gate[0].metadata["failed"].value if gate and not gate[0].passed else "",
            "run_id": result.run_id,
        }


def monthly_auroc(platform: Platform, spec: UseCaseSpec, frozen_version: str | None, last: str) -> list[dict]:
    """Realized AUROC per month of the served predictions (closed loop) and of the frozen model."""
    import polars as pl
    import torch
    from torchmetrics.functional.classification import binary_auroc

    lake = platform.defs.resources["lakehouse"]
    registry = platform.defs.resources["model_registry"]
    days = [d.isoformat() for d in date_range(spec.partitions_start, last)]
    preds = lake.read_partitions(spec.name, "predictions", days, missing_ok=True)
    if preds.is_empty():
        return []
    scored_days = sorted(preds.get_column("event_date").unique().cast(pl.String).to_list())
    labels = lake.read_partitions(spec.name, "labels", scored_days, columns=["event_id", "label"])
    feats = lake.read_partitions(spec.name, "features", scored_days)
    frame = preds.join(labels, on="event_id").join(feats.drop("event_date"), on="event_id")
    if frozen_version:
        frozen = registry.load(spec.name, frozen_version)
        frame = frame.with_columns(pl.Series("p_frozen", frozen.score(frame).numpy(), dtype=pl.Float64))
    rows = []
    for (month,), part in sorted(frame.group_by(pl.col("event_date").dt.month()), key=lambda kv: kv[0]):
        y = torch.tensor(part.get_column("label").cast(int).to_numpy())
        row = {"month": f"{month:02d}", "rows": part.height,
               "closed_loop": float(binary_auroc(torch.tensor(part.get_column("probability").to_numpy()), y))}
        if frozen_version:
            row["frozen"] = float(binary_auroc(torch.tensor(part.get_column("p_frozen").to_numpy()), y))
        rows.append(row)
    total_y = torch.tensor(frame.get_column("label").cast(int).to_numpy())
    rows.append({"month": "year", "rows": frame.height,
                 "closed_loop": float(binary_auroc(torch.tensor(frame.get_column("probability").to_numpy()), total_y)),
                 **({"frozen": float(binary_auroc(torch.tensor(frame.get_column("p_frozen").to_numpy()), total_y))}
                    if frozen_version else {})})
    return rows


def run_replay(platform: Platform, spec: UseCaseSpec, landing: Path, first: str, last: str,
               days_per_tick: int = 1) -> dict[str, Any]:
    """Land each day's files; evaluate the sensors every `days_per_tick` days (1 = daily ticks)."""
    landing.mkdir(parents=True, exist_ok=True)
    replay = Replay(platform, spec, landing)
    start = time.perf_counter()
    days = date_range(first, last)
    for i, day in enumerate(days):
        land_day(spec, landing, day)
        if (i + 1) % days_per_tick and day != days[-1]:
            continue
        replay.tick(day)
        if day.day <= days_per_tick or day.isoformat() == last:
            print(f"  {day}  {time.perf_counter() - start:6.1f} s  retrains so far: {len(replay.timeline)}", flush=True)
    wall = time.perf_counter() - start
    registry = platform.defs.resources["model_registry"]
    versions = registry.versions(spec.name)
    first_promoted = next((t["challenger"] for t in replay.timeline if t["outcome"] == "promoted"), None)
    result = {
        "window": [first, last],
        "days_per_tick": days_per_tick,
        "wall_seconds": round(wall, 1),
        "seconds_in_runs": round(replay.seconds_in_runs, 1),
        "timeline": replay.timeline,
        "versions": [v["version"] for v in versions],
        "frozen_version": first_promoted,
        "monthly_auroc": monthly_auroc(platform, spec, first_promoted, last),
    }
    lake = platform.defs.resources["lakehouse"]
    lake.write_json(lake.uri(spec.name, "replay", "replay.json"), result)
    return result


def print_replay(result: dict[str, Any]) -> None:
    from ml_assets.policies import markdown_table

    print(f"\nReplay {result['window'][0]}..{result['window'][1]}: {result['wall_seconds']} s wall, "
          f"{result['seconds_in_runs']} s inside runs; {len(result['versions'])} model versions.")
    print("\nTimeline of retrains:")
    rows = [{"date": t["date"], "trigger": t["trigger"], "train window": "..".join(t["train_window"]),
             "challenger": t["challenger"], "outcome": t["outcome"],
             "evidence": json.dumps(t["evidence"], default=str)[:90]} for t in result["timeline"]]
    print(markdown_table(rows))
    print("\nRealized AUROC per month (served predictions vs the first promoted model frozen):")
    print(markdown_table(result["monthly_auroc"]))
