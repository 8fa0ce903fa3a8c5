"""Classification metrics (torchmetrics), per slice and per protected group, and paired bootstrap
confidence intervals of AUROC differences (NumPy). Pure."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import polars as pl
    import torch

METRICS = ("auroc", "average_precision", "f1", "brier", "ece")


def clean(value: float) -> float | None:
    """NaN (an undefined metric) is stored as null."""
    return None if value != value else value


def calibration_error(prob: torch.Tensor, target: torch.Tensor, bins: int) -> float:
    """Expected calibration error: L1 over `bins` equal-width probability bins (every report uses this)."""
    from torchmetrics.functional.classification import binary_calibration_error

    return float(binary_calibration_error(prob, target.long(), n_bins=bins, norm="l1"))


def binary_metrics(prob: torch.Tensor, y: torch.Tensor, threshold: float, bins: int) -> dict[str, float | None]:
    import torch
    from torchmetrics.functional.classification import binary_auroc, binary_average_precision, binary_f1_score

    target = y.long()
    if not len(target):
        return {"rows": 0.0, **dict.fromkeys(["positive_rate", *METRICS])}
    single_class = bool((target == target[0]).all())
    return {
        "rows": float(len(target)),
        "positive_rate": float(target.float().mean()),
        "auroc": None if single_class else float(binary_auroc(prob, target)),
        "average_precision": None if single_class else float(binary_average_precision(prob, target)),
        "f1": float(binary_f1_score(prob, target, threshold=threshold)),
        "brier": float(torch.mean((prob - target.float()) ** 2)),
        "ece": calibration_error(prob, target, bins),
    }


def slice_metrics(frame: pl.DataFrame, prob_col: str, label_col: str, slice_col: str, threshold: float,
                  bins: int, min_rows: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Metrics for every value of `slice_col` with at least `min_rows` rows, and the values with fewer
    (listed with their row counts, not judged)."""
    import torch

    judged, small = [], []
    for (value,), part in frame.group_by([slice_col], maintain_order=True):
        if part.height < min_rows:
            small.append({"slice": slice_col, "value": str(value), "rows": part.height})
            continue
        prob = torch.tensor(part.get_column(prob_col).to_numpy(), dtype=torch.float32)
        y = torch.tensor(part.get_column(label_col).cast(float).to_numpy())
        judged.append({"slice": slice_col, "value": str(value)} | binary_metrics(prob, y, threshold, bins))
    return sorted(judged, key=lambda r: r["value"]), sorted(small, key=lambda r: r["value"])


def group_rates(frame: pl.DataFrame, prob_col: str, label_col: str, group_col: str, threshold: float,
                min_rows: int) -> dict[str, Any]:
    """Fairness evidence for one protected attribute: per group AUROC, positive (flag) rate, TPR, FPR;
    and the largest gaps: demographic-parity difference (flag rate) and equalized-odds difference
    (the larger of the TPR and FPR gaps). Groups under `min_rows` are listed, not compared."""
    import polars as pl
    import torch
    from torchmetrics.functional.classification import binary_auroc

    rows, small = [], []
    flagged = pl.col(prob_col) >= threshold
    positive = pl.col(label_col).cast(pl.Boolean)
    for (value,), part in frame.group_by([group_col], maintain_order=True):
        if part.height < min_rows:
            small.append({"group": str(value), "rows": part.height})
            continue
        stats = part.select(
            flagged.mean().alias("flag_rate"),
            (flagged & positive).sum().alias("tp"), positive.sum().alias("p"),
            (flagged & ~positive).sum().alias("fp"), (~positive).sum().alias("n"),
        ).row(0, named=True)
        y = torch.tensor(part.get_column(label_col).cast(int).to_numpy())
        auroc = float(binary_auroc(torch.tensor(part.get_column(prob_col).to_numpy()), y)) \
            if 0 < int(y.sum()) < len(y) else None
        rows.append({"group": str(value), "rows": part.height, "auroc": auroc,
                     "positive_rate": float(part.get_column(label_col).cast(float).mean()),
                     "flag_rate": float(stats["flag_rate"]),
                     "tpr": stats["tp"] / stats["p"] if stats["p"] else None,
                     "fpr": stats["fp"] / stats["n"] if stats["n"] else None})

    def gap(name: str) -> float | None:
        values = [r[name] for r in rows if r[name] is not None]
        return max(values) - min(values) if len(values) >= 2 else None

    tpr_gap, fpr_gap = gap("tpr"), gap("fpr")
    gaps = [g for g in (tpr_gap, fpr_gap) if g is not None]
    return {"attribute": group_col, "groups": sorted(rows, key=lambda r: r["group"]), "small_groups": small,
            "demographic_parity_difference": gap("flag_rate"),
            "equalized_odds_difference": max(gaps) if gaps else None,
            "tpr_gap": tpr_gap, "fpr_gap": fpr_gap, "auroc_gap": gap("auroc")}


