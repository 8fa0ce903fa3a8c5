"""`mlp trace`: one prediction, hop by hop, back to the raw bytes it came from.

prediction row -> predictions partition -> model version and the pointer in force when it was scored
-> the promotion or rollback that put it there (actor, trigger evidence, gate decision) -> evaluation
report -> training set and its per-partition receipts -> the scored feature partition -> the raw
partitions, quarantine and landed source files behind it. Every file at every hop is verified
against the sha256 recorded when it was written; a hop that does not verify says why.

Online predictions are traced too: an id is looked up in batch `predictions` and in the landed
`online_predictions` (read verified). Batch and online ids coincide when both paths scored an event
with the same version; the trace then lists every record with its source (and, online, request_id and
scored_at), follows the batch one to the raw bytes, and adds for each online answer its landed file,
the production pointer and the serving_state materialization it was scored with, as the log recorded
them (`pointer_sequence`, `state_storage_id`; "not recorded" for a row written without them, never a guess). An online
answer with no batch record is traced through the version's weights, decision and training set, and
the serving state's inputs.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import computed_field

from ml_assets.audit.ledger import Hop, Ledger, Materialization, sha256_file
from ml_assets.errors import IntegrityError, MissingDataError, PlatformError
from ml_assets.features.compute import EVENT_ID
from ml_assets.keys import EVIDENCE_TAG, SENSOR_NAME_TAG, TRIGGER_TAG
from ml_assets.records import Record, TrainingSetRef

BATCH, ONLINE = "batch", "online"


class Trace(Record):
    prediction_id: str
    event_id: str
    partition: str
    model_version: str
    probability: float
    source: str = BATCH  # the record the hops follow to raw bytes (batch when there is one)
    records: list[dict[str, Any]] = []  # every recorded prediction with this id: source, request_id, scored_at...
    hops: list[Hop]

    @computed_field
    @property
    def verified(self) -> bool:
        return all(h.verified is not False for h in self.hops)


def split_id(identifier: str) -> tuple[str | None, str]:
    """(version, event id) of a prediction id `<version>/<event id>`; an event id alone has no version."""
    head, sep, tail = identifier.partition("/")
    if sep and head.startswith("v-"):
        return head, tail
    return None, identifier


def find_prediction(ledger: Ledger, identifier: str) -> tuple[Materialization, dict[str, Any]]:
    """The predictions materialization holding the row, and the row. With a version, the one scored by
    that version; with an event id alone, the newest scoring of it."""
    found = _find_batch(ledger, identifier)
    if found is None:
        raise _not_found(ledger, identifier)
    return found


def _not_found(ledger: Ledger, identifier: str) -> MissingDataError:
    version, _ = split_id(identifier)
    return MissingDataError(f"{ledger.use_case}: no recorded prediction (batch or online) has id {identifier!r}"
                            + ("" if version else " (event ids look like the predictions' event_id column)"))


def _find_batch(ledger: Ledger, identifier: str) -> tuple[Materialization, dict[str, Any]] | None:
    import polars as pl

    version, event_id = split_id(identifier)
    candidates = [m for m in reversed(ledger.all(ledger.keys.predictions))
                  if version is None or m.metadata.get("model_version") == version]
    seen: set[str] = set()
    for m in candidates:
        if version is None and m.partition in seen:
            continue  # only the newest materialization of each partition serves an event id
        seen.add(m.partition or "")
        frame = ledger.lakehouse.read_parquet(str(m.metadata["uri"]), str(m.metadata["sha256"]),
                                              what=f"asset {m.key.to_user_string()}, partition {m.partition}")
        row = frame.filter(pl.col(EVENT_ID) == event_id)
        if row.height:
            return m, row.row(0, named=True)
    return None


def find_online(ledger: Ledger, identifier: str, partition: str | None = None
                ) -> tuple[list[tuple[Materialization, dict[str, Any]]], list[Hop]]:
    """The landed online answers with this id (every row: a retry is an answer too), each with the
    materialization holding it, oldest first; and a BAD hop for every landed file that could not be
    read verified (the search through it is incomplete, and the trace says so). Only the newest
    landing of each partition is read (a re-landing holds every segment). `partition`: where to look
    (the batch record's); else every landed partition, newest first, until found. With an event id
    alone: the answers of the newest-scored version."""
    import polars as pl

    version, event_id = split_id(identifier)
    newest: dict[str, Materialization] = {}
    for m in ledger.all(ledger.keys.online_predictions):
        if m.partition is not None and (partition is None or m.partition == partition):
            newest[m.partition] = m
    rows: list[tuple[Materialization, dict[str, Any]]] = []
    bad: list[Hop] = []
    for p in sorted(newest, reverse=True):
        m = newest[p]
        try:
            frame = ledger.lakehouse.read_parquet(str(m.metadata["uri"]), str(m.metadata["sha256"]),
                                                  what=f"asset {m.key.to_user_string()}, partition {p}")
        except PlatformError as exc:
            bad.append(ledger.file_hop("online_predictions", f"online_predictions {p} (searched)", m)
                       .model_copy(update={"verified": False, "detail": str(exc)}))
            continue
        hit = frame.filter(pl.col(EVENT_ID) == event_id)
        if version is not None:
            hit = hit.filter(pl.col("model_version") == version)
        elif hit.height:
            hit = hit.filter(pl.col("model_version") == hit.sort("scored_at").get_column("model_version")[-1])
        if hit.height:
            rows += [(m, r) for r in hit.sort("scored_at", "request_id").iter_rows(named=True)]
            break
    return rows, bad


def _record(source: str, m: Materialization, row: dict[str, Any]) -> dict[str, Any]:
    out = {"source": source, "prediction_id": row["prediction_id"], "model_version": row["model_version"],
           "partition": m.partition, "probability": float(row["probability"]),
           "predicted_positive": bool(row["predicted_positive"]), "asset": m.key.to_user_string(),
           "storage_id": m.storage_id, "uri": m.metadata.get("uri"), "sha256": m.metadata.get("sha256")}
    if source == ONLINE:
        out |= {k: row.get(k) for k in ("request_id", "scored_at", "state_partition", "state_storage_id",
                                         "pointer_sequence")}
    return out


def trace(ledger: Ledger, identifier: str) -> Trace:
    batch = _find_batch(ledger, identifier)
    if batch is not None:  # the online answers of the same (event, version) sit in the same partition
        online, bad = find_online(ledger, str(batch[1]["prediction_id"]), batch[0].partition)
    else:
        online, bad = find_online(ledger, identifier)
    if batch is None and not online:
        if bad:  # unreadable landed files may hold it: that is not "no such prediction"
            raise IntegrityError(f"{ledger.use_case}: no readable record has id {identifier!r}, and "
                                 + "; ".join(h.detail for h in bad))
        raise _not_found(ledger, identifier)
    records = ([_record(BATCH, *batch)] if batch else []) + [_record(ONLINE, m, r) for m, r in online]
    hops: list[Hop] = []
    if batch is not None:
        m, row = batch
        version = str(row["model_version"])
        hops += _batch_hops(ledger, m, row)
    else:
        m, row = online[-1]
        version = str(row["model_version"])
    hops += _online_hops(ledger, online, with_model=batch is None) + bad + _training_hops(ledger, version)
    hops += _scored_feature_hops(ledger, batch[0]) if batch is not None else _state_input_hops(ledger, online)
    return Trace(prediction_id=str(row["prediction_id"]), event_id=str(row[EVENT_ID]), partition=m.partition or "",
                 model_version=version, probability=float(row["probability"]),
                 source=BATCH if batch is not None else ONLINE, records=records, hops=hops)


def _batch_hops(ledger: Ledger, m: Materialization, row: dict[str, Any]) -> list[Hop]:
    version = str(row["model_version"])
    hops = [Hop(kind="prediction", title="prediction row",
                ids={"prediction_id": row["prediction_id"], "event_id": row[EVENT_ID], "partition": m.partition,
                     "source": BATCH, "probability": round(float(row["probability"]), 6),
                     "predicted_positive": bool(row["predicted_positive"])},
                detail="scored by " + version),
            ledger.file_hop("predictions", "predictions partition", m, model_version=version,
                            pointer_sequence=m.metadata.get("pointer_sequence"),
                            weights_sha256=m.metadata.get("weights_sha256"), threshold=m.metadata.get("threshold"))]
    return hops + _model_hops(ledger, m, version)


NOT_RECORDED = "not recorded"


def _online_hops(ledger: Ledger, online: list[tuple[Materialization, dict[str, Any]]], with_model: bool
                 ) -> list[Hop]:
    """Per online answer: its row, its landed file (once), the pointer and the serving state it was
    scored with. `with_model`: also the version's weights and the change and
    decision behind its pointer (when no batch record already traced them)."""
    hops: list[Hop] = []
    files: set[int] = set()
    models: set[str] = set()
    for m, row in online:
        version = str(row["model_version"])
        state = row.get("state_partition")
        hops.append(Hop(kind="prediction", title="online prediction row",
                        ids={"prediction_id": row["prediction_id"], "event_id": row[EVENT_ID],
                             "partition": m.partition, "source": ONLINE, "request_id": row.get("request_id"),
                             "scored_at": row.get("scored_at"), "probability": round(float(row["probability"]), 6),
                             "predicted_positive": bool(row["predicted_positive"]),
                             "state_partition": state or NOT_RECORDED},
                        detail="answered by " + version))
        if m.storage_id not in files:
            files.add(m.storage_id)
            hops.append(ledger.file_hop("online_predictions", "online_predictions partition", m,
                                        segments=m.metadata.get("segments"),
                                        model_versions=m.metadata.get("model_versions")))
        if with_model and version not in models:
            models.add(version)
            hops.append(_weights_hop(ledger, version))
        pointer = _online_pointer(ledger, version, row)
        hops.append(pointer[0])
        if with_model and pointer[1] is not None and f"{version}:{pointer[1].storage_id}" not in models:
            models.add(f"{version}:{pointer[1].storage_id}")
            hops.append(_change_hop(ledger, pointer[1]))
            hops += _decision_hops(ledger, version, pointer[1])
        hops.append(_state_hop(ledger, m, row)[0])
    return hops


def _weights_hop(ledger: Ledger, version: str) -> Hop:
    """The version's weights, verified against the sha256 its training run registered."""
    uri, sha = None, None
    try:
        ledger.weights(version)
        uri, sha = ledger.record(version).artifact_uri, str(ledger.recorded_version(version).metadata["weights_sha256"])
        ok, problem = True, ""
    except PlatformError as exc:
        ok, problem = False, str(exc)
    return Hop(kind="model", title="model weights", ids={"model_version": version}, uri=uri, sha256=sha,
               verified=ok, detail=problem)


def _online_pointer(ledger: Ledger, version: str, row: dict[str, Any]) -> tuple[Hop, Materialization | None]:
    """The production pointer behind an online answer: the one whose sequence the log recorded."""
    title = "production pointer (online answer)"
    sequence = row.get("pointer_sequence")
    ids = {"model_version": version, "scored_at": row.get("scored_at"), "pointer_sequence": sequence}
    if sequence is None:
        return Hop(kind="online_pointer", title=title, ids=ids,
                   detail="the online log did not record the pointer sequence (written by a service that does not "
                   "log it)"), None
    chosen = next((p for p in ledger.all(ledger.keys.production_model) if p.metadata.get("sequence") == sequence),
                  None)
    if chosen is None or chosen.metadata.get("model_version") != version:
        return Hop(kind="online_pointer", title=title, ids=ids, verified=False,
                   detail=f"no recorded production pointer with sequence {sequence} put {version} in production"), None
    return ledger.file_hop("online_pointer", title, chosen, "pointer_uri", "pointer_sha256", sequence=sequence,
                           model_version=version, weights_sha256=chosen.metadata.get("weights_sha256")), chosen


def _state_hop(ledger: Ledger, m: Materialization, row: dict[str, Any]) -> tuple[Hop, Materialization | None]:
    """The serving_state materialization the answer's features came from, as the log recorded it."""
    key = ledger.keys.serving_state
    state, storage_id = row.get("state_partition"), row.get("state_storage_id")
    title = f"{key.to_user_string()} {state or ''} (scored with)".replace("  ", " ")
    if storage_id is not None:
        found = ledger.by_storage_id(key, int(storage_id))
        if found is None:
            return Hop(kind="serving_state", title=title, ids={"storage_id": storage_id}, verified=False,
                       detail="the instance holds no such materialization"), None
        return ledger.file_hop("serving_state", title, found), found
    return Hop(kind="serving_state", title=f"{key.to_user_string()} (scored with)", ids={"partition": m.partition},
               detail="the online log did not record the serving state (state_storage_id is null: written by a "
               "service that does not log it)"), None


def _state_input_hops(ledger: Ledger, online: list[tuple[Materialization, dict[str, Any]]]) -> list[Hop]:
    """What the recorded serving states read (raw partitions, dimensions, labels), once per state."""
    hops: list[Hop] = []
    seen: set[int] = set()
    for m, row in online:
        state = _state_hop(ledger, m, row)[1]
        if state is None or state.storage_id in seen:
            continue
        seen.add(state.storage_id)
        for asset, parts in sorted((state.metadata.get("input_receipts") or {}).items()):
            for partition, storage_id in sorted(parts.items()):
                hops += _materialization_hops(ledger, asset, partition, storage_id, "serving state", depth=0)
    return hops


def _model_hops(ledger: Ledger, scored: Materialization, version: str) -> list[Hop]:
    """The version's weights, and the pointer that was in force when the partition was scored."""
    keys = ledger.keys
    approved = scored.metadata.get("weights_sha256")
    pointers = [p for p in ledger.all(keys.production_model) if p.storage_id < scored.storage_id]
    in_force = pointers[-1] if pointers else None
    uri = None
    try:  # the weights as their training run registered them, and the sha256 the scoring recorded
        ledger.weights(version)
        uri = ledger.record(version).artifact_uri
        trained = ledger.recorded_version(version).metadata["weights_sha256"]
        ok = trained == approved
        problem = "" if ok else f"the scoring recorded weights {approved}, the training run registered {trained}"
    except PlatformError as exc:
        ok, problem = False, str(exc)
    hops = [Hop(kind="model", title="model weights", ids={"model_version": version}, uri=uri,
                sha256=str(approved) if approved else None, verified=ok, detail=problem)]
    if in_force is None:
        hops.append(Hop(kind="pointer", title="production pointer in force", verified=False,
                        detail="no production_model materialization precedes this scoring"))
        return hops
    pointer_hop = ledger.file_hop("pointer", "production pointer in force", in_force, "pointer_uri",
                                  "pointer_sha256", sequence=in_force.metadata.get("sequence"),
                                  action=in_force.metadata.get("action"), actor=in_force.metadata.get("actor"))
    agree = (in_force.metadata.get("model_version") == version
             and in_force.metadata.get("weights_sha256") == approved
             and in_force.metadata.get("sequence") == scored.metadata.get("pointer_sequence"))
    if not agree:
        pointer_hop = pointer_hop.model_copy(update={
            "verified": False, "detail": f"scoring recorded version {version} / sequence "
            f"{scored.metadata.get('pointer_sequence')}, but the pointer in force was "
            f"{in_force.metadata.get('model_version')} / sequence {in_force.metadata.get('sequence')}"})
    hops.append(pointer_hop)
    hops.append(_change_hop(ledger, in_force))
    hops += _decision_hops(ledger, version, in_force)
    return hops


def _change_hop(ledger: Ledger, change: Materialization) -> Hop:
    tags = ledger.run_tags(change.run_id)
    evidence = tags.get(EVIDENCE_TAG)
    return Hop(kind="change", title=f"production change ({change.metadata.get('action')})",
               ids={"run_id": change.run_id, "actor": change.metadata.get("actor"),
                    "trigger": tags.get(TRIGGER_TAG, "manual"), "sensor": tags.get(SENSOR_NAME_TAG),
                    "previous_version": change.metadata.get("previous_version")},
               detail=f"reason: {change.metadata.get('reason')}"
               + (f"; evidence: {json.dumps(json.loads(evidence), sort_keys=True)}" if evidence else ""))


def _decision_hops(ledger: Ledger, version: str, change: Materialization) -> list[Hop]:
    """The gate decision on this version (the promoting run's, or for a pin the version's own
    evaluation), and its evaluation report and plot."""
    keys = ledger.keys
    decision = ledger.in_run(keys.promotion_decision, change.run_id)
    if decision is None or decision.metadata.get("model_version") != version:
        earlier = [d for d in ledger.for_version(keys.promotion_decision, version) if d.storage_id < change.storage_id]
        decision = earlier[-1] if earlier else None
    if decision is None:
        return [Hop(kind="decision", title="gate decision", verified=False,
                    detail=f"no promotion_decision recorded for {version}")]
    rules = decision.metadata.get("decision") or {}
    numbers = "; ".join(f"{r['name']}: {'PASS' if r['passed'] else 'FAIL'} ({r['detail']})"
                        for r in rules.get("rules", []))
    hops = [ledger.file_hop("decision", f"gate decision ({decision.metadata.get('outcome')})", decision,
                            "ref_uri", "ref_sha256", champion=decision.metadata.get("champion_version")),
            ledger.file_hop("card", "model card", decision, "model_card_uri", "model_card_sha256")]
    hops[0] = hops[0].model_copy(update={"detail": (hops[0].detail + " " + numbers).strip()})
    evaluation = ledger.in_run(keys.model_evaluation, decision.run_id)
    if evaluation is not None:
        hops.append(ledger.file_hop("evaluation", "evaluation report", evaluation, "report_uri", "report_sha256",
                                    window=evaluation.metadata.get("window")))
        hops.append(ledger.file_hop("evaluation", "evaluation plot", evaluation, "plot_uri", "plot_sha256"))
    return hops


def _training_hops(ledger: Ledger, version: str) -> list[Hop]:
    """The version record (verified against its training run's record), its training set and every
    partition receipt in it."""
    keys = ledger.keys
    uri = ledger.registry.record_uri(ledger.use_case, version)
    try:
        record = ledger.record(version)
    except PlatformError as exc:
        return [Hop(kind="record", title="version record", uri=uri, verified=False, detail=str(exc))]
    hops = [Hop(kind="record", title="version record", uri=uri, verified=True,
                sha256=str(ledger.recorded_version(version).metadata["record_sha256"]),
                ids={"training_run": record.run_id, "code_version": record.code_version})]
    ts: TrainingSetRef = record.training_set
    ok, problem = ledger.verify(ts.uri, ts.sha256, "training set")
    hops.append(Hop(kind="training_set", title="training set", uri=ts.uri, sha256=ts.sha256, verified=ok,
                    detail=problem, ids={"window": f"{ts.train_start}..{ts.train_end}",
                                         "validation_start": ts.validation_start, "rows": ts.rows}))
    for asset, parts in sorted(ts.inputs.items()):
        key = keys.features if asset == keys.features.to_user_string() else keys.labels
        for partition, receipt in sorted(parts.items()):
            m = ledger.by_storage_id(key, receipt.storage_id) if receipt.storage_id is not None else None
            ok, problem = ledger.verify(receipt.uri, receipt.sha256, f"asset {asset}, partition {partition}")
            if m is None or m.metadata.get("sha256") != receipt.sha256:
                ok, problem = False, (problem + " " if problem else "") + (
                    f"the instance holds no materialization {receipt.storage_id} with this sha256")
            hops.append(Hop(kind="trained_on", title=f"{asset} {partition} (trained on)", uri=receipt.uri,
                            sha256=receipt.sha256, verified=ok, detail=problem,
                            ids=m.ids if m else {"storage_id": receipt.storage_id}))
    return hops


def _scored_feature_hops(ledger: Ledger, scored: Materialization) -> list[Hop]:
    """The feature partition that was scored, then everything it read (raw, dimensions, labels)."""
    hops: list[Hop] = []
    for asset, parts in sorted((scored.metadata.get("input_receipts") or {}).items()):
        for partition, storage_id in sorted(parts.items()):
            hops += _materialization_hops(ledger, asset, partition, storage_id, "scored features", depth=0)
    return hops


def _materialization_hops(ledger: Ledger, asset: str, partition: str, storage_id: int, role: str,
                          depth: int) -> list[Hop]:
    import dagster as dg

    key = dg.AssetKey.from_user_string(asset)
    m = ledger.by_storage_id(key, storage_id)
    label = f"{asset}{' ' + partition if partition else ''} ({role})"
    if m is None:
        return [Hop(kind="input", title=label, ids={"storage_id": storage_id}, verified=False,
                    detail="the instance holds no such materialization")]
    hops = [ledger.file_hop("input", label, m, **_row_counts(m))]
    if m.metadata.get("source_file"):
        hops.append(_source_hop(ledger, m))
    quarantine = _quarantine_of(ledger, m)
    if quarantine is not None:
        hops.append(ledger.file_hop("quarantine", f"{quarantine.key.to_user_string()} {partition}", quarantine,
                                    rows=quarantine.metadata.get("dagster/row_count")))
    if depth == 0:
        for up_asset, parts in sorted((m.metadata.get("input_receipts") or {}).items()):
            for up_partition, up_id in sorted(parts.items()):
                hops += _materialization_hops(ledger, up_asset, up_partition, up_id, f"read by {asset}", depth + 1)
    return hops


def _row_counts(m: Materialization) -> dict[str, Any]:
    fields = ("rows_read", "rows_written", "quarantined_rows", "dagster/row_count", "source_sha256")
    return {f.removeprefix("dagster/"): m.metadata[f] for f in fields if f in m.metadata}


def _quarantine_of(ledger: Ledger, m: Materialization) -> Materialization | None:
    """The quarantine partition written by the same run as a raw partition (None for other assets)."""
    table = m.key.path[-1].removeprefix("raw_")
    if m.partition is None or ledger.keys.raw(table) != m.key:
        return None
    qkey = ledger.keys.quarantine(table)
    return next((q for q in reversed(ledger.all(qkey)) if q.run_id == m.run_id and q.partition == m.partition), None)


def _source_hop(ledger: Ledger, m: Materialization) -> Hop:
    path, recorded = str(m.metadata["source_file"]), m.metadata.get("source_sha256")
    actual = sha256_file(path)
    if actual is None:
        ok, problem = None, "landed file is not on this machine (its recorded sha256 is the evidence)"
    else:
        ok = actual == recorded
        problem = "" if ok else f"landed file now has sha256 {actual}"
    return Hop(kind="source", title=f"landed file for {m.key.to_user_string()} {m.partition or ''}".strip(),
               uri=path, sha256=str(recorded) if recorded else None, verified=ok, detail=problem,
               ids={"checksum": m.metadata.get("source_checksum"), "rows": m.metadata.get("source_rows")})


def _group(h: Hop) -> tuple | None:
    """Hops that differ only by partition (trained-on partitions, a trailing label window) collapse
    into one line unless --verbose."""
    if h.verified is not True or h.kind not in ("trained_on", "input") or "partition" not in h.ids:
        return None
    return h.kind, h.ids.get("asset"), h.title.rsplit("(", 1)[-1]


def _line(h: Hop) -> list[str]:
    mark = {True: "OK ", False: "BAD", None: " - "}[h.verified]
    ids = "  ".join(f"{k}={v}" for k, v in h.ids.items() if v not in (None, "", "none"))
    out = [f"[{mark}] {h.title}  {ids}"]
    if h.sha256:
        out.append(f"        sha256 {h.sha256}  {h.uri or ''}")
    if h.detail:
        out.append(f"        {h.detail}")
    return out


def render(t: Trace, verbose: bool = False) -> str:
    from itertools import groupby

    from ml_assets.audit.ledger import summary_line

    lines = [f"prediction {t.prediction_id}  p={t.probability:.4f}  partition {t.partition}  "
             f"(hops follow the {t.source} record)"]
    for r in t.records:
        extra = "" if r["source"] != ONLINE else "  " + "  ".join(
            f"{k}={r.get(k) if r.get(k) is not None else NOT_RECORDED}"
            for k in ("request_id", "scored_at", "state_partition"))
        lines.append(f"  {r['source']:<6} p={r['probability']:.6f}  partition {r['partition']}{extra}")
    for key, run in groupby(t.hops, key=lambda h: None if verbose else _group(h)):
        hops = list(run)
        if key is None or len(hops) < 3:
            lines += [line for h in hops for line in _line(h)]
            continue
        _kind, asset, role = key
        parts = sorted(h.ids["partition"] for h in hops)
        lines.append(f"[OK ] {asset} {parts[0]}..{parts[-1]} ({role}  {len(hops)} partitions, each verifies "
                     "(--verbose lists them)")
    lines.append(summary_line(t.hops))
    return "\n".join(lines)
