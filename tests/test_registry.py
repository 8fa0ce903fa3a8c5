"""Registry lifecycle on real days: a refusal recorded as a normal outcome, rollback, tamper
detection, version-id validation, concurrent pointer changes, reproduction."""

import json
from pathlib import Path

import dagster as dg
import pytest

from ml_assets import tables
from ml_assets.errors import IntegrityError, RegistryError
from ml_assets.keys import ACTOR_TAG, OUTCOME_TAG, UseCaseKeys
from ml_assets.registry.models import load_production, production_pointer
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
        # One evaluation partition (the policy asks for 100 rows per partition, it has them) but the
        # challenger must beat a fresh champion with a significant margin: refused on one day of data.
        second = platform.train(spec, train_start="2013-01-05", train_end="2013-02-04",
                                eval_start="2013-02-08", eval_end="2013-02-08")
        yield platform, first, second


def _registry(platform):
    return platform.defs.resources["model_registry"]


def _versions(platform, spec):
    return [r.version for r in _registry(platform).versions(spec.name)]


def _served(platform, spec, day):
    preds, _ = tables.read_partitions(platform, platform.defs.resources["lakehouse"], spec,
                                      UseCaseKeys(spec.name).predictions, spec.partition_range(day, day))
    return preds.get_column("model_version").unique().to_list()


def _pointer(platform, spec):
    return production_pointer(platform.instance, _registry(platform), spec.name)


