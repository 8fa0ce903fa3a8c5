"""The use-case YAML schema, rendered from the spec models themselves (`mlp schema`,
docs/use-case-schema.md; a test keeps the file equal to this rendering)."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from ml_assets.spec import model as m

HEADER = """# Use-case YAML schema

Generated from `ml_assets/spec/model.py` by `mlp schema` (do not edit by hand). A use case is
`ml_assets/defs/<name>/defs.yaml` with `type: ml_assets.components.UseCaseComponent` and these fields
under `attributes:`. Fields with a default may be omitted. *Span*: a partition count (`28`) or a
duration (`28d`, `4w`, `3mo`, `1y`) that is a whole number of partitions of the cadence.
"""


def _models(root: type[BaseModel]) -> list[type[BaseModel]]:
    seen: list[type[BaseModel]] = []

    def visit(cls: type[BaseModel]) -> None:
        if cls in seen:
            return
        seen.append(cls)
        for info in cls.model_fields.values():
            for candidate in _flatten(info.annotation):
                if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                    visit(candidate)

    visit(root)
    return seen


def _flatten(annotation: Any) -> list[Any]:
    args = typing.get_args(annotation)
    return [annotation] if not args else [a for arg in args for a in _flatten(arg)]


def _type_name(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "").replace("ml_assets.spec.model.", "")
    text = text.replace("<class '", "").replace("'>", "").replace("datetime.date", "date")
    if "AfterValidator" in text or text.startswith("Annotated[int | str"):
        return "span"
    return text.replace("Annotated[Union[int, str], AfterValidator(func=check_span_syntax)]", "span")


def _default(info: Any) -> str:
    if info.is_required():
        return "**required**"
    if info.default_factory is not None:
        value = info.default_factory()
        return "(section defaults)" if isinstance(value, BaseModel) else f"`{value}`"
    return f"`{info.default}`" if info.default is not PydanticUndefined else ""


def render_schema() -> str:
    lines = [HEADER]
    for cls in _models(m.UseCaseSpec):
        lines += [f"## `{cls.__name__}`", "", (cls.__doc__ or "").strip().replace("\n    ", " "), "",
                  "| field | type | default | description |", "|---|---|---|---|"]
        for name, info in cls.model_fields.items():
            if cls is m.TableSpec and name == "name":
                continue
            desc = (info.description or "").replace("|", "\\|").replace("\n", " ")
            lines.append(f"| `{name}` | {_type_name(info.annotation).replace('|', 'or')} | {_default(info)} | {desc} |")
        lines.append("")
    return "\n".join(lines)
