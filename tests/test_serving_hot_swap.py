"""Hot swap under load on a real uvicorn server on loopback: production is pinned back and forth with the
real rollback job while a client keeps sending requests. No request fails, each response names a version
that was production at some point, and its probabilities are that version's own scores. Swapped-in weights
that fail verification stop serving (503 with the reason) until production points at verified weights."""

from __future__ import annotations

import socket
import threading
import time
from datetime import date
from pathlib import Path

import dagster as dg
import httpx
import polars as pl
import pytest
import uvicorn

from ml_assets import tables
from ml_assets.keys import UseCaseJobs, UseCaseKeys
from ml_assets.registry.models import load_version
from ml_assets.serving.app import ServingConfig, create_app
from tests.conftest import make_platform

pytestmark = pytest.mark.integration

DAY = date(2013, 1, 17)
URL = "/v1/flight_delay/predict"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory, spec):
    """Two registered versions on a short real window; production pinned to the first; DAY's serving state."""
    with dg.instance_for_test() as instance:
        platform = make_platform(tmp_path_factory.mktemp("hot_swap_lake"), instance)
        assert platform.ingest(spec, "2013-01-01", DAY.isoformat()).success
        for start, end, eval_start in (("2013-01-01", "2013-01-14", "2013-01-15"),
                                       ("2013-01-02", "2013-01-15", "2013-01-16")):
            assert platform.train(spec, train_start=start, train_end=end, eval_start=eval_start,
                                  eval_end=DAY.isoformat()).success
        registry = platform.defs.resources["model_registry"]
        v1, v2 = [r.version for r in registry.versions(spec.name)]
        assert platform.rollback(spec, v1, reason="test: start on v1", actor="test").success
        assert platform.run(UseCaseJobs(spec.name).serving, first=DAY.isoformat()).success
        lake = platform.defs.resources["lakehouse"]
        keys = UseCaseKeys(spec.name)
        events, _ = tables.read_partitions(platform, lake, spec, keys.raw(spec.events_table), [DAY])
        features, _ = tables.read_partitions(platform, lake, spec, keys.features, [DAY])
        expected = {}
        for v in (v1, v2):
            prob = load_version(registry, spec.name, v).score(features).numpy()
            expected[v] = dict(zip(features.get_column("event_id").to_list(), prob.tolist(), strict=True))
        assert expected[v1] != expected[v2]
        yield platform, v1, v2, events, expected


@pytest.fixture()
def server(world, spec):
    platform, *_ = world
    res = platform.defs.resources
    app = create_app(spec, platform.instance, res["lakehouse"], res["model_registry"],
                     ServingConfig(poll_seconds=0.2, platform_metrics=False))
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", access_log=False))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        srv.should_exit = True
        thread.join(timeout=15)


class Client(threading.Thread):
    """Sends single and batched requests in a loop and records every response."""

    def __init__(self, base: str, events: list[dict]) -> None:
        super().__init__(daemon=True)
        self.base, self.events, self.responses, self.stop = base, events, [], threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as http:
            i = 0
            while not self.stop.is_set():
                body = self.events[i % len(self.events)] if i % 3 else {"events": self.events[i % 50:i % 50 + 20]}
                r = http.post(URL, json=body)
                self.responses.append((r.status_code, r.json()))
                i += 1

    def versions(self) -> list[str]:
        return [doc.get("model_version") for status, doc in self.responses if status == 200]

    def wait_for(self, version: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.versions() and self.versions()[-1] == version:
                return
            time.sleep(0.05)
        raise AssertionError(f"never served {version}; last: {self.versions()[-3:]}")


def _events(frame: pl.DataFrame, spec) -> list[dict]:
    return [{c: v for c, v in row.items() if c in spec.events.columns and v is not None}
            for row in frame.iter_rows(named=True)]


def test_promote_and_roll_back_under_load_without_a_failed_or_misattributed_request(world, server, spec):
    platform, v1, v2, events, expected = world
    base, _ = server
    client = Client(base, _events(events, spec))
    client.start()
    try:
        client.wait_for(v1)
        assert platform.rollback(spec, v2, reason="test: swap to v2 under load", actor="test").success
        client.wait_for(v2)
        assert platform.rollback(spec, v1, reason="test: roll back to v1 under load", actor="test").success
        client.wait_for(v1)
        time.sleep(0.3)
    finally:
        client.stop.set()
        client.join(timeout=15)
    statuses = [s for s, _ in client.responses]
    assert len(statuses) > 30 and set(statuses) == {200}, [d for s, d in client.responses if s != 200][:3]
    versions = client.versions()
    # one version at a time, in the order production named them: v1 ... v2 ... v1
    runs = [v for i, v in enumerate(versions) if i == 0 or versions[i - 1] != v]
    assert runs == [v1, v2, v1], runs
    checked = 0
    for _, doc in client.responses:
        for p in doc["predictions"]:
            assert p["model_version"] == doc["model_version"] and p["prediction_id"].startswith(doc["model_version"])
            assert abs(p["probability"] - expected[doc["model_version"]][p["event_id"]]) <= 1e-6
            checked += 1
    assert checked > len(client.responses)


def test_weights_that_fail_verification_are_never_served(world, server, spec):
    platform, v1, v2, events, _ = world
    base, _ = server
    registry = platform.defs.resources["model_registry"]
    weights = registry.get(spec.name, v2).artifact_uri
    original = Path(weights).read_bytes()
    event = _events(events.head(1), spec)[0]
    with httpx.Client(base_url=base, timeout=10) as http:
        assert http.post(URL, json=event).json()["model_version"] == v1
        with open(weights, "r+b") as handle:  # a flipped byte in v2's weights
            handle.seek(len(original) - 3)
            handle.write(bytes([original[-3] ^ 1]))
        try:
            assert platform.rollback(spec, v2, reason="test: pin tampered weights", actor="test").success
            deadline = time.monotonic() + 20
            while (r := http.post(URL, json=event)).status_code == 200:
                assert r.json()["model_version"] == v1  # the old snapshot until the swap is attempted
                assert time.monotonic() < deadline, "kept serving after production moved to unverifiable weights"
                time.sleep(0.05)
            assert r.status_code == 503 and r.json()["error"] == "no_model"
            assert "sha256" in r.json()["message"] and v2 in r.json()["message"]
            ready = http.get("/readyz")
            assert ready.status_code == 503 and "sha256" in ready.json()["detail"]
            metrics = http.get("/metrics").text
            assert 'mlp_serving_model_loaded{use_case="flight_delay"} 0.0' in metrics
            assert platform.rollback(spec, v1, reason="test: back to verified weights", actor="test").success
        finally:
            Path(weights).write_bytes(original)
        deadline = time.monotonic() + 20
        while (r := http.post(URL, json=event)).status_code != 200:
            assert time.monotonic() < deadline, r.text
            time.sleep(0.05)
        assert r.json()["model_version"] == v1
