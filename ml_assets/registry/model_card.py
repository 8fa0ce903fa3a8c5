"""A model card per version: what the model is for, what it saw, how it performed, why it was
(or was not) promoted. Rendered after evaluation and stored beside the registry."""

from __future__ import annotations

from typing import Any

from ml_assets.evaluation.metrics import METRICS
from ml_assets.policies import markdown_table
from ml_assets.spec import UseCaseSpec


def render_model_card(spec: UseCaseSpec, record: dict[str, Any], evaluation: dict[str, Any]) -> str:
    ts = record["training_set"]
    overall = evaluation["metrics"]
    decision = evaluation["decision"]
    challenger = overall["challenger"]
    shadow = evaluation.get("shadow")
    lines = [
        f"# Model card: `{record['version']}` ({spec.name})",
        "",
        f"**Task.** {spec.description}",
        "",
        f"**Intended use.** {spec.intended_use or '-'}",
        "",
        "## Provenance",
        f"- weights sha256: `{record['sha256']}` ({record['size_bytes']} bytes, safetensors)",
        f"- trained by run `{record['run_id']}` at {record['registered_at']}; code version `{record['code_version']}`",
        f"- data window {ts['train_start']}..{ts['train_end']} (validation from {ts['validation_start']}); "
        f"{ts['rows_train']} training rows, {ts['rows_validation']} validation rows, positive rate "
        f"{ts['positive_rate']:.3f}",
        f"- training set `{ts['uri']}` sha256 `{ts['sha256'][:16]}...`",
        f"- champion challenged: `{record.get('challenged_champion') or 'none'}`",
        f"- hyperparameters: `{record['hyperparameters']}`",
        "",
        "## Features",
        f"- numeric: {', '.join(record['features']['numeric'])}",
        f"- categorical (embedded): {', '.join(record['features']['categorical'])}",
        f"- label: `{spec.label.expression}` where `{spec.label.known_when}`",
        "",
        f"## Evaluation on {evaluation['window'][0]}..{evaluation['window'][1]} (held out)",
        markdown_table([{"model": n, **m} for n, m in overall.items()], ["model", "rows", *METRICS]),
        "",
        f"Calibration: expected calibration error {challenger['ece']:.4f}, Brier score {challenger['brier']:.4f}; "
        f"decision threshold {record['threshold']} (max F1 on validation).",
        "",
        "### Per slice (challenger)",
        markdown_table(evaluation.get("slices", {}).get("challenger", []),
                       ["slice", "value", "rows", "auroc", "f1", "ece"]),
        "",
    ]
    if shadow:
        lines += ["## Shadow scoring against the champion", shadow_summary(shadow), ""]
    lines += [
        f"## Promotion decision: {'PROMOTED' if decision['promote'] else 'REFUSED'} "
        f"(reference: {decision['reference']})",
        *[f"- PASS {r}" for r in decision["passed"]],
        *[f"- FAIL {r}" for r in decision["failed"]],
        "",
        "## Known limitations",
        *[f"- {item}" for item in spec.known_limitations],
    ]
    return "\n".join(lines)


def shadow_summary(shadow: dict[str, Any]) -> str:
    head = (f"Challenger scored {shadow['rows']} rows of the latest prediction partitions "
            f"({shadow['days'][0]}..{shadow['days'][-1]}) served by `{', '.join(shadow['served_by'])}`: "
            f"decisions agree on {shadow['agreement']:.1%}, mean |Δp| {shadow['mean_abs_diff']:.4f}, "
            f"challenger-only flags {shadow['challenger_only']}, champion-only flags {shadow['champion_only']}.")
    return head + "\n\n" + markdown_table(shadow["by_slice"])
