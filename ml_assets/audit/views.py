"""`mlp versions`, `mlp status`, `mlp show`: the registry and the loop as an auditor or on-call
engineer asks about them, every record read back from what the instance recorded and verified.

A version's status comes from the history, not from a field anyone can set: *serving* if the
recorded production pointer names it, *promoted* / *pinned* if a recorded pointer change ever put it
into production, *refused* if its gate decision refused it and nothing pinned it, *pending* if no
decision was recorded (a training run that stopped before deciding).
"""

from __future__ import annotations

from typing import Any

from ml_assets.audit.ledger import Ledger, Materialization
from ml_assets.errors import MissingDataError, PlatformError
from ml_assets.records import Record


class VersionStatus(Record):
    version: str
    status: str  # serving | promoted | pinned | refused | pending
    trained: str
    registered_at: str
    run_id: str
    sha256: str
    artifact_verifies: bool
    record_verifies: bool | None  # against the record sha256 its training run recorded (None: not recorded)
    problem: str = ""
    decision: str | None = None  # the gate's outcome and failed rules
    evaluation_auroc: float | None = None


def _latest(found: list[Materialization]) -> Materialization | None:
    return found[-1] if found else None


def _status(ledger: Ledger, version: str, serving: str | None) -> str:
    actions = {m.metadata.get("action") for m in ledger.for_version(ledger.keys.production_model, version)}
    decision = _latest(ledger.for_version(ledger.keys.promotion_decision, version))
    if version == serving:
        return "serving"
    if "promote" in actions:
        return "promoted"
    if "rollback" in actions:
        return "pinned"
    if decision is not None and decision.metadata.get("outcome") == "refuse":
        return "refused"
    return "pending"


def version_status(ledger: Ledger, record: Any, serving: str | None) -> VersionStatus:
    """One registered version: its status from the history, and whether its bytes still verify."""
    v = record.version
    artifact_ok, problem = True, ""
    try:
        ledger.registry.artifact_bytes(ledger.use_case, v)
    except PlatformError as exc:
        artifact_ok, problem = False, str(exc)
    record_ok = None
    try:
        ledger.record_bytes(v)
        record_ok = True
    except MissingDataError:  # registered by no recorded run (e.g. the registry was copied without the instance)
        pass
    except PlatformError as exc:
        record_ok, problem = False, problem or str(exc)
    ts = record.training_set
    return VersionStatus(
        version=v, status=_status(ledger, v, serving), trained=f"{ts.train_start}..{ts.train_end}",
        registered_at=record.registered_at, run_id=record.run_id, sha256=record.sha256,
        artifact_verifies=artifact_ok, record_verifies=record_ok, problem=problem,
        decision=_decision_text(_latest(ledger.for_version(ledger.keys.promotion_decision, v))),
        evaluation_auroc=promised_auroc(ledger, v))


def serving_pointer(ledger: Ledger) -> tuple[Any, str | None]:
    """(the recorded production pointer or None, the reason it cannot be trusted or None)."""
    from ml_assets.registry.models import production_pointer

    try:
        return production_pointer(ledger.instance, ledger.registry, ledger.use_case), None
    except PlatformError as exc:
        return None, str(exc)


def version_statuses(ledger: Ledger) -> tuple[list[VersionStatus], dict[str, str]]:
    """Every registered version with its status and verification flags; malformed records by file."""
    records, problems = ledger.registry.scan(ledger.use_case)
    pointer, untrusted = serving_pointer(ledger)
    if untrusted:
        problems = {**problems, "production pointer": untrusted}
    serving = pointer.version if pointer else None
    return [version_status(ledger, r, serving) for r in records], problems


def promised_auroc(ledger: Ledger, version: str) -> float | None:
    """The AUROC the version reached in its newest evaluation: what the gate judged it on (the same
    promise `model_health` holds the served predictions to)."""
    from ml_assets.monitoring.health_assets import promise

    return (promise(ledger, version) or {}).get("auroc")


def _decision_text(m: Materialization | None) -> str | None:
    if m is None:
        return None
    rules = (m.metadata.get("decision") or {}).get("rules", [])
    failed = [r["detail"] for r in rules if not r["passed"]]
    return str(m.metadata.get("outcome")) + (": " + "; ".join(failed) if failed else "")


def render_versions(rows: list[VersionStatus], problems: dict[str, str]) -> str:
    lines = []
    for r in rows:
        marker = "*" if r.status == "serving" else " "
        flags = [] if r.artifact_verifies else ["ARTIFACT DOES NOT VERIFY"]
        if r.record_verifies is False:
            flags.append("RECORD EDITED")
        auroc = f"auroc {r.evaluation_auroc:.3f}" if r.evaluation_auroc is not None else "auroc -"
        lines.append(f"{marker} {r.version}  {r.status:<8}  trained {r.trained}  {auroc}  sha256 {r.sha256[:16]}  "
                     f"run {r.run_id[:8]}  registered {r.registered_at[:19]}" + (f"  !! {', '.join(flags)}"
                                                                                  if flags else ""))
        if flags:
            lines.append(f"    {r.problem}")
    lines += [f"! {where}: {problem}" for where, problem in problems.items()]
    return "\n".join(lines)


