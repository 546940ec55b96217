"""1-D convolutional encoder/decoder for token sequences ``[B, L]`` (captions).

In the spirit of MMVAE+'s CUB caption networks: the one-hot tokens are embedded (an
``nn.Embedding`` is exactly a linear layer on the one-hot input), convolutions with stride 2
run along the sequence until it is at most 4 long, and the decoder mirrors them with
transposed convolutions and a per-position linear map to vocabulary logits, read by the
categorical likelihood.

* ``light`` -- embedding 64, channels 64 / 128 / 128: the CPU default.
* ``resnet`` -- embedding 128, channels 128 / 256 / 512, the size of the MMVAE+ caption nets; for GPUs.
"""

from __future__ import annotations

import torch
from torch import nn

from .images import downsampled_sizes


def _lengths(length: int) -> list[int]:
    """Sequence lengths visited by stride-2 convolutions: ``32 -> [32, 16, 8, 4]``."""
    return [h for h, _ in downsampled_sizes(length, 1)]


def _sizes(arch: str, n_stages: int) -> tuple[int, list[int], int]:
    """(embedding dim, channels per stage finest first, hidden width) for ``arch``."""
    if arch not in ("light", "resnet"):
        raise ValueError(f"unknown text architecture {arch!r}; choose 'light' or 'resnet'")
    emb, base, cap, hidden = (64, 64, 128, 256) if arch == "light" else (128, 128, 512, 512)
    return emb, [min(base * 2**i, cap) for i in range(n_stages)], hidden


class TextEncoder(nn.Module):
    """Token ids ``[B, L]`` (integers in ``0..vocab_size-1``) -> ``[B, out_dim]`` raw posterior parameters."""

    def __init__(self, vocab_size: int, length: int, out_dim: int, arch: str = "light") -> None:
        super().__init__()
        lengths = _lengths(length)
        emb, chans, hidden = _sizes(arch, len(lengths) - 1)
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, emb)
        layers: list[nn.Module] = []
        prev = emb
        for ch in chans:
            layers += [nn.Conv1d(prev, ch, kernel_size=3, stride=2, padding=1), nn.SiLU()]
            prev = ch
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Sequential(nn.Linear(prev * lengths[-1], hidden), nn.SiLU(), nn.Linear(hidden, out_dim))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids.long()).transpose(1, 2)  # [B, emb, L]
        return self.head(self.features(x))


class TextDecoder(nn.Module):
    """``[N, latent_dim]`` -> logits ``[N, L, vocab_size]``."""

    def __init__(self, latent_dim: int, vocab_size: int, length: int, arch: str = "light") -> None:
        super().__init__()
        self.lengths = _lengths(length)
        _, chans, hidden = _sizes(arch, len(self.lengths) - 1)
        self.start_shape = (chans[-1], self.lengths[-1])
        self.fc = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.SiLU(), nn.Linear(hidden, chans[-1] * self.lengths[-1]), nn.SiLU()
        )
        out_chans = list(reversed(chans[:-1])) + [chans[0]]
        self.ups = nn.ModuleList()
        prev = chans[-1]
        for ch in out_chans:
            self.ups.append(nn.ConvTranspose1d(prev, ch, kernel_size=3, stride=2, padding=1))
            prev = ch
        self.to_logits = nn.Conv1d(prev, vocab_size, kernel_size=1)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        x = self.fc(latent).view(latent.shape[0], *self.start_shape)
        for up, target in zip(self.ups, reversed(self.lengths[:-1])):
            x = torch.nn.functional.silu(up(x, output_size=[target]))
        return self.to_logits(x).transpose(1, 2)  # [N, L, vocab]
