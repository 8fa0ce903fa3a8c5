"""Shared resources: where data lives, where raw data comes from, and the model registry."""

from __future__ import annotations

import os
from typing import Any

from resources.lakehouse import LakehouseResource, default_root
from resources.model_registry import ModelRegistryResource
from resources.refs_io_manager import JsonRefIOManager
from resources.sources import RawSourceResource


def build_resources(lakehouse_root: str | None = None, landing_root: str | None = None) -> dict[str, Any]:
    """Resources from arguments, else environment (ML_LAKEHOUSE_ROOT, ML_LANDING_URI), else defaults.

    `landing_root` holds one landing folder per use case (`<root>/<use case>/<table>/...`); a use case
    without one (and without its own `landing_uri`) reads its tables' declared sources."""
    lakehouse = LakehouseResource(root=lakehouse_root or default_root())
    return {
        "lakehouse": lakehouse,
        "raw_source": RawSourceResource(landing_root=landing_root or os.environ.get("ML_LANDING_URI") or None),
        "model_registry": ModelRegistryResource(lakehouse=lakehouse),
        "ref_io_manager": JsonRefIOManager(lakehouse=lakehouse),
    }
