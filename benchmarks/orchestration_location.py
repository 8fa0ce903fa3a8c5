"""A code location for measuring Dagster's own per-step and per-run cost.

Why it imports the platform's code location: a multiprocess step starts a fresh Python that loads
the code location before running the step, so an honest per-step figure must pay the real import
(`ml_assets.definitions`), not an empty module's. The assets themselves do nothing, so whatever a run
costs is Dagster's (and the import's).

The jobs are reconstructable (module-level functions) so `dg.execute_job` can run them with the
multiprocess executor, which is what a run launched by the daemon or the UI uses by default.
"""

from __future__ import annotations

import dagster as dg

import ml_assets.definitions  # noqa: F401  (the real code location: what each step process imports)

STEPS = 4


@dg.asset
def step_1() -> int:
    return 1


@dg.asset
def step_2(step_1: int) -> int:
    return step_1 + 1


@dg.asset
def step_3(step_2: int) -> int:
    return step_2 + 1


@dg.asset
def step_4(step_3: int) -> int:
    return step_3 + 1


_ASSETS = [step_1, step_2, step_3, step_4]
defs = dg.Definitions(
    assets=_ASSETS,
    jobs=[
        dg.define_asset_job("one_step", selection=["step_1"], executor_def=dg.multiprocess_executor),
        dg.define_asset_job("chain", selection=[a.key for a in _ASSETS], executor_def=dg.multiprocess_executor),
    ],
)


def one_step() -> dg.JobDefinition:
    return defs.resolve_job_def("one_step")


def chain() -> dg.JobDefinition:
    return defs.resolve_job_def("chain")
