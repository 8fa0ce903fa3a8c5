"""Model health, pure: the uncertainty of one partition's AUROC, the performance a calibrated model
expects of itself (CBPE, as NannyML estimates it), and the rule that says when what was served stays
below the champion's own promise. NumPy only, so every figure is easy to test on synthetic data.

Data time: a partition's realized figures count from `labels_known_at` (partition + label delay);
before that only its estimate exists, and the rule uses it only where the policy says so.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import date
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from ml_assets.spec import UseCaseSpec

REALIZED, ESTIMATED = "realized", "estimated"


def _midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties averaged (what Mann-Whitney and DeLong need)."""
    import numpy as np

    order = np.argsort(x, kind="stable")
    _, inverse, counts = np.unique(x[order], return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = np.empty(len(x))
    ranks[order] = ((ends - counts + 1 + ends) / 2)[inverse]
    return ranks


def auroc_with_se(prob: np.ndarray, y: np.ndarray) -> tuple[float | None, float | None]:
    """AUROC and its DeLong standard error (structural components of the Mann-Whitney statistic);
    (None, None) when one class is missing."""
    import numpy as np

    prob, y = np.asarray(prob, dtype=np.float64), np.asarray(y).astype(bool)
    pos, neg = prob[y], prob[~y]
    m, n = len(pos), len(neg)
    if m == 0 or n == 0:
        return None, None
    ranks = _midranks(np.r_[pos, neg])
    v10 = (ranks[:m] - _midranks(pos)) / n  # per positive: share of negatives scored below it
    v01 = 1 - (ranks[m:] - _midranks(neg)) / m  # per negative: share of positives scored above it
    auroc = float(v10.mean())
    var = (v10.var(ddof=1) / m if m > 1 else 0.0) + (v01.var(ddof=1) / n if n > 1 else 0.0)
    return auroc, float(math.sqrt(var))


def hanley_mcneil_se(auroc: float, positives: float, negatives: float) -> float:
    """Standard error of an AUROC from its value and class counts (Hanley & McNeil 1982): the
    estimate's uncertainty when no labels exist to compute DeLong's."""
    q1, q2 = auroc / (2 - auroc), 2 * auroc**2 / (1 + auroc)
    var = (auroc * (1 - auroc) + (positives - 1) * (q1 - auroc**2) + (negatives - 1) * (q2 - auroc**2)) / (
        positives * negatives)
    return float(math.sqrt(max(var, 0.0)))


def cbpe(prob: np.ndarray, bins: int) -> dict[str, float | None]:
    """Confidence-based performance estimation: if the probabilities are calibrated, each event is a
    positive with weight p and a negative with weight 1 - p. The expected confusion matrix at every
    threshold gives the expected ROC curve, so its AUROC (Mann-Whitney over the weighted events) is
    the estimated AUROC. The expected ECE is what a calibrated model still measures on this many
    events per bin (sampling noise: sum over bins of n_b/n * sd_b * sqrt(2/pi))."""
    import numpy as np

    from ml_assets.evaluation.metrics import _weighted_auroc

    p = np.clip(np.asarray(prob, dtype=np.float64), 0.0, 1.0)
    if len(p) == 0:
        return {"auroc": None, "auroc_se": None, "ece": None, "positive_rate": None, "rows": 0}
    expected_pos, expected_neg = float(p.sum()), float((1 - p).sum())
    auroc = None
    if expected_pos > 0 and expected_neg > 0:
        auroc = float(_weighted_auroc(np.r_[p, p], np.r_[np.ones(len(p)), np.zeros(len(p))],
                                      np.r_[p, 1 - p][None, :])[0])
    index = np.minimum((p * bins).astype(int), bins - 1)  # equal-width bins, as the realized ECE uses
    noise = 0.0
    for b in np.unique(index):
        members = p[index == b]
        noise += math.sqrt(float((members * (1 - members)).sum())) / len(p)
    se = hanley_mcneil_se(auroc, max(expected_pos, 1.0), max(expected_neg, 1.0)) if auroc is not None else None
    return {"auroc": auroc, "auroc_se": se, "ece": noise * math.sqrt(2 / math.pi),
            "positive_rate": float(p.mean()), "rows": len(p)}


# ---- the rule ---------------------------------------------------------------------------------------
OVERALL = "overall"  # the scope of the whole partition; slices are "<column>=<value>"
SLICES = "slices"


@dataclass(frozen=True)
class Judged:
    """One partition's figure in one scope, as the rule saw it at a given data time."""

    partition: str
    scope: str
    model_version: str | None
    source: str  # realized | estimated
    auroc: float
    auroc_se: float
    promised_auroc: float
    gap: float  # auroc - promised_auroc
    gap_upper: float  # one-sided upper confidence bound of the gap (Bonferroni over the partition's scopes)
    below: bool  # gap_upper < -margin

    def evidence(self) -> dict[str, Any]:
        """Rounded for the check's table (a reader's view); `asdict` is the full-precision record."""
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def _figure(record: dict[str, Any], scope: str, newest: date, use_estimate: bool
            ) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str | None]:
    """(figure, promise, source) of one scope known at data time `newest`."""
    known = date.fromisoformat(record["labels_known_at"]) <= newest
    promised = record.get("promised") or {}
    if scope != OVERALL:
        realized = ((record.get(REALIZED) or {}).get(SLICES) or {}).get(scope)
        if not (known and realized):
            return None, None, None
        return realized, (promised.get(SLICES) or {}).get(scope), REALIZED
    realized, estimated = record.get(REALIZED) or {}, record.get(ESTIMATED) or {}
    if known and realized.get("auroc") is not None:
        return realized, promised, REALIZED
    if use_estimate and estimated.get("auroc") is not None:
        return estimated, promised, ESTIMATED
    return None, None, None


