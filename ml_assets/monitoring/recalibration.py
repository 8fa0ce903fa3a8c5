"""Recalibration study, pure: would recalibrating what the loop served have improved its calibration on
days the recalibration was not fitted on? Measured in the policy backtest, month by month.

For each month, two candidate maps of the served probability p are fitted on the served events of the
`fit_partitions` partitions whose labels were known when the month began (partitions up to its first day
minus the label delay), then applied to the month's served events:

- `intercept`: logit(p) + b, a base-rate shift (what the delay rate moving between 0.14 and 0.34 would call for);
- `platt`: a * logit(p) + b (Platt scaling).

Each month's ECE (the evaluation's binning) is reported raw and recalibrated. A map qualifies for adoption
only if it lowers ECE in at least `adopt_share` of the months and on average. The platform adopts none
today: the served probabilities are the model's own, so nothing is added to the artifact; the study is the
evidence for (or against) building one. Fits are deterministic (Newton steps in float64 from a fixed start).
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from ml_assets.features import compute
from ml_assets.spec import UseCaseSpec

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

MAPS = ("intercept", "platt")
_EPS = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    import numpy as np

    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def fit_map(z: np.ndarray, y: np.ndarray, slope: bool, steps: int = 50) -> tuple[float, float]:
    """(a, b) minimizing the log loss of sigmoid(a * z + b) (a fixed at 1 without `slope`), by Newton's
    method on the exact gradient and Hessian; a small ridge keeps it defined when y is one class."""
    import numpy as np

    a, b = 1.0, 0.0
    ridge = 1e-6
    for _ in range(steps):
        q = 1 / (1 + np.exp(-(a * z + b)))
        r, w = q - y, q * (1 - q)
        if slope:
            g = np.array([np.dot(r, z) + ridge * (a - 1), r.sum() + ridge * b])
            h = np.array([[np.dot(w, z * z) + ridge, np.dot(w, z)], [np.dot(w, z), w.sum() + ridge]])
            da, db = np.linalg.solve(h, g)
        else:
            da, db = 0.0, (r.sum() + ridge * b) / (w.sum() + ridge)
        a, b = a - da, b - db
        if abs(da) + abs(db) < 1e-12:
            break
    return float(a), float(b)


def apply_map(p: np.ndarray, a: float, b: float) -> np.ndarray:
    import numpy as np

    return 1 / (1 + np.exp(-(a * logit(p) + b)))


def ece(p: np.ndarray, y: np.ndarray, bins: int) -> float | None:
    """The evaluation report's ECE (`metrics.calibration_error`); None for no rows."""
    import torch

    from ml_assets.evaluation.metrics import calibration_error

    if len(y) == 0:
        return None
    return calibration_error(torch.as_tensor(p, dtype=torch.float32), torch.as_tensor(y), bins)


def study(spec: UseCaseSpec, served: pl.DataFrame, probability: np.ndarray, fit_partitions: int, bins: int,
          adopt_share: float = 2 / 3) -> dict[str, Any]:
    """`served`: the served, labelled events (partition and label columns); `probability`: what was served."""
    import numpy as np

    partition = served.get_column(compute.PARTITION).to_numpy()
    label = served.get_column(compute.LABEL).cast(int).to_numpy().astype(np.float64)
    month = served.get_column(compute.PARTITION).dt.strftime("%Y-%m").to_numpy()
    p = np.asarray(probability, dtype=np.float64)
    rows = []
    for name in sorted(set(month.tolist())):
        first = date.fromisoformat(f"{name}-01")
        known_last = spec.shift(first, -spec.label_delay)  # labels known when the month began
        fit_first = spec.shift(known_last, -(fit_partitions - 1))
        fit = (partition >= np.datetime64(fit_first)) & (partition <= np.datetime64(known_last))
        target = month == name
        row: dict[str, Any] = {"month": name, "rows": int(target.sum()), "fit_rows": int(fit.sum()),
                               "fit_partitions": [fit_first.isoformat(), known_last.isoformat()],
                               "ece_served": _round(ece(p[target], label[target], bins))}
        for kind in MAPS:
            if fit.sum() == 0:
                row[f"ece_{kind}"], row[f"{kind}_map"] = None, None
                continue
            a, b = fit_map(logit(p[fit]), label[fit], slope=kind == "platt")
            row[f"{kind}_map"] = {"a": round(a, 6), "b": round(b, 6)}
            row[f"ece_{kind}"] = _round(ece(apply_map(p[target], a, b), label[target], bins))
        rows.append(row)
    verdicts = {}
    for kind in MAPS:
        pairs = [(r["ece_served"], r[f"ece_{kind}"]) for r in rows
                 if r["ece_served"] is not None and r[f"ece_{kind}"] is not None]
        better = sum(1 for raw, new in pairs if new < raw)
        mean_raw = sum(raw for raw, _ in pairs) / len(pairs) if pairs else None
        mean_new = sum(new for _, new in pairs) / len(pairs) if pairs else None
        verdicts[kind] = {"months_better": better, "months": len(pairs), "mean_ece_served": _round(mean_raw),
                          "mean_ece_recalibrated": _round(mean_new),
                          "qualifies": bool(pairs) and better >= adopt_share * len(pairs) and mean_new < mean_raw}
    return {"fit_partitions": fit_partitions, "bins": bins, "adopt_share": round(adopt_share, 4),
            "months": rows, "verdicts": verdicts}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
