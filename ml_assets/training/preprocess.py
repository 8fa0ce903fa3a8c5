"""Turns feature frames into model tensors. Fitted on the training split, stored with the weights,
and applied unchanged at scoring time (no train/serve skew)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl
    import torch


@dataclass(frozen=True)
class Preprocessor:
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]
    vocabularies: dict[str, tuple[str, ...]]  # index 0 is reserved for unseen/rare/null

    @classmethod
    def fit(cls, frame: pl.DataFrame, numeric: tuple[str, ...], categorical: tuple[str, ...],
            min_count: int) -> Preprocessor:
        import polars as pl

        stats = frame.select(
            [pl.col(c).cast(pl.Float64).mean().alias(f"{c}__mean") for c in numeric]
            + [pl.col(c).cast(pl.Float64).std().alias(f"{c}__std") for c in numeric]
        ).row(0, named=True)
        means = tuple(float(stats[f"{c}__mean"] or 0.0) for c in numeric)
        stds = tuple(float(stats[f"{c}__std"] or 0.0) or 1.0 for c in numeric)
        vocabularies = {}
        for c in categorical:
            counts = frame.get_column(c).cast(pl.String).drop_nulls().value_counts()
            kept = counts.filter(pl.col("count") >= min_count).get_column(c).sort().to_list()
            vocabularies[c] = tuple(kept)
        return cls(numeric, categorical, means, stds, vocabularies)

    def cardinalities(self) -> list[int]:
        return [len(self.vocabularies[c]) + 1 for c in self.categorical]

    def encode(self, frame: pl.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
        """(numeric float32 [n, d], categorical int64 [n, k]); nulls -> mean (0 after scaling); a category
        outside the vocabulary, or null, -> 0."""
        import torch

        numeric, categorical = self._expressions
        # Row-major straight from Polars: its default (column-major) would cost a second copy in torch.
        return (torch.from_numpy(frame.select(numeric).to_numpy(order="c")),
                torch.from_numpy(frame.select(categorical).to_numpy(order="c")))

    @cached_property
    def _expressions(self) -> tuple[list[pl.Expr], list[pl.Expr]]:
        """Built once per preprocessor: building them cost ~2 ms per call, most of a one-row request.
        A category is its index in an Enum of the vocabulary, + 1 (a non-strict cast makes any other value
        null, then 0): the same codes as a lookup table, at half the cost of `replace_strict` on 1M rows."""
        import polars as pl

        numeric = [((pl.col(c).cast(pl.Float64) - m) / s).fill_null(0.0).fill_nan(0.0).cast(pl.Float32)
                   for c, m, s in zip(self.numeric, self.means, self.stds, strict=True)]
        categorical = [(pl.col(c).cast(pl.String).cast(pl.Enum(list(self.vocabularies[c])), strict=False)
                        .to_physical().cast(pl.Int64) + 1).fill_null(0).alias(c) for c in self.categorical]
        return numeric, categorical

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessor:
        return cls(
            numeric=tuple(data["numeric"]),
            categorical=tuple(data["categorical"]),
            means=tuple(data["means"]),
            stds=tuple(data["stds"]),
            vocabularies={k: tuple(v) for k, v in data["vocabularies"].items()},
        )
