"""Drift scores from whylogs sketches: effect sizes, not p-values, and the sequential rule on them.

Numeric columns: the reference's quantiles define `bins` equal-mass bins, plus one bin below the
reference's minimum and one above its maximum (a unit switch moves values out of range; without those
bins it would only look like a day that fills one edge bin). Both sketches' CDFs give bin masses; the
score is the Hellinger distance (0 = same, 1 = disjoint), KS is reported beside it. Categorical
columns: frequent-item estimates with an "other" bucket, then the same distance.
"""

from __future__ import annotations

import itertools
import math
from datetime import date
from typing import Any


def hellinger(p: list[float], q: list[float]) -> float:
    return math.sqrt(max(0.0, 1.0 - sum(math.sqrt(max(a, 0.0) * max(b, 0.0)) for a, b in zip(p, q, strict=True))))


def _masses(cdf_below: list[float], cdf_top: float) -> list[float]:
    """Bin masses from P(X < edge) at each edge and P(X <= the reference's maximum)."""
    cum = [0.0, *cdf_below, cdf_top, 1.0]
    return [max(0.0, b - a) for a, b in itertools.pairwise(cum)]


def numeric_drift(reference: Any, current: Any, bins: int) -> dict[str, float] | None:
    ref, cur = reference.get_metric("distribution"), current.get_metric("distribution")
    if ref is None or cur is None or ref.n == 0 or cur.n == 0:
        return None
    r, c = ref.kll.value, cur.kll.value
    top = r.get_max_value()
    edges = sorted({r.get_min_value(), *r.get_quantiles([i / bins for i in range(1, bins)])})
    ref_below, cur_below = r.get_cdf(edges)[:-1], c.get_cdf(edges)[:-1]
    p = _masses(ref_below, r.get_cdf([top], inclusive=True)[0])
    q = _masses(cur_below, c.get_cdf([top], inclusive=True)[0])
    ks = max(abs(a - b) for a, b in zip(itertools.accumulate(p), itertools.accumulate(q), strict=True))
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


def merged(views: list[Any]) -> Any:
    """One profile of several partitions' profiles (whylogs sketches merge losslessly enough)."""
    current = views[0]
    for view in views[1:]:
        current = current.merge(view)
    return current


def k_of_n(history: dict[str, dict[str, float]], thresholds: dict[str, float], k: int
           ) -> dict[str, dict[str, Any]]:
    """The sequential rule per column over the partitions in `history` (partition -> column -> score,
    the last n partitions): the partitions above the column's threshold, their count, and whether at
    least `k` were. A column without a threshold is reported, never fires."""
    out: dict[str, dict[str, Any]] = {}
    for column in sorted({c for scores in history.values() for c in scores}):
        limit = thresholds.get(column)
        days = sorted(p for p, s in history.items() if limit is not None and column in s and s[column] > limit)
        out[column] = {"exceedances": len(days), "exceeding_partitions": days, "fired": len(days) >= k}
    return out


def summarize(scores: dict[str, dict[str, float]], thresholds: dict[str, float]) -> dict[str, Any]:
    """One partition's exceedances: the columns above their own threshold and their share."""
    drifted = sorted(c for c, s in scores.items() if c in thresholds and s["hellinger"] > thresholds[c])
    share = len(drifted) / len(scores) if scores else 0.0
    return {"drifted_columns": drifted, "drifted_share": share, "monitored_columns": len(scores),
            "max_hellinger": max((s["hellinger"] for s in scores.values()), default=0.0)}


def drift_decision(spec: Any, scored: dict[date, dict[str, dict[str, float]]], partition: date,
                   calibration: Any) -> dict[str, Any]:
    """One partition's drift decision from the scores of the last n partitions (each over its window)
    against the serving version's calibrated thresholds. Only calibrated columns feed the k-of-n rule;
    an uncalibrated record (or column) gets the fixed threshold and only the share rule, as before
    calibration existed, and the report says so. Pure."""
    mon = spec.monitoring
    current = scored[partition]
    fixed = mon.feature_drift_threshold
    if calibration is not None:
        calibrated = calibration.thresholds()
        thresholds = {c: calibrated.get(c, fixed) for c in current}
        missing = sorted(set(current) - set(calibrated))
        source = "calibrated" + (f" (fixed {fixed} for {', '.join(missing)}: no reference windows)" if missing else "")
    else:
        calibrated, thresholds = {}, {c: fixed for c in current}
        source = f"fixed {fixed} (the version record has no drift calibration)"
    history = {d.isoformat(): {c: s["hellinger"] for c, s in v.items()} for d, v in scored.items()}
    sequential = k_of_n(history, calibrated, mon.drift_alarm_exceedances)
    summary = summarize(current, thresholds)
    fired = {c: v["exceeding_partitions"] for c, v in sequential.items() if v["fired"]}
    broad = summary["drifted_share"] > mon.drifted_share_threshold
    alarm = sorted({d for days in fired.values() for d in days} | ({partition.isoformat()} if broad else set()))
    columns = {c: {"score": s["hellinger"], "ks": s["ks"], "threshold": thresholds.get(c),
                   "exceedances": sequential.get(c, {}).get("exceedances", 0),
                   "exceeding_partitions": sequential.get(c, {}).get("exceeding_partitions", []),
                   "fired": c in fired} for c, s in sorted(current.items())}
    k, n = mon.drift_alarm_exceedances, mon.drift_alarm_partitions
    return {"drifted": bool(fired) or broad, "fired_columns": fired, "alarm_partitions": alarm,
            "share_rule_fired": broad, **summary, "threshold_source": source, "columns": columns,
            "scored_partitions": sorted(history),
            "calibrated_window": calibration.window if calibration is not None else None,
            "rule": {"k": k, "n": n, "share": mon.drifted_share_threshold,
                     "false_alarm_rate": calibration.false_alarm_rate if calibration is not None else None,
                     "text": (f"{k} of {n} partitions above the calibrated threshold, or share > "
                              f"{mon.drifted_share_threshold}") if calibration is not None else
                     f"share of columns above {mon.feature_drift_threshold} > {mon.drifted_share_threshold}"}}
