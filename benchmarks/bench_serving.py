"""Online scoring on loopback: `mlp serve` (one uvicorn worker, its own process) under a bounded load.

    python -m benchmarks.bench_serving            # ~1.5 min: builds a small real world, then measures
    python -m benchmarks.run --sections serving   # the same, inside `make bench`

The world: flights of 2013-01-01..01-17 ingested, a model trained on 01-01..01-14 and pinned to production
(the rollback job: so a gate refusal on this short window does not leave nothing to serve), and the serving
state of 01-17. Requests are the real events of 01-17.

- single: an open-loop generator sends one event per request at a fixed rate (200/s by default) for a fixed
  time, each request at its scheduled time; latency counts from the scheduled time (no coordinated
  omission), at most `max_in_flight` requests outstanding (the generator is bounded: it never queues more);
- batched: closed loop, `batch_events` events per request, `batch_clients` connections;
- floor, in this process: the model's forward on one row (already-encoded tensors) plus decoding the
  request's JSON, the minimum any online scorer of this model pays per single prediction;
- CPU-seconds of the server process per 1,000 predictions (from /proc), per phase.
Targets (issue #14): p99 <= 10 ms for single predictions at 200 req/s on one worker; >= 1,000 predictions/s
per core batched.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from typing import Any

from benchmarks.measure import REPO_ROOT

DAY = date(2013, 1, 17)
P99_TARGET_S = 0.010
BATCH_TARGET_PER_CORE = 1000.0


@dataclass(frozen=True)
class ServingConfig:
    rate: float = 200.0  # single requests per second
    seconds: float = 15.0  # per phase
    max_in_flight: int = 64
    batch_events: int = 100
    batch_clients: int = 2
    warmup_seconds: float = 2.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def build_world(root: str, log) -> dict[str, Any]:
    """A DAGSTER_HOME and lakehouse with a model in production and the serving state of DAY."""
    import dagster as dg

    from ml_assets import tables
    from ml_assets.definitions import build_definitions
    from ml_assets.keys import UseCaseJobs, UseCaseKeys
    from ml_assets.ops.runner import Platform
    from ml_assets.spec.catalog import use_case
    from resources import build_resources

    spec = use_case("flight_delay")
    home, lake = os.path.join(root, "home"), os.path.join(root, "lake")
    os.makedirs(home)
    open(os.path.join(home, "dagster.yaml"), "w").close()  # SQLite storage under the home
    t0 = time.perf_counter()
    with dg.DagsterInstance.from_config(home) as instance:
        platform = Platform(build_definitions(build_resources(lakehouse_root=lake)), instance, log_level="ERROR")
        assert platform.ingest(spec, "2013-01-01", DAY.isoformat()).success
        assert platform.train(spec, train_start="2013-01-01", train_end="2013-01-14", eval_start="2013-01-15",
                              eval_end=DAY.isoformat()).success
        registry = platform.defs.resources["model_registry"]
        version = registry.versions(spec.name)[-1].version
        assert platform.rollback(spec, version, reason="benchmark: serve the trained model", actor="bench").success
        assert platform.run(UseCaseJobs(spec.name).serving, first=DAY.isoformat()).success
        lakehouse = platform.defs.resources["lakehouse"]
        keys = UseCaseKeys(spec.name)
        events, _ = tables.read_partitions(platform, lakehouse, spec, keys.raw(spec.events_table), [DAY])
        features, _ = tables.read_partitions(platform, lakehouse, spec, keys.features, [DAY])
        from ml_assets.registry.models import load_version

        model = load_version(registry, spec.name, version)
    log(f"  world: ingest + train + pin + serving state in {time.perf_counter() - t0:.1f} s; serving {version}")
    payload = [{c: v for c, v in row.items() if c in spec.events.columns and v is not None}
               for row in events.iter_rows(named=True)]
    return {"home": home, "lake": lake, "version": version, "events": payload, "features": features,
            "model": model}


def floor(world: dict[str, Any], reps: int = 3000) -> dict[str, float]:
    """Seconds per single prediction: forward on one encoded row + JSON decode of one request body."""
    import statistics

    import torch

    torch.set_num_threads(1)
    model = world["model"]
    numeric, categorical = model.preprocessor.encode(world["features"].head(1))
    body = json.dumps(world["events"][0]).encode()
    forward, decode = [], []
    with torch.inference_mode():
        for _ in range(200):
            model.net(numeric, categorical)
        for _ in range(reps):
            t = time.perf_counter()
            torch.sigmoid(model.net(numeric, categorical))
            forward.append(time.perf_counter() - t)
            t = time.perf_counter()
            json.loads(body)
            decode.append(time.perf_counter() - t)
    f, d = statistics.median(forward), statistics.median(decode)
    return {"forward_s": f, "json_decode_s": d, "floor_s": f + d}


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _single(base: str, events: list[dict], cfg: ServingConfig, seconds: float) -> dict[str, Any]:
    import httpx

    bodies = [json.dumps(e).encode() for e in events]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    dropped = 0
    in_flight = 0
    limits = httpx.Limits(max_connections=cfg.max_in_flight, max_keepalive_connections=cfg.max_in_flight)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10) as client:
        async def one(i: int, scheduled: float) -> None:
            nonlocal in_flight
            try:
                r = await client.post("/v1/flight_delay/predict", content=bodies[i % len(bodies)],
                                      headers={"content-type": "application/json"})
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                latencies.append(time.perf_counter() - scheduled)
            finally:
                in_flight -= 1

        tasks = []
        start = time.perf_counter()
        n = int(seconds * cfg.rate)
        for i in range(n):
            scheduled = start + i / cfg.rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if in_flight >= cfg.max_in_flight:
                dropped += 1  # bounded: the generator never queues more than max_in_flight
                continue
            in_flight += 1
            tasks.append(asyncio.create_task(one(i, scheduled)))
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - start
    return {"requests": len(latencies), "dropped": dropped, "statuses": statuses, "wall_s": wall,
            "offered_rate": cfg.rate, "achieved_rate": len(latencies) / wall,
            "p50_s": _quantile(latencies, 0.50), "p95_s": _quantile(latencies, 0.95),
            "p99_s": _quantile(latencies, 0.99), "max_s": max(latencies) if latencies else float("nan")}


async def _batched(base: str, events: list[dict], cfg: ServingConfig, seconds: float) -> dict[str, Any]:
    import httpx

    k = cfg.batch_events
    bodies = [json.dumps({"events": events[i:i + k]}).encode() for i in range(0, len(events) - k + 1, k)]
    latencies: list[float] = []
    predictions = 0
    statuses: dict[int, int] = {}
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        stop = time.perf_counter() + seconds

        async def loop(c: int) -> None:
            nonlocal predictions
            i = c
            while time.perf_counter() < stop:
                t = time.perf_counter()
                r = await client.post("/v1/flight_delay/predict", content=bodies[i % len(bodies)],
                                      headers={"content-type": "application/json"})
                latencies.append(time.perf_counter() - t)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if r.status_code == 200:
                    predictions += k
                i += cfg.batch_clients

        start = time.perf_counter()
        await asyncio.gather(*(loop(c) for c in range(cfg.batch_clients)))
        wall = time.perf_counter() - start
    return {"requests": len(latencies), "predictions": predictions, "statuses": statuses, "wall_s": wall,
            "predictions_per_s": predictions / wall, "events_per_request": k, "clients": cfg.batch_clients,
            "p50_s": _quantile(latencies, 0.50), "p95_s": _quantile(latencies, 0.95),
            "p99_s": _quantile(latencies, 0.99)}


def run(cfg: ServingConfig | None = None, log=print) -> dict[str, Any]:
    import httpx

    cfg = cfg or ServingConfig()
    root = tempfile.mkdtemp(prefix="bench-serving-")
    proc = None
    try:
        world = build_world(root, log)
        port = _free_port()
        env = {**os.environ, "DAGSTER_HOME": world["home"], "ML_LAKEHOUSE_ROOT": world["lake"],
               "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "ml_assets.ops.cli", "--use-case", "flight_delay",
                                 "--log-level", "ERROR", "serve", "--port", str(port)], cwd=REPO_ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlp serve did not become ready: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
        events = world["events"]
        asyncio.run(_single(base, events, cfg, cfg.warmup_seconds))  # warm-up, not reported
        results: dict[str, Any] = {"config": cfg.__dict__, "model_version": world["version"], "day": DAY.isoformat()}
        for name, phase in (("single", _single), ("batched", _batched)):
            cpu0 = _cpu_seconds(proc.pid)
            out = asyncio.run(phase(base, events, cfg, cfg.seconds))
            out["server_cpu_s"] = _cpu_seconds(proc.pid) - cpu0
            count = out["requests"] if name == "single" else out["predictions"]
            out["cpu_s_per_1000_predictions"] = out["server_cpu_s"] / count * 1000 if count else float("nan")
            out["server_cores_used"] = out["server_cpu_s"] / out["wall_s"]
            results[name] = out
        results["floor"] = floor(world)
        single, batched, fl = results["single"], results["batched"], results["floor"]
        per_core = batched["predictions"] / batched["server_cpu_s"] if batched["server_cpu_s"] else float("nan")
        results["verdicts"] = {
            "single_p99_s": single["p99_s"], "single_p99_target_s": P99_TARGET_S,
            "single_p99_vs_target": single["p99_s"] / P99_TARGET_S,
            "single_p50_vs_floor": single["p50_s"] / fl["floor_s"],
            "batched_predictions_per_core_s": per_core, "batched_target_per_core_s": BATCH_TARGET_PER_CORE,
            "batched_vs_target": per_core / BATCH_TARGET_PER_CORE,
            "single_met": single["p99_s"] <= P99_TARGET_S and single["achieved_rate"] >= 0.95 * cfg.rate,
            "batched_met": per_core >= BATCH_TARGET_PER_CORE,
        }
        v = results["verdicts"]
        log(f"  single @ {cfg.rate:.0f}/s offered: {single['achieved_rate']:.0f}/s served, "
            f"p50 {single['p50_s']*1e3:.2f} ms, "
            f"p95 {single['p95_s']*1e3:.2f} ms, p99 {single['p99_s']*1e3:.2f} ms (target <= 10 ms: "
            f"{v['single_p99_vs_target']:.2f}x of it, {'met' if v['single_met'] else 'missed'}); statuses "
            f"{single['statuses']}, dropped by the bound {single['dropped']}; "
            f"{single['cpu_s_per_1000_predictions']:.2f} CPU-s / 1000 predictions")
        log(f"  batched ({cfg.batch_events}/request, {cfg.batch_clients} clients): {batched['predictions_per_s']:.0f} "
            f"predictions/s wall, {per_core:.0f} per server core-second "
            f"(target >= 1000: {v['batched_vs_target']:.2f}x, "
            f"{'met' if v['batched_met'] else 'missed'}); request p50 {batched['p50_s']*1e3:.1f} ms, p99 "
            f"{batched['p99_s']*1e3:.1f} ms; {batched['cpu_s_per_1000_predictions']:.3f} CPU-s / 1000 predictions")
        log(f"  floor: forward on one row {fl['forward_s']*1e6:.0f} us + JSON decode {fl['json_decode_s']*1e6:.1f} us "
            f"= {fl['floor_s']*1e6:.0f} us; single p50 is {v['single_p50_vs_floor']:.0f}x the floor")
        return results
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("WHYLOGS_NO_ANALYTICS", "True")
    print(json.dumps(run(), indent=1, default=str))
