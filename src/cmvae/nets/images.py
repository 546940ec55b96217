"""Convolutional encoders/decoders for image modalities ``[B, C, H, W]``.

Two sizes:

* ``light`` -- three strided convolutions; the CPU default (a 5-modality PolyMNIST
  training step runs at a few hundred samples/s on 2 cores).
* ``resnet`` -- residual blocks at every resolution with wider channels, the size of
  the networks used in the paper's PolyMNIST experiments; meant for GPUs.

Both downsample by 2 until the feature map is at most 4x4 and the decoder mirrors the
exact spatial sizes, so any resolution works (28x28 PolyMNIST, 64x64 CUB images, ...).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

ImageArch = Literal["light", "resnet"]


def downsampled_sizes(height: int, width: int, min_size: int = 4) -> list[tuple[int, int]]:
    """Spatial sizes visited by stride-2 convolutions (kernel 3, padding 1: n -> ceil(n / 2)).

    ``(28, 28) -> [(28, 28), (14, 14), (7, 7), (4, 4)]``; at least one downsampling step.
    """
    sizes = [(height, width)]
    while max(sizes[-1]) > min_size or len(sizes) == 1:
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


def _down(in_ch: int, out_ch: int) -> nn.Conv2d:
    # kernel 3 / stride 2 / padding 1 maps n -> ceil(n / 2) for every n.
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=2, padding=1)


class _ResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    @property
    def residual_branch_end(self) -> nn.Module:
        """The layer that ends the residual branch (zeroed by :func:`cmvae.nets.init.he_init`)."""
        return self.body[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _channels(arch: ImageArch, n_stages: int, *, decoder: bool = False) -> list[int]:
    """Channels per stage, finest first. The light decoder is half as wide as its encoder:
    it runs M times more often (every modality's latent is decoded by every decoder)."""
    base = (16 if decoder else 32) if arch == "light" else 64
    return [min(base * 2**i, 256 if arch == "light" else 512) for i in range(n_stages)]


class ImageEncoder(nn.Module):
    """``[B, C, H, W] -> [B, out_dim]`` (raw posterior parameters)."""

    def __init__(self, shape: tuple[int, int, int], out_dim: int, arch: ImageArch = "light") -> None:
        super().__init__()
        channels, height, width = shape
        sizes = downsampled_sizes(height, width)
        chans = _channels(arch, len(sizes) - 1)
        layers: list[nn.Module] = []
        prev = channels
        for ch in chans:
            layers.append(_down(prev, ch))
            layers.append(nn.SiLU())
            if arch == "resnet":
                layers += [_ResBlock(ch), _ResBlock(ch)]
            prev = ch
        self.features = nn.Sequential(*layers, nn.Flatten())
        h, w = sizes[-1]
        hidden = 256 if arch == "light" else 512
        self.head = nn.Sequential(nn.Linear(prev * h * w, hidden), nn.SiLU(), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ImageDecoder(nn.Module):
    """``[N, latent_dim] -> [N, C, H, W]`` (means, squashed to [0, 1] by a sigmoid, or logits)."""

    def __init__(
        self, shape: tuple[int, int, int], latent_dim: int, arch: ImageArch = "light", *, sigmoid: bool = True
    ) -> None:
        super().__init__()
        channels, height, width = shape
        self.sizes = downsampled_sizes(height, width)
        chans = _channels(arch, len(self.sizes) - 1, decoder=True)
        h, w = self.sizes[-1]
        hidden = 256 if arch == "light" else 512
        self.start_shape = (chans[-1], h, w)
        self.fc = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.SiLU(), nn.Linear(hidden, chans[-1] * h * w), nn.SiLU()
        )
        self.blocks = nn.ModuleList()
        self.ups = nn.ModuleList()
        out_chans = list(reversed(chans[:-1])) + [channels]
        prev = chans[-1]
        for ch in out_chans:
            self.blocks.append(
                nn.Sequential(_ResBlock(prev), _ResBlock(prev)) if arch == "resnet" else nn.Identity()
            )
            self.ups.append(nn.ConvTranspose2d(prev, ch, kernel_size=3, stride=2, padding=1))
            prev = ch
        self.sigmoid = sigmoid

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        x = self.fc(latent).view(latent.shape[0], *self.start_shape)
        targets = list(reversed(self.sizes[:-1]))
        last = len(self.ups) - 1
        for i, (block, up) in enumerate(zip(self.blocks, self.ups)):
            x = up(block(x), output_size=targets[i])
            if i < last:
                x = torch.nn.functional.silu(x)
        return torch.sigmoid(x) if self.sigmoid else x