# ---- status -----------------------------------------------------------------------------------------------
def status(ledger: Ledger, spec: Any) -> dict[str, Any]:
    """What serves, since when and why; its age in data time; the last decision; drift and health."""
    from datetime import date

    from sensors.policy import model_age

    keys = ledger.keys
    out: dict[str, Any] = {"use_case": ledger.use_case}
    pointer, untrusted = serving_pointer(ledger)
    if untrusted:
        out["serving"] = {"error": untrusted}
    scored = sorted({m.partition for m in ledger.all(keys.predictions) if m.partition})
    out["latest_scored_partition"] = scored[-1] if scored else None
    if pointer is not None:
        record = ledger.registry.get(ledger.use_case, pointer.version, pointer.record_sha256)
        trained_to = date.fromisoformat(record.training_set.train_end)
        age = model_age(spec, date.fromisoformat(scored[-1]), trained_to) if scored else 0
        out["serving"] = {"version": pointer.version, "since": pointer.since, "action": pointer.action,
                          "actor": pointer.actor, "reason": pointer.reason, "pointer_sequence": pointer.sequence,
                          "trained": f"{record.training_set.train_start}..{record.training_set.train_end}",
                          "age_partitions": age, "max_age_partitions": int(spec.monitoring.max_model_age),
                          "promised_auroc": promised_auroc(ledger, pointer.version)}
    decision = ledger.latest(keys.promotion_decision)
    if decision is not None:
        out["last_decision"] = {"version": decision.metadata.get("model_version"), "run_id": decision.run_id,
                                "outcome": decision.metadata.get("outcome"), "why": _decision_text(decision),
                                "trigger": ledger.run_tags(decision.run_id).get("ml/trigger", "manual")}
    drift = ledger.latest(keys.drift_report)
    if drift is not None:
        out["drift"] = {"partition": drift.partition, "drifted": drift.metadata.get("drifted"),
                        "drifted_share": drift.metadata.get("drifted_share"),
                        "drifted_columns": drift.metadata.get("drifted_columns")}
    out["health"] = _health(ledger, spec, pointer.version if pointer else None)
    return out


def _health(ledger: Ledger, spec: Any, version: str | None) -> dict[str, Any]:
    """Mean realized AUROC of the serving version over its newest `monitoring.health_window` labelled
    partitions (not the drift window: drift scores single partitions by default, one partition's AUROC is noise)."""
    newest: dict[str, Materialization] = {}
    for m in ledger.all(ledger.keys.realized_performance):
        if m.partition:
            newest[m.partition] = m
    window = int(spec.monitoring.health_window)
    mine = [newest[p] for p in sorted(newest) if newest[p].metadata.get("model_version") == version][-window:]
    values = [float(m.metadata["auroc"]) for m in mine if isinstance(m.metadata.get("auroc"), int | float)]
    if not values:
        return {"realized_auroc": None, "partitions": 0}
    return {"realized_auroc": sum(values) / len(values), "partitions": len(values),
            "window": f"{mine[0].partition}..{mine[-1].partition}"}


def render_status(s: dict[str, Any]) -> str:
    lines = [f"use case {s['use_case']}  (newest scored partition: {s.get('latest_scored_partition') or 'none'})"]
    serving = s.get("serving")
    if not serving:
        lines.append("serving: nothing (no promotion recorded yet)")
    elif "error" in serving:
        lines.append(f"serving: UNTRUSTED - {serving['error']}")
    else:
        promised = serving["promised_auroc"]
        lines += [f"serving: {serving['version']} (pointer {serving['pointer_sequence']}, {serving['action']} by "
                  f"{serving['actor']} at {serving['since'][:19]})",
                  f"  reason: {serving['reason']}",
                  f"  trained {serving['trained']}; age {serving['age_partitions']} partition(s) of data time "
                  f"(max {serving['max_age_partitions']}); promised AUROC "
                  + (f"{promised:.3f}" if promised is not None else "-")]
    if d := s.get("last_decision"):
        lines.append(f"last decision: {d['version']} {d['why']} (run {d['run_id'][:8]}, trigger {d['trigger']})")
    if d := s.get("drift"):
        share = d["drifted_share"]
        lines.append(f"drift ({d['partition']}): {'DRIFTED' if d['drifted'] else 'no drift'}; drifted share "
                     + (f"{share:.2f}" if isinstance(share, float) else "-") + f"; columns {d['drifted_columns']}")
    h = s["health"]
    lines.append("health: " + (f"realized AUROC {h['realized_auroc']:.3f} over {h['partitions']} labelled "
                               f"partition(s) {h['window']}" if h["realized_auroc"] is not None
                               else "no realized performance recorded for the serving version yet"))
    return "\n".join(lines)


