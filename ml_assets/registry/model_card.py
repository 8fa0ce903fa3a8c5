"""A model card per version: what the model is for, what it saw, how it performed, why it was (or was
not) promoted. Rendered by `promotion_decision`, stored (content-addressed) in the registry and
recorded as Markdown metadata of the decision. Pure."""

from __future__ import annotations

from typing import Any

from ml_assets.evaluation.metrics import METRICS
from ml_assets.records import Decision, VersionRecord
from ml_assets.spec import UseCaseSpec
from ml_assets.text import markdown_table


def render_model_card(spec: UseCaseSpec, record: VersionRecord, evaluation: dict[str, Any], decision: Decision,
                      *, plot_markdown: str = "") -> str:
    ts = record.training_set
    overall = evaluation["metrics"]
    challenger = overall["challenger"]
    shadow = evaluation.get("shadow")
    lines = [
        f"# Model card: `{record.version}` ({spec.name})",
        "",
        f"**Task.** {spec.description}",
        "",
        f"**Intended use.** {spec.intended_use or '-'}",
        "",
        "## Provenance",
        f"- weights sha256: `{record.sha256}` ({record.size_bytes} bytes, safetensors)",
        f"- trained by run `{record.run_id}` at {record.registered_at}; code version `{record.code_version}`",
        f"- data window {ts.train_start}..{ts.train_end} (validation from {ts.validation_start}); "
        f"{ts.rows_train} training rows, {ts.rows_validation} validation rows, positive rate {ts.positive_rate:.3f}",
        f"- training set `{ts.uri}` sha256 `{ts.sha256}`",
        f"- champion challenged: `{record.challenged_champion or 'none'}`",
        f"- hyperparameters: `{record.hyperparameters}`",
        "",
        "## Features",
        f"- numeric: {', '.join(record.features['numeric'])}",
        f"- categorical (embedded): {', '.join(record.features['categorical'])}",
        f"- protected attributes (never inputs): {', '.join(spec.protected_attributes) or 'none declared'}",
        f"- label: `{spec.label.expression}` where `{spec.label.known_when}`",
        "",
        f"## Evaluation on {evaluation['window'][0]}..{evaluation['window'][1]} (held out, "
        f"{evaluation['partitions']} partitions, {evaluation['rows']} events)",
        markdown_table([{"model": n, **m} for n, m in overall.items()], ["model", "rows", *METRICS]),
        "",
        f"Calibration: expected calibration error {_f(challenger['ece'])}, Brier score {_f(challenger['brier'])}; "
        f"decision threshold {record.threshold} (max F1 on validation).",
        "",
        "### Per slice (challenger)",
        markdown_table(evaluation["slices"].get("challenger", []), ["slice", "value", "rows", "auroc", "f1", "ece"]),
        "Too few rows to judge: " + (", ".join(f"{s['slice']}={s['value']} ({s['rows']})"
                                               for s in evaluation["small_slices"]) or "none"),
        "",
    ]
    for f in evaluation["fairness"].get("challenger", []):
        lines += [f"### Fairness: `{f['attribute']}`",
                  f"Demographic-parity difference {_f(f['demographic_parity_difference'])}, equalized-odds difference "
                  f"{_f(f['equalized_odds_difference'])}.",
                  markdown_table(f["groups"], ["group", "rows", "auroc", "flag_rate", "tpr", "fpr"]), ""]
    if shadow:
        lines += ["## Shadow scoring against the champion", shadow_summary(shadow), ""]
    lines += [
        f"## Promotion decision: {'PROMOTED' if decision.promote else 'REFUSED'} (reference: {decision.reference})",
        *[f"- {'PASS' if r.passed else 'FAIL'} {r.detail}" for r in decision.rules],
        "",
        "## Known limitations",
        *[f"- {item}" for item in spec.known_limitations],
    ]
    if plot_markdown:
        lines += ["", "## ROC and reliability (held-out period)", plot_markdown]
    return "\n".join(lines)


def shadow_summary(shadow: dict[str, Any]) -> str:
    head = (f"Challenger scored {shadow['rows']} events of the latest prediction partitions "
            f"({shadow['partitions'][0]}..{shadow['partitions'][-1]}) served by `{', '.join(shadow['served_by'])}`: "
            f"decisions agree on {shadow['agreement']:.1%}, mean |Δp| {shadow['mean_abs_diff']:.4f}, "
            f"challenger-only flags {shadow['challenger_only']}, champion-only flags {shadow['champion_only']}. "
            f"Per-event scores: `{shadow['file']['uri']}`.")
    return head + "\n\n" + markdown_table(shadow["by_slice"])


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
