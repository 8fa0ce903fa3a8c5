"""`mlp audit-bundle`: one version's evidence as a self-contained folder an auditor can keep and
check offline, without the platform.

Every file copied in is verified against the sha256 recorded when it was written; the bundle's
`MANIFEST.sha256` (the `sha256sum` format: `sha256sum -c MANIFEST.sha256` works too) lists every other
file. `verify_bundle` fails on any changed, missing or extra file, and checks the bundle against
itself: the weights hash to the record's sha256, the record to what the production pointer
approved, the report and plot to what the evaluation recorded.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ml_assets.audit.ledger import Ledger
from ml_assets.audit.views import serving_pointer, version_status
from ml_assets.errors import IntegrityError, MissingDataError

MANIFEST = "MANIFEST.sha256"
COVERAGE = """\
Record-keeping this bundle supports (mapping, not legal advice):
- EU AI Act Art. 12 (logging): runs.json and pointer_history.json (who/what changed production, when, why, trigger
  evidence), predictions.json (every partition this version scored, with the file's sha256), monitoring.json.
- EU AI Act Annex IV (technical documentation): model_card.md (intended use, limitations, data, metrics),
  version_record.json (hyperparameters, features, training curve), training_set_manifest.json (data provenance with
  per-partition hashes), evaluation/ (report, ROC/reliability plot), decision.json (acceptance criteria and results),
  code_versions.json.
- SR 11-7 (model risk management): model inventory (version_record.json, status in bundle.json), validation
  (evaluation/, decision.json: challenger vs champion vs baseline with intervals), ongoing monitoring (monitoring.json:
  realized performance and drift of the partitions it served), change control (pointer_history.json, runs.json).
"""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json(document: Any) -> bytes:
    return json.dumps(document, indent=2, sort_keys=True, default=str).encode()


class _Writer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[str, str] = {}

    def put(self, name: str, data: bytes) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.files[name] = _sha(data)


def _verified(ledger: Ledger, uri: Any, sha: Any, what: str) -> bytes:
    return ledger.lakehouse.read_bytes(str(uri), str(sha), what=what)


def write_bundle(ledger: Ledger, version: str, out: Path) -> Path:
    """Write the bundle of `version` into `out` (which must not exist or be empty). Every file copied in
    is verified first: a record or artifact that does not verify writes no bundle."""
    from ml_assets.records import VersionRecord, parse_record

    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose a new folder")
    keys, uc = ledger.keys, ledger.use_case
    record_data = ledger.record_bytes(version)
    record = parse_record(VersionRecord, record_data, ledger.registry.record_uri(uc, version))
    weights = ledger.weights(version)
    pointers = ledger.for_version(keys.production_model, version)
    history = [{**json.loads(_verified(ledger, m.metadata["pointer_uri"], m.metadata["pointer_sha256"], "pointer")),
                "pointer_sha256": m.metadata["pointer_sha256"], "storage_id": m.storage_id} for m in pointers]
    serving = serving_pointer(ledger)[0]
    status = version_status(ledger, record, serving.version if serving else None)

    out.mkdir(parents=True, exist_ok=True)
    w = _Writer(out)
    w.put("version_record.json", record_data)
    w.put("model.safetensors", weights)
    decisions = ledger.for_version(keys.promotion_decision, version)
    if decisions:
        d = decisions[-1]
        w.put("decision.json", _verified(ledger, d.metadata["ref_uri"], d.metadata["ref_sha256"], "gate decision"))
        w.put("model_card.md", _verified(ledger, d.metadata["model_card_uri"], d.metadata["model_card_sha256"],
                                         "model card"))
    evaluations = ledger.for_version(keys.model_evaluation, version)
    if evaluations:
        md = evaluations[-1].metadata
        w.put("evaluation/report.md", _verified(ledger, md["report_uri"], md["report_sha256"], "evaluation report"))
        w.put("evaluation/roc_reliability.png", _verified(ledger, md["plot_uri"], md["plot_sha256"], "plot"))
        w.put("evaluation/evaluation.json", _verified(ledger, md["ref_uri"], md["ref_sha256"], "evaluation"))
    w.put("training_set_manifest.json", _json(_training_manifest(ledger, record)))
    w.put("pointer_history.json", _json(history))
    runs = sorted({record.run_id, *(m.run_id for m in decisions), *(m.run_id for m in pointers)})
    w.put("runs.json", _json({r: _run(ledger, r) for r in runs}))
    w.put("code_versions.json", _json(_code_versions(ledger, runs)))
    w.put("predictions.json", _json(_scored(ledger, version)))
    w.put("monitoring.json", _json(_monitoring(ledger, version)))
    w.put("bundle.json", _json({"use_case": uc, "version": version, "weights_sha256": record.sha256,
                                "status": status.model_dump(mode="json"), "record_sha256": _sha(record_data),
                                "approved_record_sha256": sorted({p["record_sha256"] for p in history
                                                                  if p.get("record_sha256")}),
                                "files": sorted(w.files)}))
    w.put("README.md", (f"# Audit bundle: {uc} {version}\n\nVerify offline: `mlp audit-bundle --verify <this folder>` "
                        f"or `sha256sum -c {MANIFEST}`.\n\n{COVERAGE}").encode())
    manifest = "".join(f"{sha}  {name}\n" for name, sha in sorted(w.files.items()))
    (out / MANIFEST).write_text(manifest)
    return out


def _training_manifest(ledger: Ledger, record: Any) -> dict[str, Any]:
    """The training set with every per-partition receipt, each checked against the bytes now."""
    ts = record.training_set
    ok, problem = ledger.verify(ts.uri, ts.sha256, "training set")
    if not ok:
        raise IntegrityError(problem)
    receipts = {}
    for asset, parts in ts.inputs.items():
        receipts[asset] = {}
        for partition, r in parts.items():
            good, why = ledger.verify(r.uri, r.sha256, f"{asset} {partition}")
            receipts[asset][partition] = {**r.model_dump(mode="json"), "verified_at_bundling": good,
                                          **({"problem": why} if why else {})}
    return {**ts.model_dump(mode="json", exclude={"inputs"}), "inputs": receipts}


def _run(ledger: Ledger, run_id: str) -> dict[str, Any]:
    run = ledger.instance.get_run_by_id(run_id)
    if run is None:
        return {"missing": True}
    record = ledger.instance.get_run_record_by_id(run_id)
    return {"job": run.job_name, "status": run.status.value, "tags": dict(run.tags),
            "created": record.create_timestamp.isoformat() if record else None}


def _code_versions(ledger: Ledger, runs: list[str]) -> dict[str, dict[str, str | None]]:
    """run -> asset -> code version of each materialization it made."""
    out: dict[str, dict[str, str | None]] = {}
    keys = ledger.keys
    for key in (keys.training_set, keys.candidate_model, keys.model_evaluation, keys.promotion_decision,
                keys.production_model):
        for m in ledger.all(key):
            if m.run_id in runs:
                out.setdefault(m.run_id, {})[key.to_user_string()] = m.code_version
    return out


def _scored(ledger: Ledger, version: str) -> list[dict[str, Any]]:
    rows = ledger.for_version(ledger.keys.predictions, version)
    return [{"partition": m.partition, "run_id": m.run_id, "storage_id": m.storage_id, "uri": m.metadata.get("uri"),
             "sha256": m.metadata.get("sha256"), "rows": m.metadata.get("dagster/row_count")} for m in rows]


def _monitoring(ledger: Ledger, version: str) -> dict[str, Any]:
    keep = ("auroc", "ece", "f1", "rows", "positive_rate", "mean_probability", "threshold")
    realized = [{"partition": m.partition, **{k: m.metadata.get(k) for k in keep}, "sha256": m.metadata.get("sha256")}
                for m in ledger.for_version(ledger.keys.realized_performance, version)]
    drift = [{"partition": m.partition, "drifted": m.metadata.get("drifted"),
              "drifted_share": m.metadata.get("drifted_share"), "drifted_columns": m.metadata.get("drifted_columns"),
              "sha256": m.metadata.get("sha256")}
             for m in ledger.all(ledger.keys.drift_report) if m.metadata.get("reference_version") == version]
    return {"realized_performance": realized, "drift": drift}


# ---- offline verification ---------------------------------------------------------------------------------------
def verify_bundle(folder: Path) -> list[str]:
    """Problems found (empty: the bundle verifies). Needs nothing but the folder."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return [f"{MANIFEST} is missing"]
    listed: dict[str, str] = {}
    problems = []
    for n, line in enumerate(manifest.read_text(errors="replace").splitlines(), 1):
        sha, sep, name = line.partition("  ")
        if not sep or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha) or not name:
            problems.append(f"{MANIFEST} line {n} is malformed: {line!r}")
            continue
        listed[name] = sha
    present = {str(p.relative_to(folder)).replace(os.sep, "/") for p in folder.rglob("*") if p.is_file()}
    for name in sorted(present - set(listed) - {MANIFEST}):
        problems.append(f"{name}: not listed in {MANIFEST}")
    for name, sha in sorted(listed.items()):
        path = folder / name
        if not path.is_file():
            problems.append(f"{name}: listed but missing")
        elif _sha(path.read_bytes()) != sha:
            problems.append(f"{name}: sha256 {_sha(path.read_bytes())} but the manifest says {sha}")
    if problems:
        return problems
    return _consistency(folder)


