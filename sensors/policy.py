"""Pure retraining policy: given evidence in data time, should we retrain, and on which window?
Kept free of Dagster so every decision is easy to test and explain."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from ml_assets.spec import UseCaseSpec

TRIGGER_TAG = "ml/trigger"
EVIDENCE_TAG = "ml/evidence"
POLICY_TAG = "ml/policy"
DATA_DAY_TAG = "ml/data_day"


@dataclass(frozen=True)
class RetrainPlan:
    train_start: str
    train_end: str
    eval_start: str
    eval_end: str


def retrain_plan(spec: UseCaseSpec, newest_day: date) -> RetrainPlan | None:
    """Train on the latest labelled days, hold out the last `retrain_eval_days` for evaluation."""
    mon = spec.monitoring
    known = newest_day - timedelta(days=spec.label.delay_days)  # labels of later days are not known yet
    eval_start = known - timedelta(days=mon.retrain_eval_days - 1)
    train_end = eval_start - timedelta(days=1)
    train_start = max(date.fromisoformat(spec.partitions_start),
                      known - timedelta(days=mon.retrain_window_days - 1))
    if (train_end - train_start).days + 1 < spec.training.validation_days + 7:
        return None  # not enough labelled history yet
    return RetrainPlan(train_start.isoformat(), train_end.isoformat(), eval_start.isoformat(), known.isoformat())


def in_cooldown(spec: UseCaseSpec, newest_day: date, last_trained_end: date | None) -> bool:
    """Data-time cooldown since the end of the latest trained window (promoted or not)."""
    if last_trained_end is None:
        return False
    return (newest_day - last_trained_end).days < spec.monitoring.cooldown_days + spec.monitoring.retrain_eval_days


def consecutive_drifted(flags: dict[str, bool], newest_day: str) -> int:
    """How many days in a row, ending at `newest_day`, were drifted."""
    count, day = 0, date.fromisoformat(newest_day)
    while flags.get(day.isoformat()):
        count += 1
        day -= timedelta(days=1)
    return count


def model_age_days(newest_scored: date, champion_train_end: date) -> int:
    return (newest_scored - champion_train_end).days


def run_tags(trigger: str, evidence: dict[str, Any], policy: dict[str, Any], data_day: str) -> dict[str, str]:
    return {
        TRIGGER_TAG: trigger,
        EVIDENCE_TAG: json.dumps(evidence, sort_keys=True, default=str)[:4000],
        POLICY_TAG: json.dumps(policy, sort_keys=True)[:1000],
        DATA_DAY_TAG: data_day,
    }


def train_run_config(spec: UseCaseSpec, plan: RetrainPlan) -> dict[str, Any]:
    return {"ops": {
        f"{spec.name}__training_set": {"config": {"train_start": plan.train_start, "train_end": plan.train_end}},
        f"{spec.name}__model_evaluation": {"config": {"start": plan.eval_start, "end": plan.eval_end}},
    }}
