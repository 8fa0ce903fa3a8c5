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


SQL_FILE_PREFIX = "file:"


def inline_sql_files(data: object, folder: Path) -> object:
    """Any string `file:<name>.sql` in a use case's attributes is replaced by that file's text (beside the
    `defs.yaml`): long expressions live in SQL files next to the YAML."""
    if isinstance(data, dict):
        return {k: inline_sql_files(v, folder) for k, v in data.items()}
    if isinstance(data, list):
        return [inline_sql_files(v, folder) for v in data]
    if isinstance(data, str) and data.startswith(SQL_FILE_PREFIX) and data.endswith(".sql"):
        path = (folder / data.removeprefix(SQL_FILE_PREFIX).strip()).resolve()
        if folder.resolve() not in path.parents:
            raise ValueError(f"{data!r}: SQL files must be inside {folder}")
        if not path.is_file():
            raise FileNotFoundError(f"{data!r}: no file {path}")
        return path.read_text().strip().rstrip(";")
    return data


def spec_from_attributes(attributes: dict, folder: Path) -> UseCaseSpec:
    return UseCaseSpec.model_validate(inline_sql_files(attributes, folder))


def load_spec(path: Path) -> UseCaseSpec:
    """A use case from its `defs.yaml` (the component's `attributes`), cross-references checked."""
    from ml_assets.components.references import check_references

    document = yaml.safe_load(Path(path).read_text())
    spec = spec_from_attributes(document["attributes"], Path(path).parent)
    check_references(spec, path)
    return spec


@cache
def use_cases() -> dict[str, UseCaseSpec]:
    specs = [load_spec(p) for p in spec_files()]
    return {s.name: s for s in specs}


def use_case(name: str | None = None) -> UseCaseSpec:
    """The named use case; without a name, `$ML_USE_CASE`, or the only one there is."""
    import os

    known = use_cases()
    name = name or os.environ.get("ML_USE_CASE")
    if name is None:
        if len(known) != 1:
            raise KeyError(f"several use cases ({sorted(known)}): choose one with --use-case or ML_USE_CASE")
        name = next(iter(known))
    try:
        return known[name]
    except KeyError:
        raise KeyError(f"no use case {name!r}; known: {sorted(known)} (in {DEFS_FOLDER})") from None
