"""The use cases of this code location, read from the defs folder (one `defs.yaml` per use case)
without building any Dagster definitions: what the CLI, the replay and tests use to find a spec."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

from ml_assets.spec.model import UseCaseSpec

DEFS_FOLDER = Path(__file__).resolve().parents[1] / "defs"
COMPONENT_TYPE = "ml_assets.components.UseCaseComponent"


def spec_files(folder: Path = DEFS_FOLDER) -> list[Path]:
    """Every `defs.yaml` in the folder that declares a use case (sorted)."""
    found = []
    for path in sorted(folder.glob("*/defs.yaml")):
        document = yaml.safe_load(path.read_text())
        if isinstance(document, dict) and document.get("type") == COMPONENT_TYPE:
            found.append(path)
    return found


def load_spec(path: Path) -> UseCaseSpec:
    """A use case from its `defs.yaml` (the component's `attributes`), cross-references checked."""
    from ml_assets.components.references import check_references

    document = yaml.safe_load(Path(path).read_text())
    spec = UseCaseSpec.model_validate(document["attributes"])
    check_references(spec, path)
    return spec


@cache
def use_cases() -> dict[str, UseCaseSpec]:
    specs = [load_spec(p) for p in spec_files()]
    return {s.name: s for s in specs}


def use_case(name: str | None = None) -> UseCaseSpec:
    """The named use case; without a name, the only one (or `flight_delay`, the embedded default)."""
    known = use_cases()
    if name is None:
        name = next(iter(known)) if len(known) == 1 else "flight_delay"
    try:
        return known[name]
    except KeyError:
        raise KeyError(f"no use case {name!r}; known: {sorted(known)} (in {DEFS_FOLDER})") from None
