"""`mlp explain`: why a prediction is what it is, and why it changed.

Attributions are Integrated Gradients of the probability along a straight path from a reference
input (every numeric feature at its training mean, every categorical at the out-of-vocabulary slot)
to the event's input, in the network's own input space (standardized numerics and embedding
vectors). They add up to p(event) - p(reference); the remainder is reported as the convergence delta.

A change between two predictions (two versions, or the same entity on two partitions) is split
exactly into "model changed" and "data changed" by scoring each model on each input (the Shapley
split of two factors), and the data part is attributed to features by Integrated Gradients from the
old input to the new one, averaged over both models.

Every input is the recorded one: the feature partition the prediction's run read (verified), and
weights verified against the sha256 the scoring recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ml_assets.audit.ledger import Ledger, Materialization
from ml_assets.audit.trace import find_prediction, split_id
from ml_assets.errors import MissingDataError
from ml_assets.features import compute
from ml_assets.features.compute import EVENT_ID, PARTITION
from ml_assets.records import Record

IG_STEPS = 64


class Attribution(Record):
    feature: str
    value: Any = None
    other_value: Any = None
    contribution: float


class Scoring(Record):
    prediction_id: str
    event_id: str
    partition: str
    model_version: str
    recorded_probability: float | None
    probability: float


class Explanation(Record):
    prediction: Scoring
    reference_probability: float
    attributions: list[Attribution]
    convergence_delta: float


class ChangeExplanation(Record):
    before: Scoring
    after: Scoring
    cross: dict[str, float]  # "<model>@<data>" -> probability, for the two models on the two inputs
    model_effect: float
    data_effect: float
    data_attributions: list[Attribution]
    model_attributions: list[Attribution] = []  # same input: new model's IG minus old model's, per feature
    convergence_delta: float
    source: str  # where the cross scores came from (a stored shadow file, or scored now)


@dataclass(frozen=True)
class Subject:
    """A recorded prediction with the exact inputs that produced it."""

    materialization: Materialization
    row: dict[str, Any]
    features: Any  # one-row polars frame, from the verified feature partition the run read
    model: Any

    @property
    def version(self) -> str:
        return str(self.row["model_version"])


# ---- loading the recorded inputs ---------------------------------------------------------------------
def subject(ledger: Ledger, identifier: str) -> Subject:
    m, row = find_prediction(ledger, identifier)
    return Subject(m, row, scored_features(ledger, m, str(row[EVENT_ID])),
                   model_of(ledger, str(row["model_version"]), m.metadata.get("weights_sha256")))


def scored_features(ledger: Ledger, predictions: Materialization, event_id: str):
    """The event's feature row from the very feature materialization the scoring run read."""
    import polars as pl

    features = ledger.keys.features.to_user_string()
    receipts = (predictions.metadata.get("input_receipts") or {}).get(features, {})
    for partition, storage_id in receipts.items():
        m = ledger.by_storage_id(ledger.keys.features, storage_id)
        if m is None:
            raise MissingDataError(f"{features} partition {partition}: materialization {storage_id} is not recorded")
        frame = ledger.lakehouse.read_parquet(str(m.metadata["uri"]), str(m.metadata["sha256"]),
                                              what=f"asset {features}, partition {partition}")
        row = frame.filter(pl.col(EVENT_ID) == event_id)
        if row.height:
            return row
    raise MissingDataError(f"event {event_id!r} is in no feature partition its prediction run read")


def model_of(ledger: Ledger, version: str, approved_sha256: Any = None):
    """The version's weights as its training run registered them (and, when given, the sha256 a scoring
    recorded for them)."""
    from ml_assets.errors import IntegrityError
    from ml_assets.training.train import from_safetensors

    trained = ledger.recorded_version(version).metadata["weights_sha256"]
    if approved_sha256 is not None and approved_sha256 != trained:
        raise IntegrityError(f"model {version}: the scoring recorded weights {approved_sha256}, its training run "
                             f"registered {trained}")
    return from_safetensors(ledger.weights(version))


def scoring(s: Subject) -> Scoring:
    recorded = s.row.get("probability")
    return Scoring(prediction_id=str(s.row["prediction_id"]), event_id=str(s.row[EVENT_ID]),
                   partition=str(s.row[PARTITION]), model_version=s.version,
                   recorded_probability=None if recorded is None else float(recorded),
                   probability=float(s.model.score(s.features)[0]))


# ---- the network's input space ------------------------------------------------------------------------
def _inputs(model: Any, frame) -> tuple[Any, Any]:
    """(numeric [1, d], embedded [1, k, e]) of one row: the network's input space."""
    numeric, categorical = model.preprocessor.encode(frame)
    net = model.net
    return numeric, net.embedding(categorical + net.offsets).detach()


def _reference(model: Any, numeric, embedded) -> tuple[Any, Any]:
    import torch

    net = model.net
    oov = net.embedding(net.offsets).detach()  # each categorical's slot 0: unseen/rare/null
    return torch.zeros_like(numeric), oov.unsqueeze(0).expand_as(embedded)