# ---- show -------------------------------------------------------------------------------------------------
def show(ledger: Ledger, version: str) -> dict[str, Any]:
    """One version: record, status, the gate decision and card (verified), evaluation, pointer history."""
    from ml_assets.records import check_version_id

    check_version_id(version)
    record = ledger.record(version)
    pointer, _ = serving_pointer(ledger)
    row = version_status(ledger, record, pointer.version if pointer else None)
    out: dict[str, Any] = {"record": record.model_dump(mode="json", exclude={"training_curve"}),
                           "status": row.model_dump(mode="json")}
    decisions = ledger.for_version(ledger.keys.promotion_decision, version)
    if decisions:
        d = decisions[-1]
        ok, problem = ledger.verify(str(d.metadata.get("model_card_uri")), str(d.metadata.get("model_card_sha256")),
                                    "model card")
        out["decision"] = {"run_id": d.run_id, "outcome": d.metadata.get("outcome"),
                           "rules": (d.metadata.get("decision") or {}).get("rules", []),
                           "model_card_uri": d.metadata.get("model_card_uri"), "model_card_verifies": ok,
                           "problem": problem}
        out["model_card"] = (ledger.lakehouse.read_bytes(str(d.metadata["model_card_uri"]),
                                                         str(d.metadata["model_card_sha256"])).decode()
                             if ok else None)
    evaluation = _latest(ledger.for_version(ledger.keys.model_evaluation, version))
    if evaluation is not None:
        out["evaluation"] = {k: evaluation.metadata.get(k) for k in (
            "window", "reference", "challenger_auroc", "champion_auroc", "baseline_auroc", "auroc_difference",
            "auroc_difference_low", "auroc_difference_high", "challenger_ece", "report_uri", "plot_uri")}
    out["pointer_history"] = [
        {"sequence": m.metadata.get("sequence"), "action": m.metadata.get("action"), "actor": m.metadata.get("actor"),
         "reason": m.metadata.get("reason"), "run_id": m.run_id}
        for m in ledger.for_version(ledger.keys.production_model, version)]
    ts = record.training_set
    out["lineage"] = {"training_run": record.run_id, "code_version": record.code_version,
                      "training_set": {"uri": ts.uri, "sha256": ts.sha256, "window": f"{ts.train_start}.."
                                       f"{ts.train_end}", "validation_start": ts.validation_start, "rows": ts.rows},
                      "input_partitions": {a: len(p) for a, p in ts.inputs.items()}}
    return out


def render_show(s: dict[str, Any]) -> str:
    r, st = s["record"], s["status"] or {}
    lines = [f"{r['version']}  {st.get('status', '?')}  trained {r['training_set']['train_start']}.."
             f"{r['training_set']['train_end']}  threshold {r['threshold']:.3f}  sha256 {r['sha256']}",
             f"  artifact verifies: {st.get('artifact_verifies')}; record verifies: {st.get('record_verifies')}"]
    lin = s["lineage"]
    lines.append(f"  lineage: training run {lin['training_run']}, code {lin['code_version']}, training set "
                 f"{lin['training_set']['sha256'][:16]} ({lin['training_set']['rows']} rows; "
                 + ", ".join(f"{n} {a} partitions" for a, n in lin["input_partitions"].items()) + ")")
    if e := s.get("evaluation"):
        lines.append(f"  evaluation {e['window']} vs {e['reference']}: AUROC {e['challenger_auroc']}, difference "
                     f"{e['auroc_difference']} [{e['auroc_difference_low']}, {e['auroc_difference_high']}]; report "
                     f"{e['report_uri']}")
    if d := s.get("decision"):
        lines.append(f"  decision ({d['outcome']}, run {d['run_id'][:8]}):")
        lines += [f"    {'PASS' if x['passed'] else 'FAIL'} {x['detail']}" for x in d["rules"]]
    for p in s["pointer_history"]:
        lines.append(f"  pointer {p['sequence']}: {p['action']} by {p['actor']} ({p['reason']}), run {p['run_id'][:8]}")
    if s.get("model_card"):
        import re

        card = re.sub(r"!\[([^\]]*)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)",
                      lambda m: f"[image: {m.group(1)}, {len(m.group(2)) * 3 // 4} bytes embedded]", s["model_card"])
        lines += ["", card]
    return "\n".join(lines)
