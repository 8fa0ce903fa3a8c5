"""`UseCaseComponent`: a use case's `defs.yaml` attributes are the spec itself (`ml_assets.spec`).

The component's attribute model *is* `UseCaseSpec` (`get_model_cls`), so Dagster validates the YAML
against the spec's pydantic models when the code location loads and reports a wrong type, a missing
field or an unknown key with the file and line. `check_references` then checks what the fields say
about each other (columns in SQL, keys, slices, windows, inputs) and names file, field and reason.
The spec stays a plain pydantic model (dates, spans), usable without Dagster by the CLI and tests.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from ml_assets.components.references import check_references
from ml_assets.spec import UseCaseSpec


class UseCaseComponent(dg.Component):
    """One ML use case: tables and contracts, label, features, model, gates and monitoring policy."""

    def __init__(self, spec: UseCaseSpec):
        self.spec = spec

    @classmethod
    def get_model_cls(cls) -> type[UseCaseSpec]:
        return UseCaseSpec

    @classmethod
    def load(cls, attributes: Any, context: dg.ComponentLoadContext) -> UseCaseComponent:
        from ml_assets.spec.catalog import spec_from_attributes

        data = attributes.model_dump(mode="json") if isinstance(attributes, UseCaseSpec) else attributes
        spec = spec_from_attributes(data, context.path)  # `file:<name>.sql` values read from beside the YAML
        check_references(spec, context.path / "defs.yaml")
        return cls(spec)

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        from ml_assets.factory import build_use_case

        return build_use_case(self.spec)
