"""Policy backtest, pure: was the closed loop worth running? Month by month realized AUROC, on the
same served and labelled events, of

- `closed_loop`: what was actually served (the recorded predictions);
- `frozen`: the first promoted model, never replaced;
- `blind_periodic`: retrain every `every` partitions after the first promotion on the window the loop's
  retrain plan uses (`sensors.policy.retrain_plan`), with the same training code, always promoted; a
  model decided at partition P serves from P + 1, as a promotion does in the loop;
- `hindsight_best`: per month, the best registered version among those trained only on data before the
  month, or the loop as served when that was better (a version promoted mid-month was trained on part
  of the month): an upper bound on choosing among the versions the loop produced, without leakage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from ml_assets.features import compute
from ml_assets.spec import UseCaseSpec

if TYPE_CHECKING:
    import polars as pl

POLICIES = ("closed_loop", "frozen", "blind_periodic", "hindsight_best")
MONTH = "month"
COLUMNS = (MONTH, "rows", *POLICIES, "hindsight_version")  # the table's column order
Scorer = Callable[["pl.DataFrame"], Any]  # features -> probabilities (a loaded model's `score`)


@dataclass(frozen=True)
class CandidateVersion:
    version: str
    train_end: date
    score: Scorer


def blind_decisions(spec: UseCaseSpec, first_decision: date, last: date, every: int) -> list[date]:
    """Partitions at which blind retraining replaces its model: every `every` partitions after the
    first promotion, up to (excluding) the last served partition."""
    out, current = [], spec.shift(first_decision, every)
    while current < last:
        out.append(current)
        current = spec.shift(current, every)
    return out


def serve_segments(frame: pl.DataFrame, decisions: list[date], scorers: list[Scorer]) -> Any:
    """Scores of `frame` when scorer i serves partitions after decisions[i - 1] through decisions[i]
    (scorer 0 serves everything up to decisions[0])."""
    import polars as pl
    import torch

    assert len(scorers) == len(decisions) + 1
    out = torch.empty(frame.height, dtype=torch.float32)
    bounds = [None, *decisions, None]
    index = pl.Series("i", range(frame.height))
    for scorer, low, high in zip(scorers, bounds[:-1], bounds[1:], strict=True):
        part = pl.lit(True)
        if low is not None:
            part &= pl.col(compute.PARTITION) > low
        if high is not None:
            part &= pl.col(compute.PARTITION) <= high
        rows = frame.with_columns(index).filter(part)
        if rows.height:
            out[torch.tensor(rows.get_column("i").to_numpy())] = scorer(rows.drop("i")).float()
    return out


def auroc(prob: Any, label: Any) -> float | None:
    """AUROC, or None when the group holds one class only."""
    import torch
    from torchmetrics.functional.classification import binary_auroc

    y = torch.as_tensor(label).long()
    if int(y.sum()) in (0, len(y)):
        return None
    return float(binary_auroc(torch.as_tensor(prob).float(), y))


def monthly(frame: pl.DataFrame, scores: dict[str, Any], candidates: list[CandidateVersion]) -> list[dict[str, Any]]:
    """One row per calendar month of `frame` (with labels): every policy's AUROC there."""

    month = frame.get_column(compute.PARTITION).dt.strftime("%Y-%m")
    label = frame.get_column(compute.LABEL).cast(int).to_numpy()
    candidate_scores = {c.version: c.score(frame).float() for c in candidates}
    rows = []
    for name in sorted(month.unique().to_list()):
        mask = (month == name).to_numpy()
        first = date.fromisoformat(f"{name}-01")  # eligible: trained only on data before the month
        row: dict[str, Any] = {MONTH: name, "rows": int(mask.sum())}
        for policy, prob in scores.items():
            row[policy] = _round(auroc(prob[mask], label[mask]))
        eligible = [c for c in candidates if c.train_end < first]
        judged = [(value, c.version) for c in eligible
                  if (value := auroc(candidate_scores[c.version][mask], label[mask])) is not None]
        best = max(judged, default=(None, None))
        if row.get("closed_loop") is not None and (best[0] is None or row["closed_loop"] > _round(best[0])):
            best = (row["closed_loop"], "as served")  # the loop's own mix includes versions trained in the month
        row["hindsight_best"], row["hindsight_version"] = _round(best[0]), best[1]
        rows.append(row)
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means of the monthly AUROCs and the comparisons the issue's targets name."""
    def mean(policy: str) -> float | None:
        values = [r[policy] for r in rows if r.get(policy) is not None]
        return _round(sum(values) / len(values)) if values else None

    def beats(a: str, b: str) -> int:
        return sum(1 for r in rows if r.get(a) is not None and r.get(b) is not None and r[a] >= r[b])

    return {
        "months": len(rows),
        "mean_monthly_auroc": {p: mean(p) for p in POLICIES},
        "closed_loop_at_least_frozen_months": beats("closed_loop", "frozen"),
        "closed_loop_at_least_blind_months": beats("closed_loop", "blind_periodic"),
        "months_below_frozen": [r[MONTH] for r in rows if r["closed_loop"] is not None and r["frozen"] is not None
                                and r["closed_loop"] < r["frozen"]],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
