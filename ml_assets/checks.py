"""Contract checks that guard writes: evaluated before a file is replaced, recorded as Dagster
asset-check evaluations (visible in the UI), and fatal (no retry) when broken, so a bad batch never
overwrites a good partition."""

from __future__ import annotations

from typing import NoReturn

import dagster as dg


def fail_contract(context: dg.AssetExecutionContext, key: dg.AssetKey, check_name: str, message: str,
                  problems: dict[str, list[str]] | None = None) -> NoReturn:
    for partition, items in (problems or {"": [message]}).items():
        context.log_event(dg.AssetCheckEvaluation(
            asset_key=key, check_name=check_name, passed=False, severity=dg.AssetCheckSeverity.ERROR,
            partition=partition or None,
            metadata={"problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in items))},
        ))
    raise dg.Failure(description=message, allow_retries=False)
