"""whylogs profiles of feature partitions (the sketches drift detection compares)."""

import dagster as dg

from ml_assets import tables
from ml_assets.errors import fatal_errors
from ml_assets.features import compute
from ml_assets.keys import UseCaseKeys
from ml_assets.policies import TRANSIENT_RETRY, asset_defaults, code_version, partitions_def
from ml_assets.spec import UseCaseSpec
from ml_assets.text import markdown_table
from resources.lakehouse import LakehouseResource


def build_profile_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    keys = UseCaseKeys(spec.name)

    @dg.asset(
        key=keys.feature_profiles,
        deps=[keys.features],
        description="A whylogs profile of each feature partition (sketches for drift detection). "
        "Identifier columns are excluded; only categorical features keep frequent items.",
        kinds={"whylogs"},
        partitions_def=partitions_def(spec),
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=TRANSIENT_RETRY,
        code_version=code_version(spec, __name__, "features"),
        **asset_defaults(spec, "monitoring"),
    )
    def feature_profiles(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
        import polars as pl

        from ml_assets.profiles import whylogs_profile as wp

        with fatal_errors():
            partitions = tables.partition_keys(context)
            frame, receipts = tables.read_partitions(context, lakehouse, spec, keys.features, partitions)
            numeric, categorical = list(spec.features.numeric), list(spec.features.categorical)
            shas = {}
            for day in partitions:
                pkey = day.isoformat()
                part = frame.filter(pl.col(compute.PARTITION) == day) if frame.width else frame
                view = wp.profile_frame(part, numeric, categorical)
                receipt = lakehouse.write_bytes(lakehouse.partition_uri(spec.name, keys.feature_profiles.path[-1],
                                                                        pkey, "bin"), wp.serialize(view))
                shas[pkey] = receipt.sha256
                summary = wp.summary_rows(view)
                context.add_asset_metadata({
                    "uri": dg.MetadataValue.path(receipt.uri),
                    "sha256": receipt.sha256,
                    "profiled_rows": part.height,
                    "profiled_columns": len(summary),
                    "summary": dg.MetadataValue.md(markdown_table(summary)),
                    "input_receipts": dg.MetadataValue.json(
                        {keys.features.to_user_string(): {pkey: receipts[pkey].storage_id}}),
                }, partition_key=pkey)
            return dg.MaterializeResult(data_version=tables.data_version(shas))

    return [feature_profiles]