def _prob(model: Any, numeric, embedded):
    import torch

    return torch.sigmoid(model.net.mlp(torch.cat([numeric, embedded.flatten(1)], dim=1)).squeeze(1))


def integrated_gradients(model: Any, start: tuple, end: tuple, steps: int = IG_STEPS) -> tuple[list[float], float]:
    """Per-feature IG of the probability from `start` to `end` (trapezoid rule), and its convergence
    delta (sum of attributions minus the actual change)."""
    import torch

    (n0, e0), (n1, e1) = start, end
    alphas = torch.linspace(0, 1, steps + 1).view(-1, 1)
    numeric = (n0 + alphas * (n1 - n0)).requires_grad_(True)
    embedded = (e0 + alphas.view(-1, 1, 1) * (e1 - e0)).requires_grad_(True)
    with torch.enable_grad():
        prob = _prob(model, numeric, embedded)
        g_num, g_emb = torch.autograd.grad(prob.sum(), [numeric, embedded])
    weights = torch.full((steps + 1, 1), 1.0 / steps)
    weights[0] = weights[-1] = 0.5 / steps
    attr_num = ((g_num * weights).sum(0) * (n1 - n0)[0])
    attr_emb = ((g_emb * weights.view(-1, 1, 1)).sum(0) * (e1 - e0)[0]).sum(-1)
    contributions = [float(v) for v in torch.cat([attr_num, attr_emb])]
    with torch.no_grad():
        change = float(_prob(model, n1, e1)[0] - _prob(model, n0, e0)[0])
    return contributions, sum(contributions) - change


def _features_of(model: Any) -> list[str]:
    pre = model.preprocessor
    return [*pre.numeric, *pre.categorical]


def _value(frame, column: str) -> Any:
    value = frame.get_column(column)[0] if column in frame.columns else None
    return round(value, 4) if isinstance(value, float) else value


# ---- the two questions ----------------------------------------------------------------------------------
def explain(ledger: Ledger, identifier: str) -> Explanation:
    import torch

    s = subject(ledger, identifier)
    x = _inputs(s.model, s.features)
    ref = _reference(s.model, *x)
    contributions, delta = integrated_gradients(s.model, ref, x)
    with torch.no_grad():
        p_ref = float(_prob(s.model, *ref)[0])
    attributions = [Attribution(feature=f, value=_value(s.features, f), contribution=c)
                    for f, c in zip(_features_of(s.model), contributions, strict=True)]
    return Explanation(prediction=scoring(s), reference_probability=p_ref, convergence_delta=delta,
                       attributions=sorted(attributions, key=lambda a: -abs(a.contribution)))


def explain_change(ledger: Ledger, before: Subject, after: Subject, source: str = "scored now") -> ChangeExplanation:
    """Decompose p_after - p_before into model and data effects; attribute the data effect to features."""
    import torch

    a, b = before.model, after.model
    xa = {name: _inputs(m, before.features) for name, m in (("before", a), ("after", b))}
    xb = {name: _inputs(m, after.features) for name, m in (("before", a), ("after", b))}
    with torch.no_grad():
        p = {"before@before": float(_prob(a, *xa["before"])[0]), "before@after": float(_prob(a, *xb["before"])[0]),
             "after@before": float(_prob(b, *xa["after"])[0]), "after@after": float(_prob(b, *xb["after"])[0])}
    model_effect = ((p["after@before"] - p["before@before"]) + (p["after@after"] - p["before@after"])) / 2
    data_effect = ((p["before@after"] - p["before@before"]) + (p["after@after"] - p["after@before"])) / 2
    per_model = [integrated_gradients(m, xa[name], xb[name]) for name, m in (("before", a), ("after", b))]
    names = _features_of(a)
    if _features_of(b) != names:
        raise MissingDataError(f"versions {before.version} and {after.version} use different features; only the "
                               "model/data split is defined")
    contributions = [(ca + cb) / 2 for ca, cb in zip(per_model[0][0], per_model[1][0], strict=True)]
    attributions = [Attribution(feature=f, value=_value(before.features, f), other_value=_value(after.features, f),
                                contribution=c) for f, c in zip(names, contributions, strict=True)]
    model_attributions = []
    if before.features is after.features:  # same event, two versions: which features each model weighs differently
        ig_a = integrated_gradients(a, _reference(a, *xa["before"]), xa["before"])[0]
        ig_b = integrated_gradients(b, _reference(b, *xa["after"]), xa["after"])[0]
        model_attributions = sorted(
            (Attribution(feature=f, value=_value(before.features, f), contribution=cb - ca)
             for f, ca, cb in zip(names, ig_a, ig_b, strict=True)), key=lambda x: -abs(x.contribution))
    return ChangeExplanation(
        before=scoring(before), after=scoring(after), cross=p, model_effect=model_effect, data_effect=data_effect,
        data_attributions=sorted(attributions, key=lambda x: -abs(x.contribution)),
        model_attributions=model_attributions,
        convergence_delta=(per_model[0][1] + per_model[1][1]) / 2, source=source)


