import json

import yaml

from ml_assets.features.compute import feature_columns
from ml_assets.spec import UseCaseSpec


def test_spec_round_trips_through_yaml(spec):
    text = yaml.safe_dump(json.loads(json.dumps(spec.to_dict())))
    assert UseCaseSpec.from_dict(yaml.safe_load(text)) == spec


def test_unknown_spec_fields_are_rejected(spec):
    data = spec.to_dict()
    data["model"]["learning_rat"] = 0.1
    try:
        UseCaseSpec.from_dict(data)
    except ValueError as exc:
        assert "learning_rat" in str(exc)
    else:
        raise AssertionError("a misspelt field must not be ignored")


def test_every_model_input_is_produced_by_the_feature_function(spec):
    produced = set(feature_columns(spec))
    assert set(spec.features.model_inputs) <= produced


def test_label_history_offsets_respect_the_label_delay(spec):
    start, end = spec.label_history_offsets
    assert end == -spec.label.delay_days
    assert end - start + 1 == spec.features.max_window_days


def test_fingerprint_is_stable_and_sensitive(spec):
    import dataclasses

    assert spec.fingerprint() == spec.fingerprint()
    changed = dataclasses.replace(spec, model=dataclasses.replace(spec.model, epochs=spec.model.epochs + 1))
    assert changed.fingerprint("model") != spec.fingerprint("model")
    assert changed.fingerprint("features") == spec.fingerprint("features")