def test_a_refusal_is_a_successful_run_with_a_recorded_decision(world, spec):
    platform, _, second = world
    keys = UseCaseKeys(spec.name)
    v1, v2 = _versions(platform, spec)
    assert second.success  # a refusal is a normal outcome, not a failure
    assert _pointer(platform, spec).version == v1
    materialized = {e.asset_key for e in second.get_asset_materialization_events()}
    assert {keys.candidate_model, keys.model_evaluation, keys.promotion_decision} <= materialized
    assert keys.production_model not in materialized
    decision = second.asset_materializations_for_node("__".join(keys.promotion_decision.path))[0].metadata
    assert decision["outcome"].value == "refuse" and decision["rules_failed"].value >= 1
    assert "FAIL" in decision["rules"].value
    assert platform.instance.get_run_by_id(second.run_id).tags[OUTCOME_TAG] == "refused"
    observed = [e for e in second.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert observed and observed[0].event_specific_data.asset_observation.metadata["outcome"].value == "refused"
    assert _registry(platform).get(spec.name, v2).challenged_champion == v1


def test_rollback_pins_the_model_that_scores_the_next_partition(world, spec):
    platform, _, _ = world
    v1, v2 = _versions(platform, spec)
    result = platform.rollback(spec, v2, reason="test: pin the newer model", actor="auditor@example.com")
    assert result.success
    assert _pointer(platform, spec).version == v2
    assert platform.score(spec, "2013-02-08").success
    assert _served(platform, spec, "2013-02-08") == [v2]
    assert _served(platform, spec, "2013-02-01") == [v1]  # history is untouched
    meta = platform.instance.get_latest_materialization_event(
        UseCaseKeys(spec.name).production_model).asset_materialization.metadata
    assert meta["action"].value == "rollback" and meta["previous_version"].value == v1
    assert meta["actor"].value == "auditor@example.com"
    assert platform.instance.get_run_by_id(result.run_id).tags[ACTOR_TAG] == "auditor@example.com"
    assert platform.rollback(spec, v1, reason="test: back", actor="auditor@example.com").success
    pointers = _registry(platform).pointers(spec.name)
    assert [p.sequence for p in pointers] == list(range(1, len(pointers) + 1))
    assert all(p.previous_sequence == p.sequence - 1 for p in pointers[1:])


@pytest.mark.parametrize("version, reason, message", [
    ("v-0123456789ab", "typo", "not registered"),
    ("../../../../etc/evil", "attack", "not a model version id"),
    (None, "   ", "non-empty reason"),
])
def test_a_bad_rollback_fails_with_its_reason_and_changes_nothing(world, spec, version, reason, message):
    platform, _, _ = world
    before = _pointer(platform, spec)
    version = version or before.version
    result = platform.rollback(spec, version, reason=reason, actor="me", raise_on_error=False)
    assert not result.success
    assert message in platform.failure_text(result)
    assert _pointer(platform, spec) == before


def test_concurrent_pointer_changes_cannot_both_win(world, spec):
    platform, _, _ = world
    registry = _registry(platform)
    current = registry.production(spec.name)
    with pytest.raises(RegistryError, match="changed concurrently"):
        registry.set_production(spec.name, current.version, run_id="x", action="rollback", reason="r", actor="a",
                                expected_sequence=current.sequence - 1)
    assert registry.production(spec.name) == current


def test_a_pointer_written_outside_a_run_is_not_trusted(world, spec):
    platform, _, _ = world
    registry = _registry(platform)
    current = registry.production(spec.name)
    registry.set_production(spec.name, current.version, run_id="outside", action="rollback", reason="r", actor="a")
    try:
        with pytest.raises(IntegrityError, match="not written by a recorded run"):
            _pointer(platform, spec)
        result = platform.score(spec, "2013-02-09", raise_on_error=False)
        assert not result.success and "recorded run" in platform.failure_text(result)
    finally:
        Path(registry.pointer_uri(spec.name, current.sequence + 1)).unlink()
    assert _pointer(platform, spec) == current


def test_tampered_or_swapped_weights_are_never_served(world, spec):
    platform, _, _ = world
    registry = _registry(platform)
    pointer = _pointer(platform, spec)
    record = registry.get(spec.name, pointer.version)
    path = Path(record.artifact_uri)
    original = path.read_bytes()
    record_path = Path(registry.record_uri(spec.name, pointer.version))
    original_record = record_path.read_bytes()
    try:
        path.write_bytes(original[:-10] + b"\x00\x01\x02" + original[-7:])
        with pytest.raises(IntegrityError, match="sha256"):
            load_production(platform.instance, registry, spec.name)
        path.write_bytes(original[: len(original) // 2])  # truncated
        result = platform.score(spec, "2013-02-09", raise_on_error=False)
        assert not result.success and "sha256" in platform.failure_text(result)
        # Other weights, and the record edited to match them: the pointer holds the sha256 of the record it
        # approved, so the edited record is refused before its weights are read.
        other = registry.get(spec.name, next(v for v in _versions(platform, spec) if v != pointer.version))
        path.write_bytes(Path(other.artifact_uri).read_bytes())
        edited = json.loads(original_record) | {"sha256": other.sha256}
        record_path.write_text(json.dumps(edited))
        with pytest.raises(IntegrityError, match=f"registry record {pointer.version}: .* was recorded"):
            load_production(platform.instance, registry, spec.name)
    finally:
        path.write_bytes(original)
        record_path.write_bytes(original_record)
    assert not platform.instance.get_materialized_partitions(UseCaseKeys(spec.name).predictions) >= {"2013-02-09"}
    assert _pointer(platform, spec) == pointer


def test_one_malformed_record_does_not_hide_the_others(world, spec):
    platform, _, _ = world
    registry = _registry(platform)
    bad = Path(registry.record_uri(spec.name, "v-000000000000"))
    bad.write_text("{not json")
    try:
        records, problems = registry.scan(spec.name)
        assert len(records) == 2 and list(problems) == [str(bad)]
        assert load_production(platform.instance, registry, spec.name) is not None
    finally:
        bad.unlink()


def test_every_registered_version_reproduces_bit_for_bit(world, spec):
    platform, _, _ = world
    result = platform.reproduce(spec)
    assert result.success
    (event,) = result.get_asset_materialization_events()
    meta = event.materialization.metadata
    assert meta["versions_checked"].value == 2
    assert meta["reproducibility_rate"].value == 1.0
    assert meta["training_sets_rebuilt_identically"].value == 2


def test_model_cards_are_stored_for_every_decision(world, spec):
    platform, first, second = world
    lake = platform.defs.resources["lakehouse"]
    node = "__".join(UseCaseKeys(spec.name).promotion_decision.path)
    for result, verdict in ((first, "PROMOTED"), (second, "REFUSED")):
        meta = result.asset_materializations_for_node(node)[0].metadata
        card = lake.read_bytes(meta["model_card_uri"].value, meta["model_card_sha256"].value).decode()
        for section in ("Intended use", "Provenance", "Evaluation", "Per slice", "Promotion decision",
                        "Known limitations"):
            assert section in card, section
        assert f"Promotion decision: {verdict}" in card
    meta = second.asset_materializations_for_node(node)[0].metadata
    assert "Shadow scoring" in meta["model_card"].value
