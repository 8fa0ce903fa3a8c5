"""`mlp lineage`: the recorded history as OpenLineage run events, the ecosystem's lineage standard
(Marquez, DataHub, OpenMetadata, Atlas read it).

Built from the instance with `openlineage-python` (its file transport writes one JSON event per
line), not by a live hook: `dagster-openlineage` 0.2 emits per-asset events from a sensor but knows
nothing of partitions' files and hashes, and `openlineage-dagster` does not run on Dagster 1.13.
Per Dagster run: a START and a COMPLETE/FAIL event; outputs are the assets it materialized, inputs
the upstream materializations they recorded reading (per-partition input receipts, or Dagster's own
input event pointers). Each dataset carries the standard `version` facet (the Dagster data version)
and a `mlPlatform_partitions` facet: every partition's storage id, file and sha256, so a consumer can
verify bytes the way `mlp trace` does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attr
from openlineage.client import event_v2 as ol
from openlineage.client.facet_v2 import (
    DatasetFacet,
    dataset_version_dataset,
    error_message_run,
    job_type_job,
    tags_run,
)

from ml_assets.audit.ledger import Ledger, Materialization
from ml_assets.keys import USE_CASE_TAG

PRODUCER = "https://github.com/ml-data-platform/ml-data-platform/tree/main/ml_assets/audit/openlineage.py"
PARTITIONS_FACET = "mlPlatform_partitions"
PARTITIONS_SCHEMA = ("https://github.com/ml-data-platform/ml-data-platform/tree/main/docs/openlineage/"
                     "PartitionsDatasetFacet.json")
NAMESPACE = "dagster://ml_platform"
INPUT_POINTER_TAG = "dagster/input_event_pointer/"
DATA_VERSION_TAG = "dagster/data_version"


@attr.define
class PartitionsDatasetFacet(DatasetFacet):
    """The partitions of a dataset this run wrote or read: storage id, file and sha256 of each."""

    partitions: list[dict[str, Any]] = attr.field(factory=list)

    @staticmethod
    def _get_schema() -> str:
        return PARTITIONS_SCHEMA


def _time(ts: float | None) -> str:
    return datetime.fromtimestamp(ts or 0, UTC).isoformat()


def _entry(m: Materialization) -> dict[str, Any]:
    out: dict[str, Any] = {"storageId": m.storage_id, "runId": m.run_id}
    for field, name in (("partition", m.partition), ("uri", m.metadata.get("uri") or m.metadata.get("ref_uri")),
                        ("sha256", m.metadata.get("sha256") or m.metadata.get("ref_sha256"))):
        if name is not None:
            out[field] = str(name)
    return out


def _dataset(cls: type, name: str, materializations: list[Materialization]) -> Any:
    facets: dict[str, Any] = {PARTITIONS_FACET: PartitionsDatasetFacet(
        partitions=[_entry(m) for m in materializations], producer=PRODUCER)}
    versions = {m.tags.get(DATA_VERSION_TAG) for m in materializations} - {None}
    if len(versions) == 1:
        facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=versions.pop(),
                                                                                producer=PRODUCER)
    return cls(namespace=NAMESPACE, name=name, facets=facets)


def _asset_keys(ledger: Ledger) -> list[Any]:
    return sorted((k for k in ledger.instance.get_asset_keys() if k.path and k.path[0] == ledger.use_case),
                  key=lambda k: k.to_user_string())


def run_events(ledger: Ledger) -> list[ol.RunEvent]:
    """START and COMPLETE/FAIL events of every run of the use case, oldest first."""
    import dagster as dg

    by_run: dict[str, list[Materialization]] = {}
    by_storage: dict[int, Materialization] = {}
    for key in _asset_keys(ledger):
        for m in ledger.all(key):
            by_run.setdefault(m.run_id, []).append(m)
            by_storage[m.storage_id] = m
    records = ledger.instance.get_run_records(dg.RunsFilter(tags={USE_CASE_TAG: ledger.use_case}), ascending=True)
    events = []
    for record in records:
        run = record.dagster_run
        outputs = by_run.get(run.run_id, [])
        grouped_out: dict[str, list[Materialization]] = {}
        for m in outputs:
            grouped_out.setdefault(m.key.to_user_string(), []).append(m)
        read = _inputs_of(outputs, by_storage)
        tags = [tags_run.TagsRunFacetFields(key=k, value=str(v), source="DAGSTER")
                for k, v in sorted(run.tags.items()) if k.startswith(("ml/", "dagster/sensor_name", USE_CASE_TAG))]
        run_facets: dict[str, Any] = {"tags": tags_run.TagsRunFacet(tags=tags, producer=PRODUCER)}
        job = ol.Job(namespace=NAMESPACE, name=run.job_name, facets={
            "jobType": job_type_job.JobTypeJobFacet(processingType="BATCH", integration="DAGSTER", jobType="JOB",
                                                   producer=PRODUCER)})
        ins = [_dataset(ol.InputDataset, n, ms) for n, ms in sorted(read.items())]
        outs = [_dataset(ol.OutputDataset, n, ms) for n, ms in sorted(grouped_out.items())]
        start = record.start_time or record.create_timestamp.timestamp()
        events.append(ol.RunEvent(eventType=ol.RunState.START, eventTime=_time(start), producer=PRODUCER,
                                  run=ol.Run(runId=run.run_id, facets=run_facets), job=job, inputs=ins, outputs=[]))
        if run.status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
            state = {dg.DagsterRunStatus.SUCCESS: ol.RunState.COMPLETE,
                     dg.DagsterRunStatus.FAILURE: ol.RunState.FAIL}.get(run.status, ol.RunState.ABORT)
            facets = dict(run_facets)
            if state is ol.RunState.FAIL:
                facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                    message=f"Dagster run {run.run_id} failed (its step errors are in the run's event log)",
                    programmingLanguage="python", producer=PRODUCER)
            events.append(ol.RunEvent(eventType=state, eventTime=_time(record.end_time or start), producer=PRODUCER,
                                      run=ol.Run(runId=run.run_id, facets=facets), job=job, inputs=ins,
                                      outputs=outs))
    return events


def _inputs_of(outputs: list[Materialization], by_storage: dict[int, Materialization]
               ) -> dict[str, list[Materialization]]:
    """Upstream materializations the run's outputs recorded reading (deduplicated by storage id)."""
    ids: set[int] = set()
    for m in outputs:
        for parts in (m.metadata.get("input_receipts") or {}).values():
            ids.update(int(s) for s in parts.values() if s is not None)
        ids.update(int(v) for k, v in m.tags.items() if k.startswith(INPUT_POINTER_TAG) and str(v).isdigit())
    own = {m.storage_id for m in outputs}
    grouped: dict[str, list[Materialization]] = {}
    for storage_id in sorted(ids - own):
        if storage_id in by_storage:
            up = by_storage[storage_id]
            grouped.setdefault(up.key.to_user_string(), []).append(up)
    return grouped


def export(ledger: Ledger, path: Path) -> int:
    """Write the events as JSON lines through openlineage-python's file transport; returns the count."""
    from openlineage.client import OpenLineageClient
    from openlineage.client.transport.file import FileConfig, FileTransport

    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    client = OpenLineageClient(transport=FileTransport(FileConfig(log_file_path=str(path), append=True)))
    events = run_events(ledger)
    for event in events:
        client.emit(event)
    return len(events)
