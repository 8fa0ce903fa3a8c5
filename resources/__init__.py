"""Shared resources: where data lives, where raw data comes from, and the model registry."""

from __future__ import annotations

import os
from typing import Any

from resources.lakehouse import LakehouseResource, default_root
from resources.model_registry import ModelRegistryResource
from resources.refs_io_manager import JsonRefIOManager
from resources.sources import RawSourceResource


def build_resources(lakehouse_root: str | None = None, landing_uri: str | None = None) -> dict[str, Any]:
    """Resources from arguments, else environment (ML_LAKEHOUSE_ROOT, ML_LANDING_URI), else defaults."""
    lakehouse = LakehouseResource(root=lakehouse_root or default_root())
    landing = landing_uri or os.environ.get("ML_LANDING_URI")
    return {
        "lakehouse": lakehouse,
        "raw_source": RawSourceResource(kind="landing", landing_uri=landing) if landing else RawSourceResource(),
        "model_registry": ModelRegistryResource(lakehouse=lakehouse),
        "ref_io_manager": JsonRefIOManager(lakehouse=lakehouse),
    }
