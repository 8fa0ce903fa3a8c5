"""Launch the platform's jobs as real Dagster runs (recorded in the instance, visible in the UI).

Runs execute in this process: no per-run re-import of the code location, which is what makes a
local demo or a day-by-day replay fast. A partition range is one run (single-run backfill policy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from ml_assets.factory import job_names
from ml_assets.spec import UseCaseSpec


@dataclass
class Platform:
    defs: dg.Definitions
    instance: dg.DagsterInstance
    log_level: str = "INFO"

    def run(self, job: str, *, first: str | None = None, last: str | None = None,
            run_config: dict[str, Any] | None = None, tags: dict[str, str] | None = None,
            raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
        all_tags = {k: v for k, v in (tags or {}).items() if k != "dagster/partition"}
        if first is not None and (last or first) == first:
            all_tags["dagster/partition"] = first  # one day: an ordinary partitioned run
        elif first is not None:
            all_tags |= {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}
        config = {**(run_config or {}), "loggers": {"console": {"config": {"log_level": self.log_level}}}}
        return self.defs.resolve_job_def(job).execute_in_process(
            instance=self.instance, run_config=config, tags=all_tags, raise_on_error=raise_on_error
        )

    @staticmethod
    def failure_text(result: dg.ExecuteInProcessResult) -> str:
        """The user-facing error messages of a failed run's steps."""
        return "\n".join(e.event_specific_data.error.message for e in result.get_step_failure_events()
                         if e.event_specific_data and e.event_specific_data.error)

    # ---- the use case's standard jobs ---------------------------------------------------------
    def ingest(self, spec: UseCaseSpec, first: str, last: str, *, raise_on_error: bool = True,
               tags: dict[str, str] | None = None) -> dg.ExecuteInProcessResult:
        return self.run(job_names(spec).ingest, first=first, last=last, raise_on_error=raise_on_error, tags=tags)

    def train(self, spec: UseCaseSpec, *, train_start: str | None = None, train_end: str | None = None,
              eval_start: str | None = None, eval_end: str | None = None,
              tags: dict[str, str] | None = None) -> dg.ExecuteInProcessResult:
        """Train, evaluate and (if the gate passes) promote. A refused challenger is not an error."""
        prefix = spec.name
        config = {
            "ops": {
                f"{prefix}__training_set": {"config": {"train_start": train_start, "train_end": train_end}},
                f"{prefix}__model_evaluation": {"config": {"start": eval_start, "end": eval_end}},
            }
        }
        return self.run(job_names(spec).train, run_config=config, tags=tags, raise_on_error=False)

    def score(self, spec: UseCaseSpec, first: str, last: str, *, raise_on_error: bool = True,
              tags: dict[str, str] | None = None) -> dg.ExecuteInProcessResult:
        return self.run(job_names(spec).score, first=first, last=last, raise_on_error=raise_on_error, tags=tags)

    def reproduce(self, spec: UseCaseSpec, versions: list[str] | None = None) -> dg.ExecuteInProcessResult:
        config = {"ops": {f"{spec.name}__model_reproducibility": {"config": {"versions": versions}}}}
        return self.run(job_names(spec).reproduce, run_config=config)

    def rollback(self, spec: UseCaseSpec, version: str, reason: str, actor: str) -> dg.ExecuteInProcessResult:
        config = {"ops": {f"{spec.name}__production_model": {
            "config": {"pin_version": version, "reason": reason, "actor": actor}}}}
        tags = {"ml/actor": actor, "ml/reason": reason[:200]}
        return self.run(job_names(spec).rollback, run_config=config, tags=tags)
