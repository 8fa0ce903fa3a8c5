"""The model registry: immutable versions and a production pointer, stored in the lakehouse.

No extra server: the registry's files live beside the data, and every change to them is made by a
Dagster run (training registers, `production_model` promotes or rolls back), so the run and
materialization history is the audit log. Layout under `<root>/<use_case>/registry/`:

    artifacts/<version>/model.safetensors   weights + preprocessing (no pickle)
    versions/<version>.json                 immutable record: sha256, data window, inputs, metrics
    production.json                         which version serves, since when, set by which run
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import dagster as dg

from resources.lakehouse import LakehouseResource

if TYPE_CHECKING:
    from ml_assets.training.train import LoadedModel


class RegistryError(RuntimeError):
    pass


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ModelRegistryResource(dg.ConfigurableResource):
    lakehouse: LakehouseResource

    def _uri(self, use_case: str, *parts: str) -> str:
        return self.lakehouse.uri(use_case, "registry", *parts)

    # ---- versions ----------------------------------------------------------------------------
    def register(self, use_case: str, artifact: bytes, record: dict[str, Any]) -> dict[str, Any]:
        """Store an artifact and its record; the version id is derived from the weights' sha256.

        Registering identical bytes again (a reproduction) is a no-op returning the existing record.
        """
        from resources.lakehouse import sha256_bytes

        sha = sha256_bytes(artifact)
        version = f"v-{sha[:12]}"
        record_uri = self._uri(use_case, "versions", f"{version}.json")
        if self.lakehouse.exists(record_uri):
            existing = self.lakehouse.read_json(record_uri)
            if existing["sha256"] != sha:  # pragma: no cover - a sha prefix collision
                raise RegistryError(f"version {version} exists with a different sha256")
            return existing
        artifact_uri = self._uri(use_case, "artifacts", version, "model.safetensors")
        self.lakehouse.write_bytes(artifact_uri, artifact)
        full = {**record, "version": version, "sha256": sha, "artifact_uri": artifact_uri,
                "size_bytes": len(artifact), "registered_at": now_iso()}
        self.lakehouse.write_json(record_uri, full)  # written last: the version exists only now
        return full

    def get(self, use_case: str, version: str) -> dict[str, Any]:
        uri = self._uri(use_case, "versions", f"{version}.json")
        if not self.lakehouse.exists(uri):
            known = [v["version"] for v in self.versions(use_case)]
            raise RegistryError(f"model version {version!r} is not registered for {use_case!r}; known: {known}")
        return self.lakehouse.read_json(uri)

    def versions(self, use_case: str) -> list[dict[str, Any]]:
        uris = [u for u in self.lakehouse.list(self._uri(use_case, "versions")) if u.endswith(".json")]
        return sorted((self.lakehouse.read_json(u) for u in uris), key=lambda r: r["registered_at"])

    def load(self, use_case: str, version: str) -> LoadedModel:
        """Load weights after checking their sha256: a tampered or truncated file is never served."""
        from ml_assets.training.train import from_safetensors

        record = self.get(use_case, version)
        data = self.lakehouse.read_bytes(record["artifact_uri"], expected_sha256=record["sha256"])
        return from_safetensors(data)

    # ---- model cards ---------------------------------------------------------------------------
    def write_model_card(self, use_case: str, version: str, markdown: str) -> str:
        return self.lakehouse.write_bytes(self._uri(use_case, "cards", f"{version}.md"), markdown.encode()).uri

    def model_card_uri(self, use_case: str, version: str) -> str:
        return self._uri(use_case, "cards", f"{version}.md")

    # ---- production pointer ------------------------------------------------------------------
    def production(self, use_case: str) -> dict[str, Any] | None:
        uri = self._uri(use_case, "production.json")
        return self.lakehouse.read_json(uri) if self.lakehouse.exists(uri) else None

    def set_production(self, use_case: str, version: str, *, run_id: str, action: str, reason: str,
                       actor: str) -> dict[str, Any]:
        record = self.get(use_case, version)
        previous = self.production(use_case)
        pointer = {
            "version": version,
            "sha256": record["sha256"],
            "action": action,
            "reason": reason,
            "actor": actor,
            "run_id": run_id,
            "since": now_iso(),
            "previous_version": previous["version"] if previous else None,
        }
        self.lakehouse.write_json(self._uri(use_case, "production.json"), pointer)
        return pointer