# ---- paired bootstrap of AUROC differences --------------------------------------------------------------
def _weighted_auroc(prob: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC of `prob` under each row of `weights` (B x n), exact with ties (Mann-Whitney)."""
    import numpy as np

    order = np.argsort(prob, kind="stable")
    sorted_prob = prob[order]
    starts = np.flatnonzero(np.r_[True, sorted_prob[1:] != sorted_prob[:-1]])
    w = weights[:, order]
    pos = w * y[order]
    neg = w - pos
    pos_g = np.add.reduceat(pos, starts, axis=1)
    neg_g = np.add.reduceat(neg, starts, axis=1)
    below = np.cumsum(neg_g, axis=1) - neg_g
    total = pos_g.sum(axis=1) * neg_g.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos_g * (below + 0.5 * neg_g)).sum(axis=1) / total


MIN_BLOCKS = 10  # fewer partitions than this: resample events instead (and say so)


def paired_auroc_difference(a: np.ndarray, b: np.ndarray, y: np.ndarray, *, samples: int = 1000,
                            level: float = 0.90, seed: int = 0, blocks: np.ndarray | None = None
                            ) -> dict[str, float | int | None]:
    """AUROC(a) - AUROC(b) on the same events, with a paired (Poisson) bootstrap confidence interval.

    `blocks` (e.g. the partition of each event) resamples whole blocks instead of events, which keeps
    the correlation of events within a partition; with fewer than `MIN_BLOCKS` blocks, events are
    resampled instead (`unit` says which). Deterministic for a given seed.
    """
    import numpy as np

    y = np.asarray(y, dtype=np.float64)
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    point_w = np.ones((1, len(y)))
    if len(y) == 0 or y.min() == y.max():
        return {"difference": None, "low": None, "high": None, "level": level, "samples": 0, "unit": None}
    diff = float(_weighted_auroc(a, y, point_w)[0] - _weighted_auroc(b, y, point_w)[0])
    rng = np.random.default_rng(seed)
    unit = "event"
    if blocks is not None:
        _, index = np.unique(blocks, return_inverse=True)
        if index.max() + 1 >= MIN_BLOCKS:
            unit = "partition"
        else:  # too few blocks to resample: their bootstrap would claim certainty it does not have
            blocks = None
    if blocks is None:
        weights = rng.poisson(1.0, size=(samples, len(y))).astype(np.float64)
    else:
        weights = rng.poisson(1.0, size=(samples, index.max() + 1)).astype(np.float64)[:, index]
    deltas = []
    for chunk in np.array_split(weights, max(1, samples * len(y) // 4_000_000)):  # bounded memory
        deltas.append(_weighted_auroc(a, y, chunk) - _weighted_auroc(b, y, chunk))
    d = np.concatenate(deltas)
    d = d[np.isfinite(d)]
    tail = (1 - level) / 2
    return {"difference": diff, "low": float(np.quantile(d, tail)), "high": float(np.quantile(d, 1 - tail)),
            "level": level, "samples": len(d), "unit": unit}
