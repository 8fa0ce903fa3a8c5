"""The tabular network: one embedding per categorical feature, concatenated with the numeric
features, then an MLP to a single logit."""

from __future__ import annotations

import torch
from torch import nn


class TabularNet(nn.Module):
    def __init__(self, n_numeric: int, cardinalities: list[int], embedding_dim: int,
                 hidden_sizes: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(n, embedding_dim) for n in cardinalities)
        layers: list[nn.Module] = []
        width = n_numeric + embedding_dim * len(cardinalities)
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        parts = [numeric] + [emb(categorical[:, i]) for i, emb in enumerate(self.embeddings)]
        return self.mlp(torch.cat(parts, dim=1)).squeeze(1)
