"""Stores the small JSON documents ("refs") that pass between unpartitioned assets: a training set's
location, a model version, an evaluation, a decision. Big data never goes through here.

Refs are immutable: each output is a new file (`<asset>/refs/<run id>-<sha256 prefix>.json`) whose
uri and sha256 go into the materialization's metadata, so an old materialization always resolves
to what it produced. An input is the upstream's newest recorded ref, sha256-verified.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from ml_assets import lineage
from ml_assets.errors import MissingDataError
from resources.lakehouse import LakehouseResource, sha256_bytes


class JsonRefIOManager(dg.ConfigurableIOManager):
    lakehouse: LakehouseResource

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        import json

        data = json.dumps(obj, indent=2, sort_keys=True, default=str).encode()
        sha = sha256_bytes(data)
        uri = self.lakehouse.uri(*context.asset_key.path, "refs", f"{context.run_id}-{sha[:12]}.json")
        self.lakehouse.write_bytes(uri, data)
        context.add_output_metadata({"ref_uri": dg.MetadataValue.path(uri), "ref_sha256": sha})

    def load_input(self, context: dg.InputContext) -> Any:
        return read_latest_ref(context.instance, self.lakehouse, context.asset_key)[1]


def read_latest_ref(instance: dg.DagsterInstance, lakehouse: LakehouseResource, key: dg.AssetKey
                    ) -> tuple[str, Any]:
    """(run id, value) of the asset's newest recorded ref, sha256-verified."""
    import json

    latest = lineage.recorded_latest(instance, key)
    if latest is None or "ref_uri" not in latest[1]:
        raise MissingDataError(f"asset {key.to_user_string()} has no recorded value; materialize it first")
    record, meta = latest
    data = lakehouse.read_bytes(str(meta["ref_uri"]), str(meta["ref_sha256"]), what=f"asset {key.to_user_string()}")
    return record.run_id, json.loads(data)
