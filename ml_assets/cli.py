"""Command line: `mlp demo`, `mlp versions`, `mlp rollback`, ... Every command that changes state
launches a Dagster run against the instance in $DAGSTER_HOME, so it shows in the UI's history."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ml_assets.usecases import USE_CASES


def _platform(log_level: str = "WARNING"):
    import dagster as dg

    from ml_assets.definitions import defs
    from ml_assets.runner import Platform

    return Platform(defs, dg.DagsterInstance.get(), log_level=log_level)


def _spec(name: str):
    for spec in USE_CASES:
        if spec.name == name:
            return spec
    raise SystemExit(f"unknown use case {name!r}; known: {[s.name for s in USE_CASES]}")


def _registry():
    from ml_assets.definitions import defs

    return defs.resources["model_registry"]


def _landing_platform(args: argparse.Namespace):
    import dagster as dg

    from ml_assets.definitions import build_definitions
    from ml_assets.runner import Platform
    from resources import build_resources

    landing = os.path.abspath(args.landing)
    defs = build_definitions(build_resources(landing_uri=landing))
    return Platform(defs, dg.DagsterInstance.get(), log_level=args.log_level), Path(landing)


def cmd_demo(args: argparse.Namespace) -> int:
    from ml_assets.demo import run_demo

    platform, landing = _landing_platform(args)
    return run_demo(platform, _spec(args.use_case), landing, args.last, args.days_per_tick)


def cmd_quickstart(args: argparse.Namespace) -> int:
    from ml_assets.demo import run_quickstart

    return run_quickstart(_platform(args.log_level), _spec(args.use_case))


def cmd_replay(args: argparse.Namespace) -> int:
    from ml_assets.replay import print_replay, run_replay

    spec = _spec(args.use_case)
    platform, landing = _landing_platform(args)
    print(f"[{spec.name}] replaying {args.first}..{args.last} through the sensors; landing {landing}")
    print_replay(run_replay(platform, spec, landing, args.first, args.last, args.days_per_tick))
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    registry = _registry()
    production = registry.production(args.use_case) or {}
    for record in registry.versions(args.use_case):
        marker = "*" if record["version"] == production.get("version") else " "
        window = record["training_set"]
        print(f"{marker} {record['version']}  trained {window['train_start']}..{window['train_end']}  "
              f"sha256 {record['sha256'][:16]}  run {record['run_id'][:8]}  registered {record['registered_at']}")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    result = _platform(args.log_level).rollback(_spec(args.use_case), args.version, args.reason, args.actor)
    print(f"run {result.run_id}: production -> {args.version}" if result.success else "rollback failed")
    return 0 if result.success else 1


def cmd_reproduce(args: argparse.Namespace) -> int:
    platform = _platform(args.log_level)
    result = platform.reproduce(_spec(args.use_case), args.versions or None)
    lake = platform.defs.resources["lakehouse"]
    rows = lake.read_json(lake.uri(args.use_case, "registry", "reproducibility.json"))
    for row in rows:
        print(f"{row['version']}: weights {'identical' if row['weights_match'] else 'DIFFERENT'}; training set "
              f"{'rebuilt identically' if row['training_set_rebuilt_matches'] else 'differs'} {row.get('error', '')}")
    print(f"reproducibility rate {sum(r['weights_match'] for r in rows) / len(rows):.0%} (run {result.run_id})")
    return 0 if result.success else 1


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("WHYLOGS_NO_ANALYTICS", "True")
    parser = argparse.ArgumentParser(prog="mlp", description=__doc__)
    parser.add_argument("--use-case", default=USE_CASES[0].name)
    parser.add_argument("--log-level", default="WARNING")
    sub = parser.add_subparsers(dest="command", required=True)
    landing_default = os.environ.get("ML_LANDING_URI", ".landing")
    demo = sub.add_parser("demo", help="replay 2013 through the sensors, reproduce every version, summarize")
    demo.add_argument("--last", default=USE_CASES[0].partitions_end)
    demo.add_argument("--days-per-tick", type=int, default=7, help="land N days between sensor evaluations")
    demo.add_argument("--landing", default=landing_default)
    demo.set_defaults(fn=cmd_demo)
    sub.add_parser("quickstart", help="batch path without sensors: Jan-Feb ingest, train, evaluate, score"
                   ).set_defaults(fn=cmd_quickstart)
    sub.add_parser("versions", help="list registered model versions (* = production)").set_defaults(fn=cmd_versions)
    rb = sub.add_parser("rollback", help="pin production to a registered version (a Dagster run)")
    rb.add_argument("--version", required=True)
    rb.add_argument("--reason", required=True)
    rb.add_argument("--actor", default=os.environ.get("USER", "cli"))
    rb.set_defaults(fn=cmd_rollback)
    rp = sub.add_parser("reproduce", help="retrain registered versions from recorded inputs, compare hashes")
    rp.add_argument("versions", nargs="*")
    rp.set_defaults(fn=cmd_reproduce)
    rp2 = sub.add_parser("replay", help="replay the year day by day through the real sensors")
    rp2.add_argument("--first", default=USE_CASES[0].partitions_start)
    rp2.add_argument("--last", default=USE_CASES[0].partitions_end)
    rp2.add_argument("--landing", default=landing_default)
    rp2.add_argument("--days-per-tick", type=int, default=1, help="land N days between sensor evaluations")
    rp2.set_defaults(fn=cmd_replay)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
