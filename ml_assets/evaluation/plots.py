"""ROC curve and reliability diagram as one PNG (matplotlib, headless)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def roc_and_reliability_png(curves: dict[str, torch.Tensor], y: torch.Tensor, bins: int) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from torchmetrics.functional.classification import binary_roc

    fig, (roc_ax, rel_ax) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=90)
    target = y.long()
    edges = torch.linspace(0, 1, bins + 1)
    for name, prob in curves.items():
        fpr, tpr, _ = binary_roc(prob, target)
        roc_ax.plot(fpr.numpy(), tpr.numpy(), label=name)
        idx = torch.bucketize(prob, edges[1:-1])
        xs, ys = [], []
        for b in range(bins):
            mask = idx == b
            if int(mask.sum()) >= 20:
                xs.append(float(prob[mask].mean()))
                ys.append(float(y[mask].float().mean()))
        rel_ax.plot(xs, ys, marker="o", label=name)
    roc_ax.plot([0, 1], [0, 1], "k:", linewidth=0.8)
    roc_ax.set(title="ROC (held-out period)", xlabel="false positive rate", ylabel="true positive rate")
    rel_ax.plot([0, 1], [0, 1], "k:", linewidth=0.8)
    rel_ax.set(title="Reliability diagram", xlabel="predicted probability", ylabel="observed frequency")
    for ax in (roc_ax, rel_ax):
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def png_markdown(png: bytes, alt: str = "ROC and reliability") -> str:
    """A PNG embedded in Markdown as a data URI: the report and the model card are self-contained, and
    the Dagster UI renders the image instead of a file path."""
    import base64

    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def _auroc_lines(x_label: str, title: str, xs: list, series: dict[str, tuple[list, dict]]) -> bytes:
    """One PNG of AUROC lines over time: `series` maps a legend label to (values, matplotlib style)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.2), dpi=90)
    for label, (values, style) in series.items():
        ax.plot(xs, values, label=label, **style)
    ax.set(title=title, xlabel=x_label, ylabel="AUROC")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def policy_backtest_png(rows: list[dict], policies: tuple[str, ...]) -> bytes:
    """Monthly realized AUROC of each policy as one line per policy."""
    return _auroc_lines("month", "Realized AUROC per month, same served events", [r["month"] for r in rows],
                        {p.replace("_", " "): ([r.get(p) for r in rows], {"marker": "o"}) for p in policies})


def by_partition_png(points: list[dict], title: str) -> bytes:
    """Realized AUROC of each scored partition against what its serving version promised, in data time."""
    from datetime import date

    return _auroc_lines("partition (data time)", title, [date.fromisoformat(p["partition"]) for p in points],
                        {f"{name} AUROC": ([p.get(name) for p in points], style) for name, style in
                         (("realized", {"linestyle": "none", "marker": "o", "markersize": 3}),
                          ("promised", {"linestyle": "-"}))})
