"""`mlp serve --use-case NAME [--host --port]`: the online scoring app on uvicorn, one worker process
(scale out with more processes or pods: each loads its own verified snapshot and state)."""

from __future__ import annotations

from typing import Any

from ml_assets.serving.app import ServingConfig


def build_app(use_case: str | None, config: ServingConfig | None = None, instance: Any = None) -> Any:
    """The app for a use case of this code location, on the instance in $DAGSTER_HOME and the lakehouse
    and registry the code location's resources name."""
    import dagster as dg

    from ml_assets.definitions import defs
    from ml_assets.serving.app import create_app
    from ml_assets.spec.catalog import use_case as find

    spec = find(use_case)
    checks = [k for k in defs.resolve_asset_graph().asset_check_keys if k.asset_key.path[0] == spec.name]
    return create_app(spec, instance or dg.DagsterInstance.get(), defs.resources["lakehouse"],
                      defs.resources["model_registry"], config, checks)


def build_state(use_case: str | None, partition: str | None = None, instance: Any = None,
                platform: Any = None) -> str:
    """Materialize `serving_state` (a recorded run of the `<use case>__serving` job) for `partition`, by
    default `default_state_partition`. Returns the partition. `platform`: run through it (the demo's)
    instead of this code location on the instance in $DAGSTER_HOME."""
    import dagster as dg

    from ml_assets.errors import MissingDataError
    from ml_assets.keys import UseCaseJobs
    from ml_assets.ops.runner import Platform, check_partition
    from ml_assets.spec.catalog import use_case as find

    spec = find(use_case)
    if platform is None:
        from ml_assets.definitions import defs

        platform = Platform(defs, instance or dg.DagsterInstance.get(), log_level="ERROR")
    partition = partition or default_state_partition(spec, platform.instance)
    check_partition(spec, partition, "--build-state")
    result = platform.run(UseCaseJobs(spec.name).serving, first=partition, raise_on_error=False)
    if not result.success:
        raise MissingDataError(f"serving state of {partition} not built (run {result.run_id}): "
                               + Platform.failure_text(result))
    return partition


def default_state_partition(spec: Any, instance: Any) -> str:
    """The partition whose events the newest labels serve: newest labelled partition + label delay (capped
    at the use case's last partition)."""
    from ml_assets.errors import MissingDataError
    from ml_assets.keys import UseCaseKeys

    labelled = instance.get_materialized_partitions(UseCaseKeys(spec.name).labels)
    if not labelled:
        raise MissingDataError(f"{spec.name}: no labels are materialized yet; ingest first")
    newest = spec.shift(spec.partition_range(max(labelled), max(labelled))[0], spec.label_delay)
    return min(newest, spec.partitions_end).isoformat()


def serve(use_case: str | None, host: str = "127.0.0.1", port: int = 8080, config: ServingConfig | None = None,
          log_level: str = "warning") -> int:
    import uvicorn

    app = build_app(use_case, config)
    uvicorn.run(app, host=host, port=port, workers=1, log_level=log_level.lower(), access_log=False,
                timeout_graceful_shutdown=10)
    return 0
