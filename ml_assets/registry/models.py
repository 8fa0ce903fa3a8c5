"""Loading models the way every reader must: only approved, sha256-verified weights.

`production_pointer` trusts the pointer that the newest `production_model` materialization recorded
(its uri and sha256 in the instance), never a pointer file on its own: a pointer written outside a
run, edited, or left by a run that died before recording it fails closed with the reason.
"""

from __future__ import annotations

from typing import Any

from ml_assets import lineage
from ml_assets.errors import IntegrityError
from ml_assets.keys import UseCaseKeys
from ml_assets.records import ProductionPointer, parse_record


def load_version(registry: Any, use_case: str, version: str, approved_sha256: str | None = None,
                 record_sha256: str | None = None) -> Any:
    from ml_assets.training.train import from_safetensors

    return from_safetensors(registry.artifact_bytes(use_case, version, approved_sha256, record_sha256))


def production_pointer(instance: Any, registry: Any, use_case: str) -> ProductionPointer | None:
    """The production pointer as recorded by Dagster (None before the first promotion)."""
    latest = lineage.recorded_latest(instance, UseCaseKeys(use_case).production_model)
    newest_file = registry.production(use_case)
    if latest is None or "pointer_uri" not in latest[1]:
        if newest_file is not None:
            raise IntegrityError(f"{use_case}: production pointer {newest_file.sequence} ({newest_file.version}) "
                                 "exists but no production_model materialization recorded it")
        return None
    _, meta = latest
    uri, sha = str(meta["pointer_uri"]), str(meta["pointer_sha256"])
    pointer = parse_record(ProductionPointer, registry.lakehouse.read_bytes(uri, sha, what=f"{use_case} production "
                                                                             "pointer"), uri)
    if newest_file is not None and newest_file.sequence != pointer.sequence:
        raise IntegrityError(f"{use_case}: pointer file sequence {newest_file.sequence} ({newest_file.version}) is "
                             f"newer than the recorded production pointer {pointer.sequence} ({pointer.version}); it "
                             "was not written by a recorded run. Re-run the rollback job to record a decision.")
    return pointer


def load_production(instance: Any, registry: Any, use_case: str) -> tuple[ProductionPointer, Any] | None:
    """The serving model: the recorded pointer's version, loaded only if its weights' sha256 is the
    one the pointer approved."""
    pointer = production_pointer(instance, registry, use_case)
    if pointer is None:
        return None
    return pointer, load_version(registry, use_case, pointer.version, pointer.sha256, pointer.record_sha256)
