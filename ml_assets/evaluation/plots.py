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


def policy_backtest_png(rows: list[dict], policies: tuple[str, ...]) -> bytes:
    """Monthly realized AUROC of each policy as one line per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.2), dpi=90)
    months = [r["month"] for r in rows]
    for policy in policies:
        ax.plot(months, [r.get(policy) for r in rows], marker="o", label=policy.replace("_", " "))
    ax.set(title="Realized AUROC per month, same served events", xlabel="month", ylabel="AUROC")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def by_partition_png(points: list[dict], title: str) -> bytes:
    """Realized AUROC of each scored partition against what its serving version promised, in data time."""
    import matplotlib

    matplotlib.use("Agg")
    from datetime import date

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.2), dpi=90)
    days = [date.fromisoformat(p["partition"]) for p in points]
    for name, style in (("realized", "o"), ("promised", "-")):
        ax.plot(days, [p.get(name) for p in points], style, markersize=3, label=f"{name} AUROC")
    ax.set(title=title, xlabel="partition (data time)", ylabel="AUROC")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()
