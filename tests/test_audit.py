"""Audit evidence against the real materialized graph: traces verify every hash against the bytes on
disk, and a changed byte anywhere on the path is reported at its hop."""

from __future__ import annotations

import getpass
import hashlib
import json
import random
from pathlib import Path

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
        change = next(h for h in t.hops if h.kind == "change")
        assert change.ids["actor"] == getpass.getuser()  # a person's run records the person, not "unknown"
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


@pytest.mark.parametrize("hop_kind", ["input", "trained_on", "evaluation", "pointer", "record"])
def test_a_flipped_byte_on_the_path_is_reported_at_its_hop(materialized, spec, hop_kind, tmp_path):
    ledger = ledger_of(materialized, spec)
    prediction_id = some_predictions(ledger, 1, seed=7)[0]
    target = next(h for h in trace(ledger, prediction_id).hops if h.kind == hop_kind and h.uri)
    with open(target.uri, "rb") as handle:
        original = handle.read()
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


# ---- a world with history: a promotion, a refusal, a pin, and two versions' predictions --------------------
@pytest.fixture(scope="module")
def history(tmp_path_factory, spec):
    import dagster as dg

    from tests.conftest import make_platform

    with dg.instance_for_test() as instance:
        platform = make_platform(tmp_path_factory.mktemp("audit_lake"), instance)
        assert platform.ingest(spec, "2013-01-01", "2013-02-10").success
        assert platform.train(spec, train_start="2013-01-01", train_end="2013-01-31",
                              eval_start="2013-02-01", eval_end="2013-02-07").success
        assert platform.score(spec, "2013-02-01", "2013-02-07").success
        second = platform.train(spec, train_start="2013-01-05", train_end="2013-02-04",
                                eval_start="2013-02-08", eval_end="2013-02-08")
        assert second.success
        ledger = Ledger(instance, platform.defs.resources["lakehouse"], platform.defs.resources["model_registry"],
                        spec.name)
        first_version, second_version = [r.version for r in ledger.registry.versions(spec.name)]
        assert platform.rollback(spec, second_version, "audit test: pin the newer model", "auditor").success
        # The whole daily loop (score, drift, realized performance) on three days served by the pinned version.
        assert platform.daily(spec, "2013-02-08", "2013-02-10").success
        yield ledger, first_version, second_version


def test_explain_attributions_add_up_and_the_recorded_score_is_recomputed(history):
    from ml_assets.audit.explain import explain

    ledger, first, _ = history
    prediction_id = next(i for i in some_predictions(ledger, 50, seed=1) if i.startswith(first))
    e = explain(ledger, prediction_id)
    assert e.prediction.probability == pytest.approx(e.prediction.recorded_probability, abs=1e-6)
    total = sum(a.contribution for a in e.attributions)
    assert total == pytest.approx(e.prediction.probability - e.reference_probability, abs=2e-3)
    assert abs(e.convergence_delta) < 2e-3
    assert {a.feature for a in e.attributions} == set(ledger.registry.get(ledger.use_case, first).features["numeric"]
                                                      + ledger.registry.get(ledger.use_case, first).features[
                                                          "categorical"])


def test_a_change_between_days_and_versions_splits_exactly_into_model_and_data(history, spec):
    from ml_assets.audit.explain import explain_change, same_entity_on, subject
    from ml_assets.errors import MissingDataError

    ledger, first, second = history
    # The same scheduled flight scored on 2013-02-05 by the first version and on 2013-02-08 by the second.
    before_ids = [i for i in some_predictions(ledger, 400, seed=2) if i.startswith(first) and "|2|5|" in i]
    for before_id in before_ids:
        try:
            after_id = same_entity_on(ledger, spec, before_id, "2013-02-08")
            break
        except MissingDataError:  # not every flight flies every day
            continue
    assert after_id.startswith(second)
    carrier, flight, origin = before_id.split("|")[3:6]
    assert after_id.split("|")[3:6] == [carrier, flight, origin]
    c = explain_change(ledger, subject(ledger, before_id), subject(ledger, after_id))
    change = c.after.probability - c.before.probability
    assert c.model_effect + c.data_effect == pytest.approx(change, abs=1e-9)
    assert c.cross["before@before"] == pytest.approx(c.before.recorded_probability, abs=1e-6)
    assert c.cross["after@after"] == pytest.approx(c.after.recorded_probability, abs=1e-6)
    assert sum(a.contribution for a in c.data_attributions) == pytest.approx(c.data_effect, abs=3e-3)


def test_same_event_two_versions_is_a_lookup_of_the_stored_shadow_score(history):
    from ml_assets.audit.explain import against_version

    ledger, first, second = history
    prediction_id = next(i for i in some_predictions(ledger, 50, seed=4) if i.startswith(first))
    c = against_version(ledger, prediction_id, second)
    assert c.source.startswith("stored shadow score")
    assert c.after.recorded_probability == pytest.approx(c.after.probability, abs=1e-6)
    assert c.data_effect == 0 and c.model_effect == pytest.approx(c.after.probability - c.before.probability)
    assert c.model_attributions


