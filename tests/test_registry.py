"""Registry lifecycle on real days: promotion refused, rollback, tamper detection, reproduction."""

import dagster as dg
import pytest

from ml_assets.keys import UseCaseKeys
from ml_assets.registry.assets import ACTOR_TAG
from tests.conftest import make_platform

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world(tmp_path_factory, spec):
    with dg.instance_for_test() as instance:
        platform = make_platform(tmp_path_factory.mktemp("registry_lake"), instance)
        assert platform.ingest(spec, "2013-01-01", "2013-02-10").success
        first = platform.train(spec, train_start="2013-01-01", train_end="2013-01-31",
                               eval_start="2013-02-01", eval_end="2013-02-07")
        assert first.success
        assert platform.score(spec, "2013-02-01", "2013-02-07").success
        # One evaluation day has fewer rows than the policy's minimum: a certain refusal.
        second = platform.train(spec, train_start="2013-01-05", train_end="2013-02-04",
                                eval_start="2013-02-08", eval_end="2013-02-08")
        yield platform, first, second


def _versions(platform, spec):
    return [r["version"] for r in platform.defs.resources["model_registry"].versions(spec.name)]


def _served_version(platform, spec, day):
    lake = platform.defs.resources["lakehouse"]
    preds = lake.read_partitions(spec.name, "predictions", [day])
    return preds.get_column("model_version").unique().to_list()


def test_refused_challenger_is_registered_but_the_champion_keeps_serving(world, spec):
    platform, _, second = world
    registry = platform.defs.resources["model_registry"]
    v1, v2 = _versions(platform, spec)
    assert registry.production(spec.name)["version"] == v1
    assert not second.success
    (gate,) = [e for e in second.get_asset_check_evaluations() if e.check_name == "promotion_gate"]
    assert not gate.passed
    assert "rows" in gate.metadata["failed"].value
    keys = UseCaseKeys(spec)
    materialized = {e.asset_key for e in second.get_asset_materialization_events()}
    assert keys.production_model not in materialized and keys.candidate_model in materialized
    assert registry.get(spec.name, v2)["challenged_champion"] == v1


def test_rollback_pins_the_model_that_scores_the_next_partition(world, spec):
    platform, _, _ = world
    registry = platform.defs.resources["model_registry"]
    v1, v2 = _versions(platform, spec)
    result = platform.rollback(spec, v2, reason="test: pin the newer model", actor="auditor@example.com")
    assert result.success
    assert registry.production(spec.name)["version"] == v2
    assert platform.score(spec, "2013-02-08", "2013-02-08").success
    assert _served_version(platform, spec, "2013-02-08") == [v2]
    assert _served_version(platform, spec, "2013-02-01") == [v1]  # history is untouched
    event = platform.instance.get_latest_materialization_event(UseCaseKeys(spec).production_model)
    meta = event.asset_materialization.metadata
    assert meta["action"].value == "rollback" and meta["previous_version"].value == v1
    assert platform.instance.get_run_by_id(result.run_id).tags[ACTOR_TAG] == "auditor@example.com"
    assert platform.rollback(spec, v1, reason="test: back", actor="auditor@example.com").success


def test_rollback_to_an_unknown_version_fails_and_changes_nothing(world, spec):
    platform, _, _ = world
    registry = platform.defs.resources["model_registry"]
    before = registry.production(spec.name)
    with pytest.raises(Exception, match="not registered"):
        platform.rollback(spec, "v-doesnotexist", reason="typo", actor="me")
    assert registry.production(spec.name) == before


def test_a_tampered_artifact_is_never_served(world, spec):
    platform, _, _ = world
    registry = platform.defs.resources["model_registry"]
    lake = platform.defs.resources["lakehouse"]
    production = registry.production(spec.name)
    record = registry.get(spec.name, production["version"])
    path = record["artifact_uri"]
    original = lake.read_bytes(path)
    before = lake.read_bytes(lake.partition_uri(spec.name, "predictions", "2013-02-01"))
    try:
        with open(path, "r+b") as handle:
            handle.seek(len(original) - 10)
            handle.write(b"\x00\x01\x02")
        with pytest.raises(Exception, match="does not match the recorded"):
            platform.score(spec, "2013-02-09", "2013-02-09")
        with open(path, "wb") as handle:
            handle.write(original[: len(original) // 2])  # truncated
        with pytest.raises(Exception, match="does not match the recorded"):
            platform.score(spec, "2013-02-09", "2013-02-09")
    finally:
        with open(path, "wb") as handle:
            handle.write(original)
    assert not lake.exists(lake.partition_uri(spec.name, "predictions", "2013-02-09"))
    assert lake.read_bytes(lake.partition_uri(spec.name, "predictions", "2013-02-01")) == before
    assert registry.production(spec.name) == production


def test_every_registered_version_reproduces_bit_for_bit(world, spec):
    platform, _, _ = world
    result = platform.reproduce(spec)
    assert result.success
    (event,) = result.get_asset_materialization_events()
    meta = event.materialization.metadata
    assert meta["versions_checked"].value == 2
    assert meta["reproducibility_rate"].value == 1.0
    assert meta["training_sets_rebuilt_identically"].value == 2


def test_model_card_is_written_and_linked(world, spec):
    platform, _, _ = world
    registry = platform.defs.resources["model_registry"]
    lake = platform.defs.resources["lakehouse"]
    for version in _versions(platform, spec):
        card = lake.read_bytes(registry.model_card_uri(spec.name, version)).decode()
        for section in ("Intended use", "Provenance", "Evaluation", "Per slice", "Promotion decision",
                        "Known limitations"):
            assert section in card, (version, section)
    _, v2 = _versions(platform, spec)
    assert "Shadow scoring" in lake.read_bytes(registry.model_card_uri(spec.name, v2)).decode()