def _consistency(folder: Path) -> list[str]:
    """The bundle against itself: hashes that one record states about another file."""
    problems = []
    try:
        meta = json.loads((folder / "bundle.json").read_bytes())
        record = json.loads((folder / "version_record.json").read_bytes())
    except (OSError, ValueError) as exc:
        return [f"bundle.json or version_record.json unreadable: {exc}"]
    if _sha((folder / "model.safetensors").read_bytes()) != record.get("sha256"):
        problems.append("model.safetensors does not hash to the version record's sha256")
    record_sha = _sha((folder / "version_record.json").read_bytes())
    for approved in meta.get("approved_record_sha256", []):
        if approved != record_sha:
            problems.append(f"version_record.json ({record_sha}) is not the record a pointer approved ({approved})")
    evaluation = folder / "evaluation" / "evaluation.json"
    if evaluation.is_file():
        files = json.loads(evaluation.read_bytes()).get("files", {})
        for name, part in (("report", "report.md"), ("plot", "roc_reliability.png")):
            if name in files and _sha((folder / "evaluation" / part).read_bytes()) != files[name]["sha256"]:
                problems.append(f"evaluation/{part} is not the file the evaluation recorded")
    return problems


def check_bundle(folder: Path) -> None:
    if not folder.is_dir():
        raise MissingDataError(f"{folder} is not a folder")
    problems = verify_bundle(folder)
    if problems:
        raise IntegrityError(f"audit bundle {folder} does NOT verify: " + "; ".join(problems[:5])
                             + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""))

