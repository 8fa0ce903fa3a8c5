"""Classification metrics with torchmetrics, overall and per slice."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl
    import torch

METRICS = ("auroc", "average_precision", "f1", "brier", "ece")


def binary_metrics(prob: torch.Tensor, y: torch.Tensor, threshold: float, bins: int) -> dict[str, float]:
    import torch
    from torchmetrics.functional.classification import (
        binary_auroc,
        binary_average_precision,
        binary_calibration_error,
        binary_f1_score,
    )

    target = y.long()
    single_class = bool((target == target[0]).all()) if len(target) else True
    nan = float("nan")
    return {
        "rows": float(len(target)),
        "positive_rate": float(target.float().mean()) if len(target) else nan,
        "auroc": nan if single_class else float(binary_auroc(prob, target)),
        "average_precision": nan if single_class else float(binary_average_precision(prob, target)),
        "f1": float(binary_f1_score(prob, target, threshold=threshold)),
        "brier": float(torch.mean((prob - target.float()) ** 2)),
        "ece": float(binary_calibration_error(prob, target, n_bins=bins, norm="l1")),
    }


def slice_metrics(frame: pl.DataFrame, prob_col: str, label_col: str, slice_col: str, threshold: float,
                  bins: int, min_rows: int) -> list[dict[str, float | str]]:
    """Metrics for every value of `slice_col` with at least `min_rows` rows."""
    import torch

    out = []
    for (value,), part in frame.group_by([slice_col], maintain_order=True):
        if part.height < min_rows:
            continue
        prob = torch.tensor(part.get_column(prob_col).to_numpy(), dtype=torch.float32)
        y = torch.tensor(part.get_column(label_col).cast(float).to_numpy())
        out.append({"slice": slice_col, "value": str(value)} | binary_metrics(prob, y, threshold, bins))
    return sorted(out, key=lambda r: str(r["value"]))