def test_a_pinned_version_traces_to_the_pin_and_to_its_own_refused_decision(history):
    ledger, _, second = history
    prediction_id = next(i for i in some_predictions(ledger, 200, seed=6) if i.startswith(second))
    t = trace(ledger, prediction_id)
    assert t.verified, render(t)
    change = next(h for h in t.hops if h.kind == "change")
    assert change.title == "production change (rollback)" and change.ids["actor"] == "auditor"
    assert "audit test: pin the newer model" in change.detail
    decision = next(h for h in t.hops if h.kind == "decision")
    assert decision.title == "gate decision (refuse)" and "FAIL" in decision.detail


def test_versions_status_and_show_tell_the_recorded_history(history, spec):
    from ml_assets.audit.views import show, status, version_statuses

    ledger, first, second = history
    rows, problems = version_statuses(ledger)
    assert not problems
    assert {r.version: r.status for r in rows} == {first: "promoted", second: "serving"}
    assert all(r.artifact_verifies and r.record_verifies for r in rows)
    s = status(ledger, spec)
    assert s["serving"]["version"] == second and s["serving"]["action"] == "rollback"
    assert s["serving"]["actor"] == "auditor" and s["latest_scored_partition"] == "2013-02-10"
    assert s["serving"]["age_partitions"] == len(spec.partition_range("2013-02-04", "2013-02-10")) - 1
    assert s["last_decision"]["version"] == second and s["last_decision"]["outcome"] == "refuse"
    realized = {m.partition: m.metadata["auroc"] for m in ledger.all(ledger.keys.realized_performance)
                if m.metadata.get("model_version") == second}
    assert sorted(realized) == ["2013-02-08", "2013-02-09", "2013-02-10"]
    assert s["health"]["realized_auroc"] == pytest.approx(sum(realized.values()) / 3)
    assert s["health"]["window"] == "2013-02-08..2013-02-10"
    narrow = spec.model_copy(update={"monitoring": spec.monitoring.model_copy(update={"health_window": 2})})
    h = status(ledger, narrow)["health"]  # the use case's window, not a number in code
    assert h["partitions"] == 2 and h["window"] == "2013-02-09..2013-02-10"
    assert h["realized_auroc"] == pytest.approx((realized["2013-02-09"] + realized["2013-02-10"]) / 2)
    drift = ledger.latest(ledger.keys.drift_report)
    assert s["drift"]["partition"] == drift.partition == "2013-02-10"
    assert s["drift"]["drifted_share"] == drift.metadata["drifted_share"]
    shown = show(ledger, second)
    assert shown["decision"]["outcome"] == "refuse" and shown["decision"]["model_card_verifies"]
    assert second in shown["model_card"]
    assert [p["action"] for p in shown["pointer_history"]] == ["rollback"]
    assert shown["lineage"]["training_set"]["window"] == "2013-01-05..2013-02-04"


def test_versions_flags_a_record_whose_artifact_no_longer_verifies(history, spec):
    from ml_assets.audit.views import render_versions, version_statuses

    ledger, first, _ = history
    artifact = ledger.registry.get(spec.name, first).artifact_uri
    with open(artifact, "rb") as handle:
        original = handle.read()
    try:
        with open(artifact, "wb") as handle:
            handle.write(original[:-1] + bytes([original[-1] ^ 1]))
        rows, _ = version_statuses(ledger)
        bad = {r.version: r for r in rows}[first]
        assert not bad.artifact_verifies and "ARTIFACT DOES NOT VERIFY" in render_versions(rows, {})
    finally:
        with open(artifact, "wb") as handle:
            handle.write(original)
    record_uri = ledger.registry.record_uri(spec.name, first)
    with open(record_uri, "rb") as handle:
        original = handle.read()
    try:  # an edited record (same weights) is flagged against the sha256 its training run recorded
        with open(record_uri, "wb") as handle:
            handle.write(original.replace(b'"best_epoch": ', b'"best_epoch":  ', 1))
        rows, _ = version_statuses(ledger)
        bad = {r.version: r for r in rows}[first]
        assert bad.record_verifies is False and "RECORD EDITED" in render_versions(rows, {})
    finally:
        with open(record_uri, "wb") as handle:
            handle.write(original)