def scopes(record: dict[str, Any]) -> list[str]:
    """The scopes a record can be judged in: overall, and every slice with realized figures."""
    return [OVERALL, *sorted((record.get(REALIZED) or {}).get(SLICES) or {})]


def judge(spec: UseCaseSpec, record: dict[str, Any], newest: date, scope: str = OVERALL) -> Judged | None:
    """The partition's figure in `scope` known at data time `newest`: realized once its labels are known,
    else (overall only, when the policy allows) its estimate; None when nothing usable was measured or
    promised. The bound is Bonferroni-adjusted over the scopes the partition is judged in."""
    mon = spec.monitoring
    figure, promise, source = _figure(record, scope, newest, mon.performance_use_estimate)
    if figure is None or not promise or promise.get("auroc") is None or figure.get("auroc_se") is None:
        return None
    tested = len(scopes(record)) if source == REALIZED else 1
    z = NormalDist().inv_cdf(1 - (1 - mon.performance_confidence) / tested)
    gap = float(figure["auroc"]) - float(promise["auroc"])
    upper = gap + z * float(figure["auroc_se"])
    return Judged(record["partition"], scope, record.get("model_version"), source, float(figure["auroc"]),
                  float(figure["auroc_se"]), float(promise["auroc"]), gap, upper, upper < -mon.performance_margin)


def newest_judgeable(spec: UseCaseSpec, newest: date) -> date:
    """The newest partition the rule can judge at data time `newest`."""
    return newest if spec.monitoring.performance_use_estimate else spec.shift(newest, -spec.label_delay)


def below_promise_streak(spec: UseCaseSpec, records: dict[str, dict[str, Any]], newest: date,
                         scope: str = OVERALL) -> list[Judged]:
    """Consecutive partitions, served by one version and ending at the newest judgeable one, whose
    performance in `scope` is below the version's promise by more than the margin (oldest first)."""
    streak: list[Judged] = []
    current = newest_judgeable(spec, newest)
    while (record := records.get(current.isoformat())) is not None:
        judged = judge(spec, record, newest, scope)
        if judged is None or not judged.below or (streak and judged.model_version != streak[0].model_version):
            break
        streak.append(judged)
        current = spec.shift(current, -1)
    return streak[::-1]


def longest_streak(spec: UseCaseSpec, records: dict[str, dict[str, Any]], newest: date) -> list[Judged]:
    """The longest below-promise streak over the scopes of the newest judgeable partition (overall
    first on ties): one slice breaking (a concept shift in one origin) is enough. Judged over the same
    bounded window by the check and the sensor (`error_partitions` + label delay), so both report the
    same streak; a longer one is counted up to that window."""
    first = spec.shift(newest, -(spec.monitoring.performance_error_partitions + spec.label_delay)).isoformat()
    records = {k: v for k, v in records.items() if k >= first}
    record = records.get(newest_judgeable(spec, newest).isoformat())
    found = [below_promise_streak(spec, records, newest, s) for s in (scopes(record) if record else [OVERALL])]
    return max(found, key=len)


def severity(spec: UseCaseSpec, streak: list[Judged]) -> str:
    """ok | warn | error, from the streak's length and the policy."""
    mon = spec.monitoring
    if len(streak) >= mon.performance_error_partitions:
        return "error"
    return "warn" if len(streak) >= mon.performance_warn_partitions else "ok"
