"""Typed records that cross module borders and are stored as JSON: registry versions, the production
pointer, training-set references, receipts of what was read, gate decisions.

Every stored record is validated when it is read back: a malformed or edited file is reported by
name (`RegistryError`) instead of surfacing as a KeyError somewhere downstream. Pure: no Dagster.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

VERSION_PATTERN = re.compile(r"^v-[0-9a-f]{12}$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_json(self) -> bytes:
        """Canonical bytes: the same record always gives the same sha256."""
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True).encode()


def parse_record(cls: type[Record], data: bytes, where: str) -> Any:
    """A record from stored bytes, or RegistryError naming the file and the first problems."""
    from ml_assets.errors import RegistryError

    try:
        return cls.model_validate_json(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors()[:3])
        raise RegistryError(f"{where}: malformed {cls.__name__} ({problems})") from None


def check_version_id(version: str) -> str:
    """A version id as the registry mints it (`v-` + 12 hex digits of the weights' sha256); anything
    else never reaches a file path."""
    from ml_assets.errors import RegistryError

    if not isinstance(version, str) or not VERSION_PATTERN.match(version):
        raise RegistryError(f"{version!r} is not a model version id (expected 'v-' followed by 12 hex digits)")
    return version


class Receipt(Record):
    """One stored file that was read or written: which materialization recorded it, and its hash."""

    asset: str
    partition: str | None = None
    uri: str
    sha256: str
    storage_id: int | None = None
    run_id: str | None = None


class TrainingSetRef(Record):
    train_start: str
    train_end: str
    validation_start: str
    uri: str
    sha256: str
    rows: int
    rows_train: int
    rows_validation: int
    positive_rate: float
    inputs: dict[str, dict[str, Receipt]] = Field(description="asset -> partition -> receipt of what was read")


class ArtifactRef(Record):
    uri: str
    sha256: str


class VersionRecord(Record):
    """An immutable registered model version."""

    version: str
    use_case: str
    sha256: str
    artifact_uri: str
    size_bytes: int
    registered_at: str
    run_id: str
    code_version: str
    hyperparameters: dict[str, Any]
    features: dict[str, list[str]]
    training_set: TrainingSetRef
    threshold: float
    best_epoch: int
    training_curve: list[dict[str, float]]
    challenged_champion: str | None = None
    reference_profile: ArtifactRef | None = None
    drift_calibration: ArtifactRef | None = Field(None, description="Per-column drift thresholds calibrated on the "
                                                  "reference's own partitions; absent in older records.")

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        if not VERSION_PATTERN.match(v):
            raise ValueError(f"{v!r} is not a version id")
        return v

    @field_validator("sha256")
    @classmethod
    def _sha(cls, v: str) -> str:
        if not SHA256_PATTERN.match(v):
            raise ValueError("not a sha256 hex digest")
        return v


class ProductionPointer(Record):
    """Which version serves. Each change is a new immutable file with the next sequence number."""

    sequence: int
    version: str
    sha256: str = Field(description="The weights' sha256 the gate (or the person pinning) approved.")
    record_sha256: str | None = Field(None, description="The version record's sha256 when it was approved.")
    action: Literal["promote", "rollback"]
    reason: str
    actor: str
    run_id: str
    since: str
    previous_version: str | None = None
    previous_sequence: int | None = None


class RuleResult(Record):
    name: str
    passed: bool
    detail: str
    numbers: dict[str, float | int | str | None] = Field(default_factory=dict)


class Decision(Record):
    outcome: Literal["promote", "refuse"]
    reference: Literal["champion", "baseline"]
    rules: list[RuleResult]

    @property
    def promote(self) -> bool:
        return self.outcome == "promote"

    @property
    def passed(self) -> list[str]:
        return [r.detail for r in self.rules if r.passed]

    @property
    def failed(self) -> list[str]:
        return [r.detail for r in self.rules if not r.passed]
