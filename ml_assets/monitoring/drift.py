"""Drift scores from whylogs sketches: effect sizes, not p-values.

Numeric columns: the reference's quantiles define `bins` equal-mass bins; both sketches' CDFs at
those edges give bin masses; the score is the Hellinger distance (0 = same, 1 = disjoint) and the
KS statistic is reported beside it. Categorical columns: frequent-item estimates, normalized with an
"other" bucket, then the same Hellinger distance.
"""

from __future__ import annotations

import itertools
import math
from typing import Any


def hellinger(p: list[float], q: list[float]) -> float:
    return math.sqrt(max(0.0, 1.0 - sum(math.sqrt(max(a, 0.0) * max(b, 0.0)) for a, b in zip(p, q, strict=True))))


def _masses(cdf: list[float]) -> list[float]:
    edges = [0.0, *cdf[:-1], 1.0]
    return [max(0.0, b - a) for a, b in itertools.pairwise(edges)]


def numeric_drift(reference: Any, current: Any, bins: int) -> dict[str, float] | None:
    ref, cur = reference.get_metric("distribution"), current.get_metric("distribution")
    if ref is None or cur is None or ref.n == 0 or cur.n == 0:
        return None
    quantiles = ref.kll.value.get_quantiles([i / bins for i in range(1, bins)])
    edges = sorted(set(quantiles))
    p, q = _masses(ref.kll.value.get_cdf(edges)), _masses(cur.kll.value.get_cdf(edges))
    ks = max(abs(a - b) for a, b in zip(ref.kll.value.get_cdf(edges), cur.kll.value.get_cdf(edges), strict=True))
    return {"hellinger": hellinger(p, q), "ks": ks}


def categorical_drift(reference: Any, current: Any) -> dict[str, float] | None:
    ref, cur = reference.get_metric("frequent_items"), current.get_metric("frequent_items")
    if ref is None or cur is None:
        return None
    ref_items = {i.value: i.est for i in ref.to_summary_dict()["frequent_strings"]}
    cur_items = {i.value: i.est for i in cur.to_summary_dict()["frequent_strings"]}
    ref_n, cur_n = reference.get_metric("counts").n.value, current.get_metric("counts").n.value
    if not ref_n or not cur_n:
        return None
    keys = sorted(set(ref_items) | set(cur_items))
    p = [ref_items.get(k, 0) / ref_n for k in keys]
    q = [cur_items.get(k, 0) / cur_n for k in keys]
    p.append(max(0.0, 1 - sum(p)))
    q.append(max(0.0, 1 - sum(q)))
    return {"hellinger": hellinger(p, q), "ks": float("nan")}


def drift_scores(reference: Any, current: Any, numeric: list[str], categorical: list[str], bins: int
                 ) -> dict[str, dict[str, float]]:
    """Per-column scores for the columns present in both profile views."""
    scores = {}
    for name in numeric + categorical:
        ref_col, cur_col = reference.get_column(name), current.get_column(name)
        if ref_col is None or cur_col is None:
            continue
        score = numeric_drift(ref_col, cur_col, bins) if name in numeric else categorical_drift(ref_col, cur_col)
        if score is not None:
            scores[name] = score
    return scores


def summarize(scores: dict[str, dict[str, float]], threshold: float) -> dict[str, Any]:
    drifted = sorted(c for c, s in scores.items() if s["hellinger"] > threshold)
    share = len(drifted) / len(scores) if scores else 0.0
    return {"drifted_columns": drifted, "drifted_share": share, "monitored_columns": len(scores),
            "max_hellinger": max((s["hellinger"] for s in scores.values()), default=0.0)}
