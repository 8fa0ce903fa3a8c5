"""The model registry: immutable versions and an append-only production pointer, in the lakehouse.

No extra server: the registry's files live beside the data, and every change to them is made by a
Dagster run (training registers, `production_model` promotes or rolls back), so the run and
materialization history is the audit log. Layout under `<root>/<use_case>/registry/`:

    artifacts/<version>/model.safetensors   weights + preprocessing (no pickle)
    versions/<version>.json                 immutable VersionRecord (sha256, data window, inputs, metrics)
    pointers/<sequence>.json                immutable ProductionPointer; the highest sequence serves
    cards/<version>/<sha>.md                model cards, one file per rendering

Nothing here is ever overwritten: a pointer change creates the next sequence file exclusively, so
two concurrent changes cannot both win (the loser gets a RegistryError and changes nothing), and
each pointer records the one it replaced. Version ids are validated before they reach a path.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import dagster as dg

from ml_assets.errors import IntegrityError, RegistryError
from ml_assets.records import ProductionPointer, VersionRecord, check_version_id, parse_record
from resources.lakehouse import LakehouseResource, sha256_bytes

_SEQUENCE = re.compile(r"^(\d{6})\.json$")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class ModelRegistryResource(dg.ConfigurableResource):
    lakehouse: LakehouseResource

    def _uri(self, use_case: str, *parts: str) -> str:
        return self.lakehouse.uri(use_case, "registry", *parts)

    def record_uri(self, use_case: str, version: str) -> str:
        return self._uri(use_case, "versions", f"{check_version_id(version)}.json")

    # ---- versions ----------------------------------------------------------------------------
    def register(self, use_case: str, artifact: bytes, fields: dict) -> tuple[VersionRecord, str]:
        """Store an artifact and its record; the version id is derived from the weights' sha256.
        Returns the record and the sha256 of its stored JSON.

        Registering identical bytes again (a reproduction) returns the existing record.
        """
        sha = sha256_bytes(artifact)
        version = f"v-{sha[:12]}"
        record_uri = self.record_uri(use_case, version)
        if self.lakehouse.exists(record_uri):
            data = self.lakehouse.read_bytes(record_uri, None, what=f"registry record {version}")
            existing = parse_record(VersionRecord, data, record_uri)
            if existing.sha256 != sha:  # pragma: no cover - a sha prefix collision
                raise RegistryError(f"version {version} exists with a different sha256")
            return existing, sha256_bytes(data)
        artifact_uri = self._uri(use_case, "artifacts", version, "model.safetensors")
        self.lakehouse.write_bytes(artifact_uri, artifact)
        record = VersionRecord(**fields, version=version, use_case=use_case, sha256=sha, artifact_uri=artifact_uri,
                               size_bytes=len(artifact), registered_at=now_iso())
        receipt = self.lakehouse.write_bytes(record_uri, record.to_json())  # last: the version exists only now
        return record, receipt.sha256

    def get(self, use_case: str, version: str, record_sha256: str | None = None) -> VersionRecord:
        """A version's record; verified when the caller holds its recorded sha256 (the production
        pointer does, the candidate_model materialization does)."""
        return parse_record(VersionRecord, self.record_bytes(use_case, version, record_sha256),
                            self.record_uri(use_case, version))

    def record_bytes(self, use_case: str, version: str, record_sha256: str | None = None) -> bytes:
        uri = self.record_uri(use_case, version)
        if not self.lakehouse.exists(uri):
            known = [r.version for r in self.versions(use_case)]
            raise RegistryError(f"model version {version!r} is not registered for {use_case!r}; known: {known}")
        return self.lakehouse.read_bytes(uri, record_sha256, what=f"registry record {version}")

    def scan(self, use_case: str) -> tuple[list[VersionRecord], dict[str, str]]:
        """Every well-formed record (oldest first), and the problem of each malformed one by file."""
        records, problems = [], {}
        for uri in self.lakehouse.list(self._uri(use_case, "versions")):
            if not uri.endswith(".json"):
                continue
            try:
                record = parse_record(VersionRecord, self.lakehouse.read_bytes(uri, None), uri)
                if not uri.endswith(f"/{record.version}.json"):
                    raise RegistryError(f"{uri}: holds version {record.version}, not the one its name says")
                records.append(record)
            except RegistryError as exc:
                problems[uri] = str(exc)
        return sorted(records, key=lambda r: (r.registered_at, r.version)), problems

    def versions(self, use_case: str) -> list[VersionRecord]:
        return self.scan(use_case)[0]

    def artifact_bytes(self, use_case: str, version: str, approved_sha256: str | None = None,
                       record_sha256: str | None = None) -> bytes:
        """The weights, verified against the record's sha256 and, when given, the sha256 the production
        pointer approved: a tampered, truncated or swapped file is never returned."""
        record = self.get(use_case, version, record_sha256)
        if approved_sha256 is not None and record.sha256 != approved_sha256:
            raise IntegrityError(f"model {version}: its registry record says sha256 {record.sha256}, but the "
                                 f"production pointer approved {approved_sha256}; the record was edited")
        if not record.sha256.startswith(version.removeprefix("v-")):
            raise IntegrityError(f"model {version}: record sha256 {record.sha256} does not match the version id")
        return self.lakehouse.read_bytes(record.artifact_uri, record.sha256, what=f"model {version} weights")

    # ---- model cards ---------------------------------------------------------------------------
    def write_model_card(self, use_case: str, version: str, markdown: str) -> tuple[str, str]:
        data = markdown.encode()
        folder = self._uri(use_case, "cards", check_version_id(version))
        receipt = self.lakehouse.write_content_addressed(folder, data, "md")
        return receipt.uri, receipt.sha256

    # ---- production pointer ------------------------------------------------------------------
    def pointers(self, use_case: str) -> list[ProductionPointer]:
        """The pointer history, oldest first (each file validated)."""
        out = []
        for uri in self.lakehouse.list(self._uri(use_case, "pointers")):
            if _SEQUENCE.match(uri.rsplit("/", 1)[-1]):
                out.append(parse_record(ProductionPointer, self.lakehouse.read_bytes(uri, None), uri))
        return out

    def production(self, use_case: str) -> ProductionPointer | None:
        history = self.pointers(use_case)
        return history[-1] if history else None

    def pointer_uri(self, use_case: str, sequence: int) -> str:
        return self._uri(use_case, "pointers", f"{sequence:06d}.json")

    def set_production(self, use_case: str, version: str, *, run_id: str, action: str, reason: str,
                       actor: str, expected_sequence: int | None = None) -> tuple[ProductionPointer, str]:
        """Point production at `version`: a new pointer file with the next sequence number, created
        exclusively (compare-and-swap). `expected_sequence` is the sequence the caller decided on; if
        another change landed since, nothing is written and RegistryError says so."""
        record_data = self.record_bytes(use_case, version)
        record = parse_record(VersionRecord, record_data, self.record_uri(use_case, version))
        previous = self.production(use_case)
        current = previous.sequence if previous else 0
        if expected_sequence is not None and expected_sequence != current:
            raise RegistryError(f"production pointer of {use_case} changed concurrently (now sequence {current}, "
                                f"version {previous.version if previous else None}); nothing was changed")
        pointer = ProductionPointer(
            sequence=current + 1, version=version, sha256=record.sha256, record_sha256=sha256_bytes(record_data),
            action=action, reason=reason, actor=actor,
            run_id=run_id, since=now_iso(), previous_version=previous.version if previous else None,
            previous_sequence=previous.sequence if previous else None)
        try:
            receipt = self.lakehouse.write_bytes(self.pointer_uri(use_case, pointer.sequence), pointer.to_json(),
                                                 exclusive=True)
        except FileExistsError:
            raise RegistryError(f"production pointer of {use_case} changed concurrently (sequence "
                                f"{pointer.sequence} was taken by another run); nothing was changed") from None
        return pointer, receipt.sha256
