"""Section 3: training samples/s and batch-scoring rows/s against the hardware limit.

Training: `train_model` (the platform's function, end to end: preprocessing, epochs, per-epoch
validation, best-weights bookkeeping) vs the limit, the same MLP layers and optimizer stepping over a
pre-built dense float tensor in contiguous batches. Two references locate the gap: train_model's
batch loop alone (pre-built tensors, seeded permutation, embeddings), and the per-sample
`DataLoader(shuffle=True)` a typical PyTorch script would use.

Scoring: `LoadedModel.score` (encode a Polars frame, then forward in batches of 8192) vs the raw
forward pass of the same network over pre-encoded tensors; `predict_proba` on the pre-encoded
tensors separates encoding from the forward loop. The model is trained and loaded through the
platform's safetensors path first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from benchmarks.measure import interleaved, rate_summary
from ml_assets.features.compute import EVENT_ID, LABEL, PARTITION
from ml_assets.spec import UseCaseSpec


@dataclass(frozen=True)
class TrainingConfig:
    train_end: date = date(2013, 9, 30)  # Jan-Sep trains (about 245k rows at 1x), the next 7 days validate
    epochs: int = 3
    reps: int = 3
    dataloader_rows: int = 60_000  # the per-sample DataLoader reference runs one epoch over this many rows
    score_copies: int = 3  # score the whole year this many times over (about 1M rows at 1x)


def _frames(features_path: str, labels_path: str, train_end: date) -> tuple[Any, Any, Any]:
    import polars as pl

    feats = pl.read_parquet(features_path)
    labels = pl.read_parquet(labels_path, columns=[EVENT_ID, LABEL])
    data = feats.join(labels, on=EVENT_ID, how="inner").sort(PARTITION, EVENT_ID)
    train = data.filter(pl.col(PARTITION) <= train_end)
    valid = data.filter((pl.col(PARTITION) > train_end) & (pl.col(PARTITION) <= pl.lit(train_end).dt.offset_by("7d")))
    if valid.is_empty():  # tiny runs: hold out the last fifth instead
        cut = int(train.height * 0.8)
        train, valid = train.head(cut), train.slice(cut)
    return train, valid, feats


def _loop(net: Any, xn: Any, xc: Any, y: Any, spec: Any, epochs: int) -> None:
    """train_model's batch loop, verbatim in substance: seeded permutation, one gather per epoch, step."""
    import torch

    optimizer = torch.optim.AdamW(net.parameters(), lr=spec.learning_rate, weight_decay=spec.weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(spec.seed)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        en, ec, ey = xn[order], xc[order], y[order]
        for start in range(0, len(y), spec.batch_size):
            end = start + spec.batch_size
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(net(en[start:end], ec[start:end]), ey[start:end])
            loss.backward()
            optimizer.step()


def _limit(mlp: Any, dense: Any, y: Any, spec: Any, epochs: int) -> None:
    """The same layers and optimizer on a pre-built dense input, contiguous batches (the limit)."""
    import torch

    optimizer = torch.optim.AdamW(mlp.parameters(), lr=spec.learning_rate, weight_decay=spec.weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    mlp.train()
    for _ in range(epochs):
        for start in range(0, len(y), spec.batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(mlp(dense[start : start + spec.batch_size]).squeeze(1), y[start : start + spec.batch_size])
            loss.backward()
            optimizer.step()


def _dataloader(net: Any, xn: Any, xc: Any, y: Any, spec: Any, epochs: int) -> None:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(xn, xc, y), batch_size=spec.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(spec.seed))
    optimizer = torch.optim.AdamW(net.parameters(), lr=spec.learning_rate, weight_decay=spec.weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    net.train()
    for _ in range(epochs):
        for bn, bc, by in loader:
            optimizer.zero_grad(set_to_none=True)
            loss_fn(net(bn, bc), by).backward()
            optimizer.step()


def run(spec: UseCaseSpec, features_path: str, labels_path: str, config: TrainingConfig, log=print) -> dict[str, Any]:
    import polars as pl
    import torch

    from ml_assets.training import train as tr
    from ml_assets.training.preprocess import Preprocessor

    numeric, categorical = tuple(spec.features.numeric), tuple(spec.features.categorical)  # as the asset passes them
    model_spec = spec.model.model_copy(update={"epochs": config.epochs, "patience": config.epochs + 1})
    one_epoch = model_spec.model_copy(update={"epochs": 1})
    train, valid, feats = _frames(features_path, labels_path, config.train_end)
    torch.set_num_threads(model_spec.num_threads)

    pre = Preprocessor.fit(train, numeric, categorical, model_spec.min_category_count)
    xn, xc = pre.encode(train)
    y = torch.tensor(train.get_column(LABEL).cast(float).to_numpy(), dtype=torch.float32)
    net = tr.build_network(pre, model_spec)
    width = net.mlp[0].in_features
    dense = torch.randn(len(y), width)
    curves: list[int] = []
    n_dl = min(len(y), config.dataloader_rows)
    if config.reps > 1:  # warm imports (torchmetrics) and the allocator outside the timings
        tr.train_model(train.head(4096), valid, LABEL, numeric, categorical, one_epoch)

    def train_model() -> None:
        model = tr.train_model(train, valid, LABEL, numeric, categorical, model_spec)
        curves.append(len(model.curve))

    fns = {
        "train_model": train_model,
        "batch_loop": lambda: _loop(tr.build_network(pre, model_spec), xn, xc, y, model_spec, config.epochs),
        "limit_dense": lambda: _limit(tr.build_network(pre, model_spec).mlp, dense, y, model_spec, config.epochs),
        "dataloader": lambda: _dataloader(tr.build_network(pre, model_spec), xn[:n_dl], xc[:n_dl], y[:n_dl],
                                          model_spec, 1),
    }
    torch.manual_seed(model_spec.seed)
    times = interleaved(fns, config.reps, warmup=False)
    if set(curves) != {config.epochs}:
        raise AssertionError(f"train_model stopped early ({curves} epochs): samples/s would be miscounted")
    samples = {"train_model": len(y) * config.epochs, "batch_loop": len(y) * config.epochs,
               "limit_dense": len(y) * config.epochs, "dataloader": n_dl}
    train_rates = {name: rate_summary(samples[name], ts) for name, ts in times.items()}

    # Batch scoring through the real artifact path (safetensors bytes -> LoadedModel).
    trained = tr.train_model(train, valid, LABEL, numeric, categorical, one_epoch)
    loaded = tr.from_safetensors(tr.to_safetensors(trained, {"benchmark": True}))
    frame = pl.concat([feats] * config.score_copies, how="vertical")
    sn, sc = loaded.preprocessor.encode(frame)

    def raw_forward() -> None:
        loaded.net.eval()
        with torch.inference_mode():
            for i in range(0, len(sn), 8192):
                loaded.net(sn[i : i + 8192], sc[i : i + 8192])

    score_fns = {"score": lambda: loaded.score(frame), "predict_proba": lambda: tr.predict_proba(loaded.net, sn, sc),
                 "raw_forward": raw_forward}
    score_times = interleaved(score_fns, config.reps, warmup=True)
    score_rates = {name: rate_summary(frame.height, ts) for name, ts in score_times.items()}
    result = {
        "train_rows": len(y), "valid_rows": valid.height, "epochs": config.epochs, "batch_size": model_spec.batch_size,
        "threads": model_spec.num_threads, "dense_width": width,
        "training": {name: {"seconds": times[name], "samples_per_s": train_rates[name]} for name in fns},
        "train_model_share_of_limit": train_rates["train_model"]["best"] / train_rates["limit_dense"]["best"],
        "batch_loop_share_of_limit": train_rates["batch_loop"]["best"] / train_rates["limit_dense"]["best"],
        "dataloader_share_of_limit": train_rates["dataloader"]["best"] / train_rates["limit_dense"]["best"],
        "score_rows": frame.height,
        "scoring": {name: {"seconds": score_times[name], "rows_per_s": score_rates[name]} for name in score_fns},
        "score_share_of_raw_forward": score_rates["score"]["best"] / score_rates["raw_forward"]["best"],
        "predict_proba_share_of_raw_forward": score_rates["predict_proba"]["best"] / score_rates["raw_forward"]["best"],
    }
    log(f"  training: train_model {train_rates['train_model']['best'] / 1e3:.0f}k samples/s = "
        f"{result['train_model_share_of_limit']:.0%} of the limit ({train_rates['limit_dense']['best'] / 1e3:.0f}k); "
        f"scoring {score_rates['score']['best'] / 1e6:.2f}M rows/s = {result['score_share_of_raw_forward']:.0%} "
        "of the raw forward pass")
    return result
