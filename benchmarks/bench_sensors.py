"""Section 5: sensor evaluation time after 10 vs 365 daily partitions of history: it must stay flat.

Two instances are compared in the same process, interleaved: one holding 10 ingested days, one
holding the whole year (both real `Platform.ingest` runs). Measured on each:
- the instance queries a sensor makes, on the features asset: the newest materialization, the new
  records after a cursor, the newest records of the last 7 partitions, the set of materialized
  partitions, and the latest materialization event;
- every sensor the code location defines (if any), evaluated as the daemon would, against a landing
  folder holding the same days: the idle tick (cursor from the previous tick) and, for the new-data
  sensor, the tick that finds one newly landed day.
A ratio (365-day median / 10-day median) near 1 means flat.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from benchmarks.measure import summary
from ml_assets.keys import UseCaseKeys
from ml_assets.spec import UseCaseSpec


@dataclass(frozen=True)
class SensorConfig:
    reps: int = 15
    flat_ratio: float = 1.5  # 365-day median within this factor of the 10-day median counts as flat


def _queries(instance: Any, key: Any) -> dict[str, Callable[[], Any]]:
    import dagster as dg

    newest = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=2, ascending=False).records
    cursor = newest[-1].storage_id if newest else None
    partitions = sorted({r.partition_key for r in newest if r.partition_key})
    last7 = sorted(instance.get_materialized_partitions(key))[-7:] if partitions else []
    return {
        "newest_materialization": lambda: instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key), limit=1, ascending=False),
        "records_after_cursor": lambda: instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_storage_id=cursor), limit=100, ascending=True),
        "newest_of_last_7_partitions": lambda: instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=last7), limit=100, ascending=False),
        "materialized_partitions": lambda: instance.get_materialized_partitions(key),
        "latest_materialization_event": lambda: instance.get_latest_materialization_event(key),
    }


def land(spec: UseCaseSpec, root: str, days: list[date]) -> str:
    """Write `days` of every partitioned table (and each dimension) into the use case's landing folder
    under `root` (`<root>/<use case>/...`, the layout the sensors read); returns `root`.

    `ml_assets.ops.replay.Lander`, as the replay lands partitions: each table's declared source is
    conformed once per process (the ingest already did it), then one file and checksum per partition.
    """
    from pathlib import Path

    from ml_assets.ops.replay import Lander

    lander = Lander(spec, Path(root) / spec.name)
    for day in days:
        lander.land(day)
    return root


def _sensor_ticks(platform: Any, landing_root: str) -> dict[str, Callable[[], Any]]:
    """Each sensor's tick as the daemon evaluates it, with the raw source reading `landing_root`.

    - idle: the cursor its previous tick returned (nothing new: what runs every 30 s);
    - new day: for a date cursor (the new-data sensor), the cursor one day back, so the tick finds one
      landed day and checks it against the instance's materialized partitions.
    """
    import dagster as dg

    from resources.sources import RawSourceResource

    resources = {**platform.defs.resources, "raw_source": RawSourceResource(landing_root=landing_root)}
    ticks: dict[str, Callable[[], Any]] = {}
    for sensor in platform.defs.sensors:
        if isinstance(sensor, dg.AutomationConditionSensorDefinition):
            continue

        def evaluate(sensor=sensor, cursor=None):
            with dg.build_sensor_context(instance=platform.instance, cursor=cursor, definitions=platform.defs,
                                         resources=resources) as context:
                return sensor.evaluate_tick(context)

        cursor = evaluate().cursor
        ticks[f"sensor {sensor.name}: idle tick"] = lambda evaluate=evaluate, c=cursor: evaluate(cursor=c)
        try:
            previous = (date.fromisoformat(cursor) - timedelta(days=1)).isoformat() if cursor else None
        except ValueError:
            previous = None
        if previous:
            ticks[f"sensor {sensor.name}: new-day tick"] = lambda evaluate=evaluate, c=previous: evaluate(cursor=c)
    return ticks


def run(spec: UseCaseSpec, small: Any, large: Any, days: dict[str, list[date]], workdir: str, config: SensorConfig,
        log=print) -> dict[str, Any]:
    """`small` / `large`: Platforms whose instances hold `days["small"]` / `days["large"]` of history."""
    key = UseCaseKeys(spec.name).features
    small_days, large_days = len(days["small"]), len(days["large"])
    per_instance: dict[str, dict[str, Callable[[], Any]]] = {}
    errors: dict[str, str] = {}
    for label, platform in (("small", small), ("large", large)):
        fns = _queries(platform.instance, key)
        landing_root = land(spec, os.path.join(workdir, f"landing-{label}"), days[label])
        try:
            fns |= _sensor_ticks(platform, landing_root)
        except Exception as exc:  # a sensor that cannot be evaluated here is reported, not hidden
            errors[label] = f"{type(exc).__name__}: {exc}"
        per_instance[label] = fns
    names = [n for n in per_instance["small"] if n in per_instance["large"]]
    times: dict[str, dict[str, list[float]]] = {n: {"small": [], "large": []} for n in names}
    for name in names:  # warm both
        per_instance["small"][name]()
        per_instance["large"][name]()
    for _ in range(config.reps):
        for name in names:
            for label in ("small", "large"):
                start = time.perf_counter()
                per_instance[label][name]()
                times[name][label].append(time.perf_counter() - start)
    results = {}
    for name in names:
        s, la = summary(times[name]["small"]), summary(times[name]["large"])
        ratio = la["median"] / s["median"] if s["median"] else None
        results[name] = {f"{small_days}_days": s, f"{large_days}_days": la, "ratio": ratio,
                         "flat": ratio is not None and ratio <= config.flat_ratio}
    log("  sensors: " + ", ".join(f"{n} {r['ratio']:.2f}x" for n, r in results.items()))
    return {"asset": key.to_user_string(), "history_days": [small_days, large_days], "measurements": results,
            "sensors_defined": [n for n in names if n.startswith("sensor ")], "errors": errors,
            "flat_ratio": config.flat_ratio}
