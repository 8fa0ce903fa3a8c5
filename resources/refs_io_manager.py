"""Stores the small JSON documents ("refs") that pass between unpartitioned assets: a training
set's location, a model version, an evaluation summary. Big data never goes through here: table
assets write Parquet themselves and downstream assets read it by partition."""

from __future__ import annotations

from typing import Any

import dagster as dg

from resources.lakehouse import LakehouseResource


class JsonRefIOManager(dg.ConfigurableIOManager):
    lakehouse: LakehouseResource

    def _uri(self, key: dg.AssetKey) -> str:
        return self.lakehouse.uri(*key.path[:-1], key.path[-1], "ref.json")

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        receipt = self.lakehouse.write_json(self._uri(context.asset_key), obj)
        context.add_output_metadata({"ref_uri": dg.MetadataValue.path(receipt.uri)})

    def load_input(self, context: dg.InputContext) -> Any:
        uri = self._uri(context.asset_key)
        if not self.lakehouse.exists(uri):
            raise FileNotFoundError(f"asset {context.asset_key.to_user_string()} has no stored value at {uri}; "
                                    "materialize it first")
        return self.lakehouse.read_json(uri)
