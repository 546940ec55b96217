"""MLP encoder/decoder for tabular (feature-vector) modalities ``[B, D]``."""

from __future__ import annotations

import torch
from torch import nn


def _mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    prev = in_dim
    for width in hidden:
        layers += [nn.Linear(prev, width), nn.SiLU()]
        prev = width
    layers.append(nn.Linear(prev, out_dim))
    return nn.Sequential(*layers)


class TabularEncoder(nn.Module):
    """``[B, D] -> [B, out_dim]`` (raw posterior parameters)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: tuple[int, ...] = (256, 256)) -> None:
        super().__init__()
        self.net = _mlp(in_dim, hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TabularDecoder(nn.Module):
    """``[N, latent_dim] -> [N, D]`` (means of the feature likelihood)."""

    def __init__(self, latent_dim: int, out_dim: int, hidden: tuple[int, ...] = (256, 256)) -> None:
        super().__init__()
        self.net = _mlp(latent_dim, tuple(reversed(hidden)), out_dim)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.net(latent)
