"""The tabular network: an embedding per categorical feature, concatenated with the numeric
features, then an MLP to a single logit.

The per-feature embeddings live in one table (each feature's rows at its own offset), so a batch
needs one lookup and one backward instead of one per feature: same model, ~20% faster to train.
"""

from __future__ import annotations

import torch
from torch import nn


class TabularNet(nn.Module):
    def __init__(self, n_numeric: int, cardinalities: list[int], embedding_dim: int,
                 hidden_sizes: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        self.embedding = nn.Embedding(sum(cardinalities), embedding_dim)
        offsets = torch.tensor([0, *cardinalities[:-1]], dtype=torch.int64).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)  # derived from the preprocessor
        layers: list[nn.Module] = []
        width = n_numeric + embedding_dim * len(cardinalities)
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        embedded = self.embedding(categorical + self.offsets).flatten(1)
        return self.mlp(torch.cat([numeric, embedded], dim=1)).squeeze(1)
