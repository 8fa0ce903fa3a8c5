"""Training is deterministic and the artifact is plain safetensors (no pickle)."""

from datetime import date, timedelta

import polars as pl
import pytest

from ml_assets.features.compute import EVENT_ID, LABEL, PARTITION, compute_features, compute_labels
from ml_assets.training import train
from resources.lakehouse import sha256_bytes
from tests import real_data


@pytest.fixture(scope="module")
def frames(spec):
    days = [date(2013, 5, 1) + timedelta(days=i) for i in range(14)]
    events = real_data.rows(spec, "flights", days)
    lookups = {"weather": real_data.rows(spec, "weather", days),
               "planes": real_data.rows(spec, "planes")}
    labels = compute_labels(spec, events)
    data = compute_features(spec, events, lookups, labels).join(labels.select(EVENT_ID, LABEL), on=EVENT_ID)
    cut = days[10]
    return data.filter(pl.col(PARTITION) < cut), data.filter(pl.col(PARTITION) >= cut)


def _train(spec, frames):
    fs = spec.features
    return train.train_model(*frames, LABEL, fs.numeric, fs.categorical, spec.model)


def test_same_data_and_code_give_the_same_weights_hash(spec, frames):
    a = train.to_safetensors(_train(spec, frames), {"k": 1})
    b = train.to_safetensors(_train(spec, frames), {"k": 1})
    assert sha256_bytes(a) == sha256_bytes(b)


def test_artifact_is_standard_safetensors_and_round_trips(spec, frames):
    from safetensors.torch import load

    model = _train(spec, frames)
    data = train.to_safetensors(model, {})
    tensors = load(data)  # the reference loader accepts our canonical bytes
    assert set(tensors) == set(model.state_dict)
    loaded = train.from_safetensors(data)
    valid = frames[1]
    assert loaded.threshold == model.threshold
    probs = loaded.score(valid)
    assert probs.shape[0] == valid.height and float(probs.min()) >= 0 and float(probs.max()) <= 1
    assert b"pickle" not in data[:4096] and not data.startswith(b"PK")  # not a zip/pickle checkpoint


def test_training_curve_is_recorded(spec, frames):
    model = _train(spec, frames)
    assert 1 <= model.best_epoch <= len(model.curve)
    assert {"train_loss", "valid_loss", "valid_auroc"} <= set(model.curve[0])


def test_encoding_gives_every_category_its_vocabulary_code_and_scales_numbers_in_float64(spec, frames):
    """The encoder against its definition, row by row in plain Python, on real rows plus the hard cases:
    unseen and null categories (0), null, NaN and infinite numbers (0, 0, inf after scaling)."""
    import math

    import numpy as np

    from ml_assets.training.preprocess import Preprocessor

    fs = spec.features
    fit, rows = frames
    pre = Preprocessor.fit(fit, tuple(fs.numeric), tuple(fs.categorical), spec.model.min_category_count)
    odd = rows.head(4).with_columns(
        pl.Series(fs.categorical[0], ["never-seen", None, rows[fs.categorical[0]][2], ""]),
        pl.Series(fs.numeric[0], [None, float("nan"), float("inf"), -1e300], dtype=pl.Float64))
    frame = pl.concat([rows, odd], how="vertical_relaxed")
    numeric, categorical = pre.encode(frame)
    assert numeric.dtype.is_floating_point and numeric.element_size() == 4 and numeric.is_contiguous()
    for r, row in enumerate(frame.iter_rows(named=True)):
        for j, (c, m, s) in enumerate(zip(pre.numeric, pre.means, pre.stds, strict=True)):
            x = row[c]
            want = 0.0 if x is None or (isinstance(x, float) and math.isnan(x)) else (float(x) - m) / s
            with np.errstate(over="ignore"):  # scaled in float64, stored as float32 (-1e300 -> -inf)
                want = float(np.float32(want))
            got = float(numeric[r, j])
            assert got == want or got == pytest.approx(want, rel=1e-6), (r, c, x, got)
        for j, c in enumerate(pre.categorical):
            value, vocab = row[c], pre.vocabularies[c]
            want = vocab.index(str(value)) + 1 if value is not None and str(value) in vocab else 0
            assert int(categorical[r, j]) == want, (r, c, value)
    assert pre.encode(frame)[1].tolist() == categorical.tolist()  # the cached expressions give the same codes


def test_batched_scoring_gives_each_row_its_own_forward(spec, frames):
    """Scoring in batches (any size, a ragged last one) gives every row, in order, what one forward over all
    rows gives it: within 1e-6 (matrix kernels round by batch shape), bit for bit in a single batch."""
    import torch

    model = _train(spec, frames)
    loaded = train.from_safetensors(train.to_safetensors(model, {}))
    numeric, categorical = loaded.preprocessor.encode(frames[1])
    with torch.inference_mode():
        whole = torch.sigmoid(loaded.net(numeric, categorical))
    for batch_size in (1000, 777, len(numeric) + 1):
        assert torch.allclose(train.predict_proba(loaded.net, numeric, categorical, batch_size), whole,
                              rtol=0, atol=1e-6)
    assert torch.equal(train.predict_proba(loaded.net, numeric, categorical, len(numeric) + 1), whole)
    assert train.predict_proba(loaded.net, numeric[:0], categorical[:0]).shape == (0,)
