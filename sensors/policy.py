"""Pure retraining policy: given evidence in data time (partitions of the use case's cadence), should
we retrain, and on which window? Free of Dagster, so every decision is easy to test and explain."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import Any

from ml_assets.keys import DATA_PARTITION_TAG, EVIDENCE_TAG, POLICY_TAG, TRIGGER_TAG, UseCaseKeys, op_name
from ml_assets.spec import UseCaseSpec


@dataclass(frozen=True)
class RetrainPlan:
    train_start: str
    train_end: str
    eval_start: str
    eval_end: str
    validation_partitions: int


def partitions_between(spec: UseCaseSpec, earlier: date, later: date) -> int:
    """How many partitions `later` is after `earlier` (0 when the same, negative when before)."""
    if later < earlier:
        return -partitions_between(spec, later, earlier)
    return len(spec.partition_range(earlier, later)) - 1


def retrain_plan(spec: UseCaseSpec, newest: date) -> RetrainPlan | None:
    """Train on the latest partitions whose labels are known; hold out the last `retrain_eval` of
    them for evaluation. None while there is not enough labelled history."""
    mon = spec.monitoring
    known = spec.shift(newest, -spec.label_delay)
    eval_start = spec.shift(known, -(int(mon.retrain_eval) - 1))
    train_end = spec.shift(eval_start, -1)
    train_start = max(spec.partitions_start, spec.shift(known, -(int(mon.retrain_window) - 1)))
    validation = int(spec.training.validation)
    if partitions_between(spec, train_start, train_end) + 1 < 2 * validation:
        return None
    return RetrainPlan(train_start.isoformat(), train_end.isoformat(), eval_start.isoformat(), known.isoformat(),
                       validation)


def bootstrap_plan(spec: UseCaseSpec) -> RetrainPlan:
    """The first model's windows, as the use case declares them."""
    return RetrainPlan(spec.training.start.isoformat(), spec.training.end.isoformat(),
                       spec.evaluation.start.isoformat(), spec.evaluation.end.isoformat(),
                       int(spec.training.validation))


def in_cooldown(spec: UseCaseSpec, newest: date, last_trained_end: date | None) -> bool:
    """Data-time cooldown since the end of the latest trained window (promoted or not): the held-out
    partitions of that training plus `cooldown` partitions."""
    if last_trained_end is None:
        return False
    mon = spec.monitoring
    return partitions_between(spec, last_trained_end, newest) < int(mon.cooldown) + int(mon.retrain_eval)


def drift_streak(spec: UseCaseSpec, flags: dict[str, bool], newest: str) -> list[str]:
    """The drifted partitions in a row ending at `newest` (oldest first; empty when `newest` is not drifted)."""
    streak, current = [], date.fromisoformat(newest)
    while flags.get(current.isoformat()):
        streak.append(current.isoformat())
        current = spec.shift(current, -1)
    return streak[::-1]


def fired_columns(meta: dict[str, Any]) -> dict[str, list[str]]:
    """A drift report's fired columns (column -> the partitions that exceeded), from its metadata; a
    share-rule firing (or an older report) is named by its alarm partitions under "*share"."""
    columns = {c: sorted(days) for c, days in (meta.get("fired_columns") or {}).items()}
    named = {d for days in columns.values() for d in days}
    rest = sorted(set(meta.get("alarm_partitions") or []) - named)
    return {**columns, "*share": rest} if rest else columns


def drift_evidence(spec: UseCaseSpec, fired: dict[str, dict[str, list[str]]]) -> dict[str, Any]:
    """What a drift retrain names: per column, the partitions that exceeded its threshold in the
    reports of the streak; and all those partitions. As runs of consecutive partitions ("a..b"), so
    a long catch-up streak still fits in a run tag."""
    columns: dict[str, set[str]] = {}
    for per_column in fired.values():
        for column, days in per_column.items():
            columns.setdefault(column, set()).update(days)
    every = set().union(*columns.values()) if columns else set()
    return {"alarm_partitions": partition_runs(spec, every),
            "fired_columns": {c: partition_runs(spec, days) for c, days in sorted(columns.items())}}


def partition_runs(spec: UseCaseSpec, partitions: set[str] | list[str]) -> list[str]:
    """Sorted partition keys as runs of consecutive partitions: "a..b", or "a" alone."""
    runs: list[list[str]] = []
    for key in sorted(set(partitions)):
        if runs and spec.shift(date.fromisoformat(runs[-1][-1]), 1).isoformat() == key:
            runs[-1].append(key)
        else:
            runs.append([key])
    return [r[0] if len(r) == 1 else f"{r[0]}..{r[-1]}" for r in runs]


def model_age(spec: UseCaseSpec, newest_scored: date, champion_train_end: date) -> int:
    """Partitions from the end of the champion's training window to the newest scored partition."""
    return partitions_between(spec, champion_train_end, newest_scored)


def run_tags(trigger: str, evidence: dict[str, Any], policy: dict[str, Any], data_partition: str) -> dict[str, str]:
    return {
        TRIGGER_TAG: trigger,
        EVIDENCE_TAG: json.dumps(evidence, sort_keys=True, default=str)[:4000],
        POLICY_TAG: json.dumps(policy, sort_keys=True, default=str)[:2000],
        DATA_PARTITION_TAG: data_partition,
    }


def train_run_config(spec: UseCaseSpec, plan: RetrainPlan) -> dict[str, Any]:
    keys = UseCaseKeys(spec.name)
    return {"ops": {
        op_name(keys.training_set): {"config": {"train_start": plan.train_start, "train_end": plan.train_end,
                                                "validation_partitions": plan.validation_partitions}},
        op_name(keys.model_evaluation): {"config": {"start": plan.eval_start, "end": plan.eval_end}},
    }}
