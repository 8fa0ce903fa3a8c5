"""Audit evidence against the real materialized graph: traces verify every hash against the bytes on
disk, and a changed byte anywhere on the path is reported at its hop."""

from __future__ import annotations

import hashlib
import random

import polars as pl
import pytest

from ml_assets.audit.ledger import Ledger
from ml_assets.audit.trace import render, trace

pytestmark = pytest.mark.integration


def ledger_of(materialized, spec) -> Ledger:
    res = materialized.resources
    return Ledger(materialized.instance, res["lakehouse"], res["model_registry"], spec.name)


def some_predictions(ledger: Ledger, n: int, seed: int = 13) -> list[str]:
    ids = []
    for m in ledger.all(ledger.keys.predictions):
        ids += pl.read_parquet(str(m.metadata["uri"])).get_column("prediction_id").to_list()
    return random.Random(seed).sample(sorted(ids), n)


def disk_sha256(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def test_random_predictions_trace_to_raw_bytes_and_every_hash_verifies(materialized, spec):
    ledger = ledger_of(materialized, spec)
    for prediction_id in some_predictions(ledger, 4):
        t = trace(ledger, prediction_id)
        assert t.prediction_id == prediction_id and t.verified, render(t)
        kinds = {h.kind for h in t.hops}
        assert {"prediction", "predictions", "model", "pointer", "change", "decision", "card", "evaluation",
                "training_set", "trained_on", "input", "source", "quarantine"} <= kinds, kinds
        inputs = {h.title.split(" ")[0] for h in t.hops if h.kind == "input"}
        assert {f"{spec.name}/features", f"{spec.name}/raw_flights", f"{spec.name}/raw_weather",
                f"{spec.name}/labels"} <= inputs
        # Independently of the code under test: each cited file's bytes hash to what the hop says.
        for hop in t.hops:
            if hop.sha256 and hop.uri and hop.kind not in ("model",):
                assert disk_sha256(hop.uri) == hop.sha256, hop.title
        model = next(h for h in t.hops if h.kind == "model")
        artifact = ledger.registry.get(spec.name, t.model_version).artifact_uri
        assert disk_sha256(artifact) == model.sha256
        scored = next(h for h in t.hops if h.kind == "predictions")
        row = pl.read_parquet(scored.uri).filter(pl.col("prediction_id") == prediction_id)
        assert row.height == 1 and row["probability"][0] == pytest.approx(t.probability)


def test_an_event_id_alone_traces_to_its_newest_prediction(materialized, spec):
    ledger = ledger_of(materialized, spec)
    prediction_id = some_predictions(ledger, 1, seed=5)[0]
    t = trace(ledger, prediction_id.split("/", 1)[1])
    assert t.prediction_id == prediction_id and t.verified


@pytest.mark.parametrize("hop_kind", ["input", "trained_on", "evaluation", "pointer"])
def test_a_flipped_byte_on_the_path_is_reported_at_its_hop(materialized, spec, hop_kind, tmp_path):
    ledger = ledger_of(materialized, spec)
    prediction_id = some_predictions(ledger, 1, seed=7)[0]
    target = next(h for h in trace(ledger, prediction_id).hops if h.kind == hop_kind and h.uri)
    original = open(target.uri, "rb").read()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01
    try:
        with open(target.uri, "wb") as handle:
            handle.write(bytes(flipped))
        t = trace(Ledger(ledger.instance, ledger.lakehouse, ledger.registry, spec.name), prediction_id)
        bad = [h for h in t.hops if h.verified is False]
        assert not t.verified and any(h.uri == target.uri for h in bad), render(t)
        assert "BAD" in render(t)
    finally:
        with open(target.uri, "wb") as handle:
            handle.write(original)


def test_an_unknown_prediction_id_is_a_clear_error(materialized, spec):
    from ml_assets.errors import MissingDataError

    with pytest.raises(MissingDataError, match="no recorded prediction"):
        trace(ledger_of(materialized, spec), "v-000000000000/2013|2|3|XX|1|EWR|5")


def mlp(materialized, *args: str):
    """The real CLI in a subprocess, on the materialized graph's instance and lakehouse."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "DAGSTER_HOME": materialized.instance.root_directory,
           "ML_LAKEHOUSE_ROOT": str(materialized.root), "ML_USE_CASE": "flight_delay"}
    return subprocess.run([str(Path(sys.executable).parent / "mlp"), *args], capture_output=True, text=True,
                          env=env, timeout=300, cwd=Path(__file__).resolve().parents[1])


def test_mlp_trace_prints_every_hop_and_json(materialized, spec):
    import json

    prediction_id = some_predictions(ledger_of(materialized, spec), 1, seed=3)[0]
    out = mlp(materialized, "trace", prediction_id)
    assert out.returncode == 0, out.stderr
    assert "production pointer in force" in out.stdout and "landed file" in out.stdout
    assert "do NOT" not in out.stdout
    as_json = json.loads(mlp(materialized, "trace", prediction_id, "--json").stdout)
    assert as_json["prediction_id"] == prediction_id and len(as_json["hops"]) > 20
