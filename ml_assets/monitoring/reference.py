"""A model's drift reference: a whylogs profile of the features it was trained on and of its own
scores on them. Built once at registration and stored (sha256 in the version record). Pure."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ml_assets.spec import UseCaseSpec

if TYPE_CHECKING:
    import polars as pl

PREDICTION_COLUMN = "probability"


def reference_profile_bytes(spec: UseCaseSpec, model: Any, frame: pl.DataFrame) -> bytes:
    import polars as pl

    from ml_assets.profiles import whylogs_profile as wp

    scored = frame.with_columns(pl.Series(PREDICTION_COLUMN, model.score(frame).numpy(), dtype=pl.Float64))
    view = wp.profile_frame(scored, [*spec.features.numeric, PREDICTION_COLUMN], list(spec.features.categorical))
    return wp.serialize(view)
