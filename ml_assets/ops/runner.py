"""Launch the platform's jobs as real Dagster runs (recorded in the instance, visible in the UI).

Runs execute in this process: no per-run re-import of the code location, which is what makes a
local demo or a replay fast. A partition range is one run (single-run backfill policy). Each run is
tagged with this process as its worker, and dead workers' runs are reaped before every launch (run
monitoring does not watch in-process runs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from typing import Any

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from ml_assets.errors import PlatformError
from ml_assets.keys import ACTOR_TAG, REASON_TAG, SENSOR_NAME_TAG, UseCaseJobs, UseCaseKeys, op_name
from ml_assets.ops.liveness import reap_dead_runs, worker_tags
from ml_assets.spec import UseCaseSpec


class UsageError(PlatformError):
    """A command asked for something that does not exist (a partition, a version, a use case)."""


def check_partition(spec: UseCaseSpec, value: str | None, what: str = "partition") -> str | None:
    """A partition key of the use case (the first day of a partition inside its range), or UsageError."""
    if value is None:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{what} {value!r} is not a date (YYYY-MM-DD)") from None
    first = spec.partition_range(day, day)[0]
    if first != day:
        raise UsageError(f"{what} {value!r} is not a {spec.cadence} partition key of {spec.name!r} "
                         f"(the partition containing it starts {first})")
    if not spec.partitions_start <= day <= spec.partitions_end:
        raise UsageError(f"{what} {value!r} is outside {spec.name!r}'s partitions "
                         f"{spec.partitions_start}..{spec.partitions_end}")
    return value


def _login() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container with an arbitrary uid)
        return f"uid:{os.getuid()}"


@dataclass
class Platform:
    defs: dg.Definitions
    instance: dg.DagsterInstance
    log_level: str = "INFO"

    def run(self, job: str, *, first: str | None = None, last: str | None = None,
            run_config: dict[str, Any] | None = None, tags: dict[str, str] | None = None,
            raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
        reap_dead_runs(self.instance)
        all_tags = {k: v for k, v in (tags or {}).items() if k != "dagster/partition"} | worker_tags()
        if SENSOR_NAME_TAG not in all_tags:  # a person ran it: their name is the actor of any change it makes
            all_tags.setdefault("user", _login())
        if first is not None and (last or first) == first:
            all_tags["dagster/partition"] = first  # one partition: an ordinary partitioned run
        elif first is not None:
            all_tags |= {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}
        config = {**(run_config or {}), "loggers": {"console": {"config": {"log_level": self.log_level}}}}
        return self.defs.resolve_job_def(job).execute_in_process(
            instance=self.instance, run_config=config, tags=all_tags, raise_on_error=raise_on_error)

    @staticmethod
    def failure_text(result: dg.ExecuteInProcessResult) -> str:
        """The user-facing error messages of a failed run's steps (without Dagster's exception class prefix)."""
        prefix = "dagster._core.definitions.events.Failure: "
        return "\n".join(e.event_specific_data.error.message.removeprefix(prefix).strip()
                         for e in result.get_step_failure_events()
                         if e.event_specific_data and e.event_specific_data.error)

    # ---- the use case's standard jobs ---------------------------------------------------------
    def _range(self, spec: UseCaseSpec, first: str, last: str | None) -> tuple[str, str]:
        first = check_partition(spec, first, "first partition")
        last = check_partition(spec, last or first, "last partition")
        if last < first:
            raise UsageError(f"last partition {last} is before the first {first}")
        return first, last

    def ingest(self, spec: UseCaseSpec, first: str, last: str | None = None, *, raise_on_error: bool = True,
               tags: dict[str, str] | None = None) -> dg.ExecuteInProcessResult:
        first, last = self._range(spec, first, last)
        return self.run(UseCaseJobs(spec.name).ingest, first=first, last=last, raise_on_error=raise_on_error,
                        tags=tags)

    def daily(self, spec: UseCaseSpec, first: str, last: str | None = None, *, raise_on_error: bool = True,
              tags: dict[str, str] | None = None) -> dg.ExecuteInProcessResult:
        first, last = self._range(spec, first, last)
        return self.run(UseCaseJobs(spec.name).daily, first=first, last=last, raise_on_error=raise_on_error,
                        tags=tags)

    def train(self, spec: UseCaseSpec, *, train_start: str | None = None, train_end: str | None = None,
              eval_start: str | None = None, eval_end: str | None = None, validation: int | None = None,
              tags: dict[str, str] | None = None, run_config: dict[str, Any] | None = None
              ) -> dg.ExecuteInProcessResult:
        """Train, evaluate, decide and (if the gate passes) promote. A refusal is not an error."""
        keys = UseCaseKeys(spec.name)
        for value in (train_start, train_end, eval_start, eval_end):
            check_partition(spec, value)
        config = run_config or {"ops": {
            op_name(keys.training_set): {"config": {"train_start": train_start, "train_end": train_end,
                                                    "validation_partitions": validation}},
            op_name(keys.model_evaluation): {"config": {"start": eval_start, "end": eval_end}},
        }}
        return self.run(UseCaseJobs(spec.name).train, run_config=config, tags=tags, raise_on_error=False)

    def score(self, spec: UseCaseSpec, first: str, last: str | None = None, *, raise_on_error: bool = True,
              tags: dict[str, str] | None = None) -> dg.ExecuteInProcessResult:
        first, last = self._range(spec, first, last)
        return self.run(UseCaseJobs(spec.name).score, first=first, last=last, raise_on_error=raise_on_error,
                        tags=tags)

    def reproduce(self, spec: UseCaseSpec, versions: list[str] | None = None) -> dg.ExecuteInProcessResult:
        config = {"ops": {op_name(UseCaseKeys(spec.name).model_reproducibility): {"config": {"versions": versions}}}}
        return self.run(UseCaseJobs(spec.name).reproduce, run_config=config)

    def rollback(self, spec: UseCaseSpec, version: str, reason: str, actor: str, *,
                 raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
        config = {"ops": {op_name(UseCaseKeys(spec.name).production_model): {
            "config": {"pin_version": version, "reason": reason, "actor": actor}}}}
        tags = {ACTOR_TAG: actor, REASON_TAG: reason[:200]}
        return self.run(UseCaseJobs(spec.name).rollback, run_config=config, tags=tags, raise_on_error=raise_on_error)