def test_mlp_versions_status_show_explain_as_a_user_runs_them(materialized, spec):
    ledger = ledger_of(materialized, spec)
    version = ledger.registry.versions(spec.name)[0].version
    versions = mlp(materialized, "versions")
    assert versions.returncode == 0 and f"* {version}  serving" in versions.stdout, versions.stderr
    status = mlp(materialized, "status")
    assert status.returncode == 0 and f"serving: {version}" in status.stdout and "health:" in status.stdout
    shown = mlp(materialized, "show", version)
    assert shown.returncode == 0 and "decision (promote" in shown.stdout and "# Model card" in shown.stdout
    explained = mlp(materialized, "explain", some_predictions(ledger, 1, seed=9)[0])
    assert explained.returncode == 0 and "Integrated Gradients" in explained.stdout, explained.stderr
    bundle = materialized.root.parent / "bundle-cli"
    written = mlp(materialized, "audit-bundle", version, "--out", str(bundle))
    assert written.returncode == 0, written.stderr
    assert mlp(materialized, "audit-bundle", "--verify", str(bundle)).returncode == 0
    card = bundle / "model_card.md"
    card.write_text(card.read_text().replace("Model card", "Model cord", 1))
    tampered = mlp(materialized, "audit-bundle", "--verify", str(bundle))
    assert tampered.returncode == 2 and "model_card.md" in tampered.stderr and "does NOT verify" in tampered.stderr
    refused = mlp(materialized, "show", "../../evil")
    assert refused.returncode == 2 and "is not a model version id" in refused.stderr


def test_the_audit_bundle_verifies_and_any_changed_byte_fails_it(history, tmp_path):
    from ml_assets.audit.bundle import MANIFEST, verify_bundle, write_bundle

    ledger, first, second = history
    for version in (first, second):
        out = write_bundle(ledger, version, tmp_path / version)
        names = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
        assert {"model_card.md", "decision.json", "evaluation/report.md", "evaluation/roc_reliability.png",
                "training_set_manifest.json", "pointer_history.json", "runs.json", "code_versions.json",
                "version_record.json", "model.safetensors", "monitoring.json", MANIFEST} <= set(names)
        assert verify_bundle(out) == []
        manifest = json.loads((out / "training_set_manifest.json").read_text())
        assert all(r["verified_at_bundling"] for parts in manifest["inputs"].values() for r in parts.values())
    monitoring = json.loads((tmp_path / second / "monitoring.json").read_text())
    assert [r["partition"] for r in monitoring["realized_performance"]] == ["2013-02-08", "2013-02-09", "2013-02-10"]
    assert {d["partition"] for d in monitoring["drift"]} == {"2013-02-08", "2013-02-09", "2013-02-10"}
    scored = json.loads((tmp_path / second / "predictions.json").read_text())
    assert [p["partition"] for p in scored] == ["2013-02-08", "2013-02-09", "2013-02-10"]
    assert all(disk_sha256(p["uri"]) == p["sha256"] for p in scored)
    pointers = json.loads((tmp_path / second / "pointer_history.json").read_text())
    assert [p["action"] for p in pointers] == ["rollback"] and pointers[0]["actor"] == "auditor"
    # One byte, anywhere: every file once (manifest included), then random positions.
    out = tmp_path / first
    rng = random.Random(11)
    targets = [(p, None) for p in sorted(out.rglob("*")) if p.is_file()]
    targets += [(rng.choice(targets)[0], rng.random()) for _ in range(20)]
    for path, where in targets:
        original = path.read_bytes()
        at = int((where if where is not None else 0.5) * (len(original) - 1))
        changed = bytearray(original)
        changed[at] = (changed[at] + 1) % 256
        path.write_bytes(bytes(changed))
        try:
            assert verify_bundle(out), f"a changed byte at {at} of {path.name} went unnoticed"
        finally:
            path.write_bytes(original)
    assert verify_bundle(out) == []
    (out / "extra.txt").write_text("slipped in")
    assert any("not listed" in p for p in verify_bundle(out))


# ---- OpenLineage export ------------------------------------------------------------------------------------
SCHEMAS = Path(__file__).parent / "schemas" / "openlineage"


def _validator(name: str):
    from jsonschema import Draft202012Validator, FormatChecker
    from referencing import Registry, Resource

    docs = [json.loads(p.read_text()) for p in [*SCHEMAS.glob("*.json"), *Path(__file__).parents[1].joinpath(
        "docs", "openlineage").glob("*.json")]]
    registry = Registry().with_resources((d["$id"], Resource.from_contents(d)) for d in docs)
    schema = next(d for d in docs if d["$id"].endswith("/" + name))
    return Draft202012Validator(schema, registry=registry, format_checker=FormatChecker())