def against_version(ledger: Ledger, identifier: str, version: str) -> ChangeExplanation:
    """Same event, another registered version (its weights verified against its record)."""
    before = subject(ledger, identifier)
    other = model_of(ledger, version)
    after = Subject(before.materialization, {**before.row, "model_version": version,
                                             "prediction_id": f"{version}/{before.row[EVENT_ID]}",
                                             "probability": shadow_probability(ledger, version, before)},
                    before.features, other)
    stored = after.row["probability"]
    return explain_change(ledger, before, after, "scored now (no stored shadow score)" if stored is None
                          else f"stored shadow score {stored:.4f}, recomputed from the recorded features")


def shadow_probability(ledger: Ledger, version: str, s: Subject) -> float | None:
    """The challenger's stored per-event shadow score for this event, if its evaluation recorded one."""
    import polars as pl

    for m in reversed(ledger.for_version(ledger.keys.model_evaluation, version)):
        doc = _ref(ledger, m)
        shadow = (doc.get("shadow") or {}).get("file")
        if not shadow:
            continue
        frame = ledger.lakehouse.read_parquet(shadow["uri"], shadow["sha256"], what=f"shadow scores of {version}")
        hit = frame.filter(pl.col(EVENT_ID) == s.row[EVENT_ID])
        if hit.height:
            return float(hit.get_column("challenger_probability")[0])
    return None


def _ref(ledger: Ledger, m: Materialization) -> dict[str, Any]:
    import json

    return json.loads(ledger.lakehouse.read_bytes(str(m.metadata["ref_uri"]), str(m.metadata["ref_sha256"]),
                                                  what=f"asset {m.key.to_user_string()}"))


def same_entity_on(ledger: Ledger, spec: Any, identifier: str, day: str) -> str:
    """The event id of the same entity (spec.entity_columns) in `day`'s newest predictions."""
    import polars as pl

    if not spec.entity_columns:
        raise MissingDataError(f"use case {spec.name!r} declares no entity_columns: `--day` cannot find the same "
                               "entity on another partition; use --vs PREDICTION_ID")
    def entity(event_id: str) -> tuple[str, ...]:
        parts = compute.event_id_parts(spec, event_id)
        return tuple(parts[c] for c in spec.entity_columns)

    wanted = entity(split_id(identifier)[1])
    target = spec.partition_range(day, day)[0].isoformat()
    found = [m for m in ledger.all(ledger.keys.predictions) if m.partition == target]
    if not found:
        raise MissingDataError(f"partition {target} has no recorded predictions")
    m = found[-1]
    frame = ledger.lakehouse.read_parquet(str(m.metadata["uri"]), str(m.metadata["sha256"]), what="predictions")
    ids = frame.get_column(EVENT_ID).to_list()
    matches = [i for i in ids if entity(i) == wanted]
    if not matches:
        raise MissingDataError(f"no event with {dict(zip(spec.entity_columns, wanted, strict=True))} was scored on "
                               f"{target}")
    return str(frame.filter(pl.col(EVENT_ID) == sorted(matches)[0]).get_column("prediction_id")[0])


# ---- rendering -------------------------------------------------------------------------------------------
def _table(attributions: list[Attribution], n: int, two: bool) -> list[str]:
    lines = []
    for a in attributions[:n]:
        values = f"{a.value!s:>10} -> {a.other_value!s:<10}" if two else f"{a.value!s:>12}"
        lines.append(f"  {a.feature:<28} {values}  {a.contribution:+.4f}")
    return lines


def render_explanation(e: Explanation, n: int = 10) -> str:
    p = e.prediction
    lines = [f"prediction {p.prediction_id}  partition {p.partition}",
             f"  recorded p = {p.recorded_probability:.4f}; recomputed from the recorded features and verified "
             f"weights p = {p.probability:.4f}",
             f"  reference p = {e.reference_probability:.4f} (numerics at training mean, categoricals unseen)",
             f"  top features (Integrated Gradients, {IG_STEPS} steps; sum = p - reference, delta "
             f"{e.convergence_delta:+.1e}):"]
    return "\n".join(lines + _table(e.attributions, n, two=False))


def render_change(c: ChangeExplanation, n: int = 8) -> str:
    b, a = c.before, c.after
    total = a.probability - b.probability
    lines = [f"before {b.prediction_id} ({b.partition}): p = {b.probability:.4f}",
             f"after  {a.prediction_id} ({a.partition}): p = {a.probability:.4f}   change {total:+.4f}",
             f"  old model on new data {c.cross['before@after']:.4f}; new model on old data "
             f"{c.cross['after@before']:.4f} ({c.source})",
             f"  model changed: {c.model_effect:+.4f}   data changed: {c.data_effect:+.4f}   (sum {total:+.4f})",
             ]
    if c.model_attributions:
        lines.append("  features the two models weigh differently (IG of the new model minus the old, same input):")
        return "\n".join(lines + _table(c.model_attributions, n, two=False))
    lines.append(f"  features that moved it most (data part; IG old -> new input, mean of both models, delta "
                 f"{c.convergence_delta:+.1e}):")
    return "\n".join(lines + _table(c.data_attributions, n, two=True))
