"""One feature-pipeline measurement in a fresh process: read Parquet inputs, compute, write Parquet.

Why a process per measurement: peak memory of DuckDB / Polars / Arrow is native, so the only honest
figure is the process's peak RSS; a fresh process makes that peak belong to this one run. The
baseline is the RSS after every import (and, for the floor, after loading the output it will write),
so imports are not charged to the pipeline. Timing starts after imports too.

    python -m benchmarks.feature_worker <impl> <inputs.json> <out.parquet> [<reference output>]

Implementations:
- `ours`: the platform's feature function as the asset runs it, `iter_features` (month chunks,
  DuckDB reading the Parquet inputs), each chunk written as a zstd Parquet file into folder `out`.
- `pandas`: the idiomatic pandas peer (`benchmarks.pandas_features`), reading only used columns.
- `floor`: read the used Parquet columns and write the (already computed) output once.
Prints one JSON line: seconds per stage, rows, RSS baseline and peak.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks.bench_features import readable
from benchmarks.measure import peak_rss_bytes, rss_bytes
from benchmarks.pandas_features import EVENT_COLUMNS

LABEL_COLUMNS = ["partition_date", "label", "carrier", "origin", "dest"]
WEATHER_USED = ["origin", "year", "month", "day", "hour", "temp", "dewp", "humid", "wind_speed", "precip",
                "pressure", "visib", "_partition_date"]
PLANES_USED = ["tailnum", "year", "seats", "engines"]


class Stages:
    """Wall seconds of consecutive stages."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = now - self.last
        self.last = now

    def total(self) -> float:
        return self.last - self.start


def _spec():
    """The use case (loaded before the baseline: reading and checking the YAML is not the pipeline)."""
    from ml_assets.spec.catalog import use_case

    return use_case("flight_delay")


def run_ours(inputs: dict[str, str], out: str, stages: Stages) -> int:
    """Each chunk is written as its own zstd Parquet file in the folder `out` (the asset, too,
    writes chunk by chunk: it never holds the whole output)."""
    from ml_assets.features.compute import iter_features

    shutil.rmtree(out, ignore_errors=True)  # a previous repetition's chunks
    os.makedirs(out)
    rows = 0
    for i, chunk in enumerate(iter_features(_spec(), inputs)):
        chunk.write_parquet(os.path.join(out, f"part-{i:05d}.parquet"), compression="zstd")
        rows += chunk.height
    stages.mark("read+compute+write")
    return rows


def run_pandas(inputs: dict[str, str], out: str, stages: Stages) -> int:
    import pandas as pd

    from benchmarks.pandas_features import pandas_features

    events = pd.read_parquet(inputs["events"], columns=list(EVENT_COLUMNS))
    weather = pd.read_parquet(inputs["weather"])  # every column: deduplication orders by all of them
    planes = pd.read_parquet(inputs["planes"])
    labels = pd.read_parquet(inputs["labels"], columns=LABEL_COLUMNS)
    stages.mark("read")
    frame = pandas_features(_spec(), events, weather, planes, labels)
    stages.mark("compute")
    frame.to_parquet(out, compression="zstd", index=False)
    stages.mark("write")
    return len(frame)


def run_floor(inputs: dict[str, str], out: str, stages: Stages, output: Any) -> int:
    import polars as pl

    used = {"events": list(EVENT_COLUMNS), "weather": WEATHER_USED, "planes": PLANES_USED, "labels": LABEL_COLUMNS}
    frames = [pl.read_parquet(inputs[name], columns=cols) for name, cols in used.items()]
    stages.mark("read")
    output.write_parquet(out, compression="zstd")
    stages.mark("write")
    del frames
    return output.height


RUNNERS: dict[str, Callable[..., int]] = {"ours": run_ours, "pandas": run_pandas}


# What each implementation imports before its baseline is taken (imports are not part of the pipeline).
PRELOAD = {
    "ours": ("polars", "duckdb", "pyarrow.parquet", "ml_assets.features.compute"),
    "pandas": ("pandas", "pyarrow.parquet", "numpy"),
    "floor": ("polars",),
}


def main(argv: list[str]) -> dict[str, Any]:
    import importlib

    impl, inputs_json, out = argv[0], argv[1], argv[2]
    with open(inputs_json) as handle:
        inputs = json.load(handle)
    for module in PRELOAD[impl]:
        importlib.import_module(module)
    if impl in RUNNERS:
        _spec()  # cached by the catalog: the runner's call is free
    output = None
    if impl == "floor":
        import polars as pl

        output = pl.read_parquet(readable(argv[3]))  # the output to write, loaded before the baseline
    base = rss_bytes()
    stages = Stages()
    rows = run_floor(inputs, out, stages, output) if impl == "floor" else RUNNERS[impl](inputs, out, stages)
    return {"impl": impl, "rows": rows, "seconds": stages.total(), "stages": stages.seconds,
            "rss_base_bytes": base, "rss_peak_bytes": peak_rss_bytes()}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
