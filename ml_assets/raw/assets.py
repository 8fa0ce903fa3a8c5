"""Raw assets: source tables copied into the lakehouse as they arrived (daily events, dimensions)."""


import dagster as dg

from ml_assets import tables
from ml_assets.keys import UseCaseKeys
from ml_assets.policies import TRANSIENT_RETRY, asset_defaults, code_version, daily_partitions, table_metadata
from ml_assets.spec import SourceTableSpec, UseCaseSpec
from resources.lakehouse import LakehouseResource
from resources.sources import RawSourceResource

_RAW_DATE = "_partition_date"


def build_raw_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    return [_daily(spec, t) if t.partitioned else _dimension(spec, t) for t in spec.sources]


def _common(spec: UseCaseSpec, table: SourceTableSpec) -> dict:
    return {
        **asset_defaults(spec, "raw"),
        "key": UseCaseKeys(spec).raw(table.name),
        "description": f"Raw `{table.name}` as delivered by the source. {table.description}",
        "kinds": {"polars", "parquet"},
        "code_version": code_version(spec, [__name__, "resources.sources"], "sources"),
        "retry_policy": TRANSIENT_RETRY,
    }


def _daily(spec: UseCaseSpec, table: SourceTableSpec) -> dg.AssetsDefinition:
    key = UseCaseKeys(spec).raw(table.name)

    @dg.asset(**_common(spec, table), partitions_def=daily_partitions(spec),
              backfill_policy=dg.BackfillPolicy.single_run())
    def raw_daily(context: dg.AssetExecutionContext, lakehouse: LakehouseResource,
                  raw_source: RawSourceResource) -> None:
        from resources.sources import partition_date_expr

        days = tables.partition_days(context)
        frame = raw_source.read(table, spec.embedded_package, days)
        frame = frame.with_columns(partition_date_expr(table).alias(_RAW_DATE))
        tables.write_daily(context, lakehouse, spec, key, frame, _RAW_DATE)

    return raw_daily


def _dimension(spec: UseCaseSpec, table: SourceTableSpec) -> dg.AssetsDefinition:
    @dg.asset(**_common(spec, table))
    def raw_dimension(lakehouse: LakehouseResource, raw_source: RawSourceResource) -> dg.MaterializeResult:
        frame = raw_source.read(table, spec.embedded_package)
        receipt = lakehouse.write_parquet(lakehouse.uri(spec.name, f"raw_{table.name}", "table.parquet"), frame)
        return dg.MaterializeResult(
            metadata={**table_metadata(frame), "uri": dg.MetadataValue.path(receipt.uri), "sha256": receipt.sha256}
        )

    return raw_dimension


def read_dimension(lakehouse: LakehouseResource, spec: UseCaseSpec, table: str):
    uri = lakehouse.uri(spec.name, f"raw_{table}", "table.parquet")
    if not lakehouse.exists(uri):
        raise dg.Failure(f"asset {UseCaseKeys(spec).raw(table).to_user_string()} is not materialized ({uri})",
                         allow_retries=False)
    return lakehouse.read_parquet(uri)
