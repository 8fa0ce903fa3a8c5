"""Command line: `mlp [--use-case NAME] COMMAND`. Every command that changes state launches a Dagster
run against the instance in $DAGSTER_HOME, so it shows in the UI's history. Expected refusals and bad
input print one line (`mlp: error: ...`) and exit 2; a failed run prints its step errors and exits 1."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _spec(args: argparse.Namespace):
    from ml_assets.spec.catalog import use_case

    return use_case(args.use_case)


def _platform(args: argparse.Namespace, landing: str | None = None):
    import dagster as dg

    from ml_assets.definitions import build_definitions
    from ml_assets.ops.runner import Platform
    from resources import build_resources

    defs = build_definitions(build_resources(landing_root=landing)) if landing else build_definitions()
    return Platform(defs, dg.DagsterInstance.get(), log_level=args.log_level)


def _landing(args: argparse.Namespace) -> Path:
    return Path(os.path.abspath(args.landing or os.environ.get("ML_LANDING_URI") or ".landing"))


def cmd_demo(args: argparse.Namespace) -> int:
    from ml_assets.ops.demo import run_demo
    from ml_assets.ops.runner import check_partition

    spec, root = _spec(args), _landing(args)
    check_partition(spec, args.last, "--last")
    return run_demo(_platform(args, str(root)), spec, root / spec.name, args.last, args.partitions_per_tick)


def cmd_quickstart(args: argparse.Namespace) -> int:
    from ml_assets.ops.demo import run_quickstart

    return run_quickstart(_platform(args), _spec(args))


def cmd_replay(args: argparse.Namespace) -> int:
    from datetime import date

    from ml_assets.ops.replay import print_replay, run_replay
    from ml_assets.ops.runner import check_partition

    spec, root = _spec(args), _landing(args)
    first = date.fromisoformat(check_partition(spec, args.first, "--first") or str(spec.partitions_start))
    last = date.fromisoformat(check_partition(spec, args.last, "--last") or str(spec.partitions_end))
    print(f"[{spec.name}] replaying {first}..{last} through the sensors; landing {root / spec.name}")
    print_replay(run_replay(_platform(args, str(root)), spec, root / spec.name, first, last,
                            args.partitions_per_tick))
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    from ml_assets.audit.views import render_versions, version_statuses

    rows, problems = version_statuses(_ledger(args))
    if args.json:
        print(json.dumps({"versions": [r.model_dump(mode="json") for r in rows], "problems": problems}, indent=2))
    else:
        print(render_versions(rows, problems))
    return 0 if all(r.artifact_verifies and r.record_verifies is not False for r in rows) and not problems else 1


def cmd_status(args: argparse.Namespace) -> int:
    from ml_assets.audit.views import render_status, status

    result = status(_ledger(args), _spec(args))
    print(json.dumps(result, indent=2, default=str) if args.json else render_status(result))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from ml_assets.audit.views import render_show, show

    result = show(_ledger(args), args.version)
    print(json.dumps(result, indent=2, default=str) if args.json else render_show(result))
    return 0


def _ledger(args: argparse.Namespace):
    import dagster as dg

    from ml_assets.audit.ledger import Ledger
    from ml_assets.definitions import defs

    return Ledger(dg.DagsterInstance.get(), defs.resources["lakehouse"], defs.resources["model_registry"],
                  _spec(args).name)


def cmd_trace(args: argparse.Namespace) -> int:
    from ml_assets.audit.trace import render, trace

    result = trace(_ledger(args), args.id)
    print(result.model_dump_json(indent=2) if args.json else render(result, args.verbose))
    return 0 if result.verified else 1


def cmd_explain(args: argparse.Namespace) -> int:
    from ml_assets.audit import explain as ex

    ledger = _ledger(args)
    if args.against or args.day or args.vs:
        if args.against:
            result = ex.against_version(ledger, args.id, args.against)
        else:
            other = args.vs or ex.same_entity_on(ledger, _spec(args), args.id, args.day)
            result = ex.explain_change(ledger, ex.subject(ledger, args.id), ex.subject(ledger, other))
        print(result.model_dump_json(indent=2) if args.json else ex.render_change(result, args.top))
    else:
        single = ex.explain(ledger, args.id)
        print(single.model_dump_json(indent=2) if args.json else ex.render_explanation(single, args.top))
    return 0


def cmd_audit_bundle(args: argparse.Namespace) -> int:
    from ml_assets.audit.bundle import check_bundle, write_bundle

    if args.verify:
        check_bundle(Path(args.verify))
        print(f"{args.verify}: every file matches MANIFEST.sha256 and the records agree with each other")
        return 0
    if not args.version or not args.out:
        raise ValueError("give VERSION and --out DIR to write a bundle, or --verify DIR to check one")
    out = write_bundle(_ledger(args), args.version, Path(args.out))
    print(f"wrote {out} ({sum(1 for p in out.rglob('*') if p.is_file())} files); check it with "
          f"`mlp audit-bundle --verify {out}`")
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    from ml_assets.audit.openlineage import export

    count = export(_ledger(args), Path(args.out))
    print(f"wrote {count} OpenLineage run events to {args.out} (one JSON event per line)")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from ml_assets.ops.runner import Platform

    result = _platform(args).rollback(_spec(args), args.version, args.reason, args.actor, raise_on_error=False)
    if result.success:
        print(f"run {result.run_id}: production -> {args.version}")
        return 0
    print(f"mlp: rollback refused (run {result.run_id}): {Platform.failure_text(result)}", file=sys.stderr)
    return 1


def cmd_reproduce(args: argparse.Namespace) -> int:
    from ml_assets.ops.demo import summary

    platform = _platform(args)
    result = platform.reproduce(_spec(args), args.versions or None)
    summary(platform, _spec(args), result)
    return 0 if result.success else 1


def cmd_schema(args: argparse.Namespace) -> int:
    from ml_assets.spec.schema_doc import render_schema

    print(render_schema())
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from ml_assets.spec.draft import write_draft

    path = write_draft(args.name, Path(args.source), Path(args.out) if args.out else None)
    print(f"drafted {path}: edit it (label, features, windows), then `mlp --use-case {args.name} quickstart`")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from ml_assets.serving.app import ServingConfig
    from ml_assets.serving.server import serve

    config = ServingConfig(max_batch=args.max_batch, poll_seconds=args.poll_seconds)
    if args.build_state:
        from ml_assets.serving.server import build_state

        built = build_state(args.use_case, None if args.build_state == "newest" else args.build_state)
        print(f"built serving state {built}")
    print(f"serving {args.use_case or os.environ.get('ML_USE_CASE') or 'the only use case'} on "
          f"http://{args.host}:{args.port} (POST /v1/<use case>/predict, /healthz, /readyz, /metrics)", flush=True)
    return serve(args.use_case, args.host, args.port, config, args.log_level)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="mlp", description=__doc__)
    top.add_argument("--use-case", default=None, help="use case name (default: $ML_USE_CASE, or the only one)")
    top.add_argument("--log-level", default="WARNING")
    sub = top.add_subparsers(dest="command", required=True)

    def command(name: str, fn, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--use-case", default=argparse.SUPPRESS, help="use case name (also accepted before the command)")
        p.set_defaults(fn=fn)
        return p

    for name, fn, text in (("demo", cmd_demo, "replay the use case through the sensors, reproduce, summarize"),
                           ("replay", cmd_replay, "replay partitions through the real sensors")):
        p = command(name, fn, text)
        p.add_argument("--first", default=None, help="first partition (default: the use case's first)")
        p.add_argument("--last", default=None, help="last partition (default: the use case's last)")
        p.add_argument("--landing", default=None, help="landing root (default: $ML_LANDING_URI or .landing)")
        p.add_argument("--partitions-per-tick", type=int, default=None if name == "demo" else 1,
                       help="partitions landed between sensor evaluations")
    command("quickstart", cmd_quickstart, "batch path without sensors: ingest, train, decide, score")
    vs = command("versions", cmd_versions, "registered versions: serving/promoted/pinned/refused, verification flags")
    vs.add_argument("--json", action="store_true")
    st = command("status", cmd_status, "what serves, its age in data time, the last decision, drift and health")
    st.add_argument("--json", action="store_true")
    sh = command("show", cmd_show, "one version: card, evaluation, decision, pointer history, lineage")
    sh.add_argument("version")
    sh.add_argument("--json", action="store_true")
    tr = command("trace", cmd_trace, "trace a prediction (or event) id, batch or online, to raw bytes, verifying "
                 "every hash")
    tr.add_argument("id", help="a prediction id `<version>/<event id>`, or an event id (its newest prediction); "
                    "batch and online records with the same id are all listed, with their source")
    tr.add_argument("--json", action="store_true", help="every hop as JSON")
    tr.add_argument("--verbose", action="store_true", help="list every partition, not ranges")
    ex = command("explain", cmd_explain, "feature attributions of a prediction, or why it changed (model vs data)")
    ex.add_argument("id", help="a prediction id `<version>/<event id>`, or an event id")
    other = ex.add_mutually_exclusive_group()
    other.add_argument("--against", metavar="VERSION", help="the same event scored by another version")
    other.add_argument("--day", metavar="PARTITION", help="the same entity (entity_columns) on another partition")
    other.add_argument("--vs", metavar="PREDICTION_ID", help="any other recorded prediction")
    ex.add_argument("--top", type=int, default=8, help="features to list")
    ex.add_argument("--json", action="store_true")
    ab = command("audit-bundle", cmd_audit_bundle, "write one version's evidence with a sha256 manifest, or verify one")
    ab.add_argument("version", nargs="?")
    ab.add_argument("--out", default=None, help="a new folder to write the bundle into")
    ab.add_argument("--verify", default=None, metavar="DIR", help="check a bundle offline (no instance needed)")
    ln = command("lineage", cmd_lineage, "export the recorded runs as OpenLineage events (JSON lines)")
    ln.add_argument("--out", required=True, help="file to write")
    rb = command("rollback", cmd_rollback, "pin production to a registered version (a Dagster run)")
    rb.add_argument("--version", required=True)
    rb.add_argument("--reason", required=True)
    rb.add_argument("--actor", default=os.environ.get("USER", "cli"))
    rp = command("reproduce", cmd_reproduce, "retrain registered versions from recorded inputs, compare hashes")
    rp.add_argument("versions", nargs="*")
    command("schema", cmd_schema, "print the use-case YAML schema (from the spec models)")
    init = command("init", cmd_init, "draft a use-case YAML from a data file")
    init.add_argument("name")
    init.add_argument("--from", dest="source", required=True, help="a Parquet or CSV file")
    init.add_argument("--out", default=None, help="where to write (default: ml_assets/defs/NAME/defs.yaml)")
    sv = command("serve", cmd_serve, "online scoring API on uvicorn (one worker): predict, health, metrics")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8080)
    sv.add_argument("--max-batch", type=int, default=1000, help="events per request (more: 413)")
    sv.add_argument("--poll-seconds", type=float, default=5.0, help="production pointer / serving state polling")
    sv.add_argument("--build-state", nargs="?", const="newest", default=None, metavar="PARTITION",
                    help="first materialize serving_state (a run of the <use case>__serving job) for PARTITION, "
                    "default: the newest labelled partition + the label delay")
    return top


def main(argv: list[str] | None = None) -> int:
    from ml_assets.errors import PlatformError

    os.environ.setdefault("WHYLOGS_NO_ANALYTICS", "True")
    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except (PlatformError, KeyError, ValueError, FileExistsError, FileNotFoundError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"mlp: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