def test_lineage_export_is_valid_openlineage_with_verifiable_partitions(history, tmp_path):
    from ml_assets.audit.openlineage import PARTITIONS_FACET, export

    ledger, _, _ = history
    path = tmp_path / "lineage.jsonl"
    count = export(ledger, path)
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert count == len(events) and count >= 10
    core = _validator("OpenLineage.json")
    facet_schemas = {"version": _validator("DatasetVersionDatasetFacet.json"),
                     PARTITIONS_FACET: _validator("PartitionsDatasetFacet.json"),
                     "tags": _validator("TagsRunFacet.json"), "errorMessage": _validator("ErrorMessageRunFacet.json"),
                     "jobType": _validator("JobTypeJobFacet.json")}
    for event in events:
        core.validate(event)
        for facets in ([event["run"].get("facets", {}), event["job"].get("facets", {})]
                       + [d.get("facets", {}) for d in event.get("inputs", []) + event.get("outputs", [])]):
            for name, facet in facets.items():
                facet_schemas[name].validate({name: facet})
    assert {e["eventType"] for e in events} == {"START", "COMPLETE"}
    # Every run has one START and one terminal event; the training run reads features and labels partitions.
    runs = {e["run"]["runId"] for e in events}
    assert len(events) == 2 * len(runs)
    train = next(e for e in events if e["eventType"] == "COMPLETE" and any(
        o["name"].endswith("/candidate_model") for o in e["outputs"]))
    read = {i["name"].rsplit("/", 1)[-1]: i["facets"][PARTITIONS_FACET]["partitions"] for i in train["inputs"]}
    assert {"features", "labels"} <= set(read) and len(read["features"]) >= 28
    # What a consumer gets is checkable: each cited file hashes to the sha256 in the event.
    for entry in read["features"][:5]:
        assert disk_sha256(entry["uri"]) == entry["sha256"]
    # A malformed event is caught by the same validation (the test can fail).
    broken = {**events[0], "eventTime": "yesterday-ish"}
    broken_run = {**broken, "run": {"runId": "not-a-uuid"}}
    assert list(core.iter_errors(broken_run))


def test_run_links_and_the_card_plot_are_the_records_they_name(materialized, spec):
    import base64
    import re

    ledger = ledger_of(materialized, spec)
    keys = ledger.keys
    change = ledger.latest(keys.production_model)
    candidate = ledger.latest(keys.candidate_model)
    for scored in ledger.all(keys.predictions):  # the run that put the scoring model in production
        assert scored.metadata["model_put_in_production_by_run"] == change.run_id
    decision = ledger.latest(keys.promotion_decision)
    assert decision.metadata["trained_by_run"] == candidate.run_id
    assert change.metadata["trained_by_run"] == candidate.run_id
    assert change.metadata["decided_by"] == keys.promotion_decision
    # The card embeds exactly the plot the evaluation recorded.
    with open(str(decision.metadata["model_card_uri"]), "rb") as handle:
        card = handle.read().decode()
    embedded = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)\)", card).group(1)
    plot_sha = ledger.latest(keys.model_evaluation).metadata["plot_sha256"]
    assert hashlib.sha256(base64.b64decode(embedded)).hexdigest() == plot_sha


def test_every_float_the_ui_shows_is_rounded(history):
    """A record is read by people: every float in materialization, observation and check metadata is
    shown as `text.readable` would show it (full precision stays in the JSON files)."""
    import dagster as dg

    from ml_assets.text import readable

    ledger, _, _ = history
    instance, unrounded = ledger.instance, []
    for key in instance.get_asset_keys():
        for kind in (dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_OBSERVATION,
                     dg.DagsterEventType.ASSET_CHECK_EVALUATION):
            records = instance.get_event_records(dg.EventRecordsFilter(event_type=kind, asset_key=key), limit=5000)
            for record in records:
                data = record.event_log_entry.dagster_event.event_specific_data
                event = getattr(data, "materialization", None) or getattr(data, "asset_observation", None) or data
                for name, value in (getattr(event, "metadata", None) or {}).items():
                    if isinstance(value, dg.FloatMetadataValue) and value.value is not None \
                            and value.value != readable(value.value):
                        unrounded.append(f"{key.to_user_string()}: {name}={value.value}")
    assert not unrounded, "\n".join(sorted({u.split("=")[0] for u in unrounded}))


def test_drift_reads_the_serving_records_calibration_verified(history, spec):
    """The drift report's thresholds come from the calibration its verified record names: a changed
    byte in the calibration file fails the read with the sha256 named, instead of moving thresholds."""
    from ml_assets.errors import IntegrityError
    from ml_assets.monitoring.assets import drift_calibration, served_records

    ledger, _, second = history
    record = served_records(ledger, ledger.lakehouse, ledger.registry, spec)(second)
    assert record.drift_calibration is not None
    assert drift_calibration(second, record, ledger.registry) is not None
    path = Path(record.drift_calibration.uri)
    original = path.read_bytes()
    try:
        path.write_bytes(original.replace(b"0", b"1", 1))
        with pytest.raises(IntegrityError, match=record.drift_calibration.sha256[:12]):
            drift_calibration(second, record, ledger.registry)
    finally:
        path.write_bytes(original)
