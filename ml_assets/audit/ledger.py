"""Reading the instance as a ledger: materializations by asset, run and storage id, each with the
file it recorded, verified against the recorded sha256. The shared vocabulary of `mlp trace`,
`mlp show`, `mlp status` and the audit bundle."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import dagster as dg

from ml_assets.errors import PlatformError
from ml_assets.keys import UseCaseKeys
from ml_assets.records import Record

CODE_VERSION_TAG = "dagster/code_version"


class Hop(Record):
    """One link of evidence: what it is, its ids, the file it recorded and whether the bytes verify."""

    kind: str
    title: str
    ids: dict[str, Any] = {}
    uri: str | None = None
    sha256: str | None = None
    verified: bool | None = None  # None: no file to verify at this hop
    detail: str = ""


@dataclass
class Materialization:
    """A materialization record's essentials, with its metadata values unwrapped."""

    key: dg.AssetKey
    storage_id: int
    run_id: str
    partition: str | None
    timestamp: float
    metadata: dict[str, Any]
    tags: dict[str, str]

    @classmethod
    def of(cls, key: dg.AssetKey, record: Any) -> Materialization:
        m = record.asset_materialization
        return cls(key, record.storage_id, record.run_id, record.partition_key, record.timestamp,
                   {k: v.value for k, v in (m.metadata or {}).items()}, dict(m.tags or {}))

    @property
    def code_version(self) -> str | None:
        return self.tags.get(CODE_VERSION_TAG)

    @property
    def ids(self) -> dict[str, Any]:
        out = {"asset": self.key.to_user_string(), "run_id": self.run_id, "storage_id": self.storage_id}
        if self.partition:
            out["partition"] = self.partition
        if self.code_version:
            out["code_version"] = self.code_version
        return out


@dataclass
class Ledger:
    """Read-only access to one use case's recorded history, with byte verification."""

    instance: dg.DagsterInstance
    lakehouse: Any
    registry: Any
    use_case: str
    _by_key: dict[str, list[Materialization]] = field(default_factory=dict)
    _index: dict[str, dict[int, Materialization]] = field(default_factory=dict)

    @cached_property
    def keys(self) -> UseCaseKeys:
        return UseCaseKeys(self.use_case)

    def all(self, key: dg.AssetKey) -> list[Materialization]:
        """Every materialization of `key`, oldest first (cached: a trace reads the same ones often)."""
        name = key.to_user_string()
        if name not in self._by_key:
            found, cursor = [], None
            while True:
                result = self.instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=1000,
                                                              cursor=cursor, ascending=True)
                found += [Materialization.of(key, r) for r in result.records]
                if not result.has_more:
                    break
                cursor = result.cursor
            self._by_key[name] = found
        return self._by_key[name]

    def by_storage_id(self, key: dg.AssetKey, storage_id: int) -> Materialization | None:
        name = key.to_user_string()
        if name not in self._index:
            self._index[name] = {m.storage_id: m for m in self.all(key)}
        return self._index[name].get(storage_id)

    def for_version(self, key: dg.AssetKey, version: str) -> list[Materialization]:
        """Materializations of `key` that recorded `model_version` = `version`, oldest first."""
        return [m for m in self.all(key) if m.metadata.get("model_version") == version]

    def in_run(self, key: dg.AssetKey, run_id: str) -> Materialization | None:
        return next((m for m in reversed(self.all(key)) if m.run_id == run_id), None)

    def latest(self, key: dg.AssetKey) -> Materialization | None:
        found = self.all(key)
        return found[-1] if found else None

    def run_tags(self, run_id: str) -> dict[str, str]:
        run = self.instance.get_run_by_id(run_id)
        return dict(run.tags) if run else {}

    # ---- registry records, verified against what their training run recorded --------------------
    def recorded_version(self, version: str) -> Materialization:
        """The candidate_model materialization that registered `version` (its weights' and record's sha256)."""
        from ml_assets.errors import MissingDataError
        from ml_assets.records import check_version_id

        found = self.for_version(self.keys.candidate_model, check_version_id(version))
        if not found:
            raise MissingDataError(f"{self.use_case}: no candidate_model materialization registered {version}")
        return found[0]

    def record_bytes(self, version: str) -> bytes:
        """The version's registry record, verified against the sha256 its training run recorded."""
        return self.registry.record_bytes(self.use_case, version,
                                          str(self.recorded_version(version).metadata["record_sha256"]))

    def record(self, version: str) -> Any:
        from ml_assets.records import VersionRecord, parse_record

        return parse_record(VersionRecord, self.record_bytes(version), self.registry.record_uri(self.use_case, version))

    def weights(self, version: str) -> bytes:
        """The version's weights, verified against the weights and record sha256 its training run recorded."""
        m = self.recorded_version(version)
        return self.registry.artifact_bytes(self.use_case, version, str(m.metadata["weights_sha256"]),
                                            str(m.metadata["record_sha256"]))

    # ---- verification ---------------------------------------------------------------------------
    def verify(self, uri: str | None, sha256: str | None, what: str) -> tuple[bool | None, str]:
        """(verified, problem): the file's bytes against the recorded sha256."""
        if not uri or not sha256:
            return None, "no file recorded"
        try:
            self.lakehouse.read_bytes(uri, sha256, what=what)
            return True, ""
        except PlatformError as exc:
            return False, str(exc)

    def file_hop(self, kind: str, title: str, m: Materialization, uri_field: str = "uri",
                 sha_field: str = "sha256", **ids: Any) -> Hop:
        uri, sha = m.metadata.get(uri_field), m.metadata.get(sha_field)
        ok, problem = self.verify(str(uri) if uri else None, str(sha) if sha else None, title)
        return Hop(kind=kind, title=title, ids={**m.ids, **ids}, uri=str(uri) if uri else None,
                   sha256=str(sha) if sha else None, verified=ok, detail=problem)


def sha256_file(path: str) -> str | None:
    """sha256 of a file outside the lakehouse (a landed source), or None if it is not on this machine."""
    if not os.path.isfile(path):
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def summary_line(hops: list[Hop]) -> str:
    checked = [h for h in hops if h.verified is not None]
    bad = [h for h in checked if not h.verified]
    return (f"{len(checked) - len(bad)} of {len(checked)} recorded files verify against their sha256"
            + (f"; {len(bad)} do NOT" if bad else ""))
