"""The networks of the authors' release (``arch="paper"``), written from the facts in the paper and its
code (see shared/PAPER-NETWORKS.md in the project): the PolyMNIST ResNets, their 64x64 version for
CUBICC images, and the CUBICC caption networks.

Images ``[B, C, H, W]``:

* :class:`PaperResBlock` -- pre-activation residual block (leaky ReLU 0.2) whose residual is scaled by 0.1.
* :class:`PaperImageEncoder` -- one branch: conv3x3(C->64), ResBlock(64, 64), then per stage
  AvgPool2d(3, 2, 1) and a ResBlock doubling the channels (at most 256); two linear heads (location and
  raw scale). The estimator builds one branch for z and one for w (``encoder_branches="separate"``).
* :class:`PaperImageDecoder` -- Linear -> [256, s, s] -> per stage ResBlock halving the channels and
  Upsample x2 -> ResBlock(64, 64) -> conv3x3(64->C) on leaky_relu. No output squashing: the output is
  the location of the Laplace likelihood and may leave [0, 1] (plots clip it for display). Each
  Upsample + ResBlock pair is computed at the low resolution (:func:`upsampled_resblock`): the same
  function with 20% fewer operations in the decoder.

The spatial size is halved while it is even and above 2: 28 -> 14 -> 7 (PolyMNIST, 256 x 7 x 7 at the
bottom), 64 -> 32 -> ... -> 2 (CUBICC, 256 x 2 x 2); the upsampling then restores the size exactly.

Captions, token ids ``[B, L]`` with L a multiple of 8 (32 in the release):
:class:`PaperCaptionEncoder` and :class:`PaperCaptionDecoder`, 2-D convolutions over the
``[1, L, 128]`` "image" of embedded tokens, with separate w and z branches.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

SLOPE = 0.2
#: Activations are kept channels-last (NHWC): oneDNN's convolutions run faster on it than on NCHW
#: (the same values; the parameters keep the default layout, so saved models are unaffected).
CHANNELS_LAST = torch.channels_last
BASE_CHANNELS = 64
MAX_CHANNELS = 256


class PaperResBlock(nn.Module):
    """``out = shortcut(x) + 0.1 * conv(lrelu(conv(lrelu(x))))``; 1x1 shortcut without bias when fin != fout."""

    def __init__(self, fin: int, fout: int) -> None:
        super().__init__()
        hidden = min(fin, fout)
        self.conv_0 = nn.Conv2d(fin, hidden, 3, padding=1)
        self.conv_1 = nn.Conv2d(hidden, fout, 3, padding=1)
        self.shortcut = nn.Conv2d(fin, fout, 1, bias=False) if fin != fout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dx = self.conv_1(F.leaky_relu(self.conv_0(F.leaky_relu(x, SLOPE)), SLOPE))
        return self.shortcut(x) + 0.1 * dx


def paper_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """Spatial sizes of the paper's image networks, finest first: halved while even and above 2.

    ``(28, 28) -> [(28, 28), (14, 14), (7, 7)]``; ``(64, 64) -> [(64, 64), ..., (2, 2)]``.
    """
    sizes = [(height, width)]
    while all(n % 2 == 0 and n > 2 for n in sizes[-1]):
        h, w = sizes[-1]
        sizes.append((h // 2, w // 2))
    return sizes


def paper_channels(n_stages: int) -> list[int]:
    """Channels per resolution, finest first: 64, 128, 256, 256, ..."""
    return [min(BASE_CHANNELS * 2**i, MAX_CHANNELS) for i in range(n_stages + 1)]


class PaperImageEncoder(nn.Module):
    """One branch, ``[B, C, H, W] -> [B, out_dim]``: for a branch of one latent ``out_dim = 2 * dim``
    (location, raw scale). The location and scale heads are one ``Linear(features, 2 * dim)``: the same map
    and parameters as two ``Linear(features, dim)``, in one matrix product."""

    def __init__(self, shape: tuple[int, int, int], out_dim: int) -> None:
        super().__init__()
        channels, height, width = shape
        sizes = paper_sizes(height, width)
        chans = paper_channels(len(sizes) - 1)
        layers: list[nn.Module] = [nn.Conv2d(channels, chans[0], 3, padding=1), PaperResBlock(chans[0], chans[0])]
        for fin, fout in zip(chans[:-1], chans[1:]):
            layers += [nn.AvgPool2d(3, stride=2, padding=1), PaperResBlock(fin, fout)]
        self.features = nn.Sequential(*layers, nn.Flatten())
        h, w = sizes[-1]
        self.head = nn.Linear(chans[-1] * h * w, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.contiguous(memory_format=CHANNELS_LAST)))


class PaperImageDecoder(nn.Module):
    """``[N, latent_dim] -> [N, C, H, W]``, unbounded (the likelihood's location, or logits)."""

    def __init__(self, shape: tuple[int, int, int], latent_dim: int) -> None:
        super().__init__()
        channels, height, width = shape
        sizes = paper_sizes(height, width)
        chans = paper_channels(len(sizes) - 1)
        h, w = sizes[-1]
        self.start_shape = (chans[-1], h, w)
        self.fc = nn.Linear(latent_dim, chans[-1] * h * w)
        layers: list[nn.Module] = []
        for fin, fout in zip(reversed(chans[1:]), reversed(chans[:-1])):
            layers += [PaperResBlock(fin, fout), nn.Upsample(scale_factor=2)]
        layers.append(PaperResBlock(chans[0], chans[0]))
        self.blocks = nn.Sequential(*layers)
        self.to_image = nn.Conv2d(chans[0], channels, 3, padding=1)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        x = self.fc(latent).view(latent.shape[0], *self.start_shape).contiguous(memory_format=CHANNELS_LAST)
        layers = list(self.blocks)
        i = 0
        while i < len(layers):
            if isinstance(layers[i], nn.Upsample):  # Upsample x2 then a ResBlock, computed at the low resolution
                x = upsampled_resblock(layers[i + 1], x)
                i += 2
            else:
                x = layers[i](x)
                i += 1
        return self.to_image(F.leaky_relu(x, SLOPE))


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour upsampling by 2 (``nn.Upsample(scale_factor=2)``)."""
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def upsampled_resblock(block: PaperResBlock, x: torch.Tensor) -> torch.Tensor:
    """``block(upsample2(x))`` with fewer operations: leaky ReLU and the 1x1 shortcut commute with
    nearest-neighbour upsampling, and the first 3x3 convolution of an upsampled map is, for each of the
    four output phases, a 2x2 convolution of the low-resolution map (:func:`upsampled_conv3x3`)."""
    h = upsampled_conv3x3(F.leaky_relu(x, SLOPE), block.conv_0.weight, block.conv_0.bias)
    dx = block.conv_1(F.leaky_relu(h, SLOPE))
    return upsample2(block.shortcut(x)) + 0.1 * dx


def upsampled_conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``conv2d(upsample2(x), weight, bias, padding=1)`` for a 3x3 ``weight`` ``[O, C, 3, 3]``: 16 taps per
    low-resolution pixel instead of 36 (0.44x the multiply-adds, plus a one-pixel border).

    Output row 2i + a of the upsampled map sees source rows (i - 1, i, i) for a = 0 and (i, i, i + 1) for
    a = 1: kernel rows (0, 1 + 2) on source rows (i - 1, i), or (0 + 1, 2) on (i, i + 1); the same for
    columns. The four phase kernels run as one 2x2 convolution with 4 O outputs on the input padded by 1,
    phase (a, b) read at offset (a, b), and are interleaved into ``[N, O, 2H, 2W]`` (channels-last).
    """
    def split(v: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        t0, t1, t2 = v.unbind(dim)
        return torch.stack([t0, t1 + t2], dim), torch.stack([t0 + t1, t2], dim)

    rows = split(weight, 2)  # phase a: [O, C, 2, 3]
    kernels = [k for r in rows for k in split(r, 3)]  # (a, b) = 00, 01, 10, 11: [O, C, 2, 2]
    out_ch, (height, width) = weight.shape[0], x.shape[-2:]
    out = F.conv2d(F.pad(x, (1, 1, 1, 1)), torch.cat(kernels), None if bias is None else bias.repeat(4))
    phases = [out[:, p * out_ch:(p + 1) * out_ch, a:a + height, b:b + width].permute(0, 2, 3, 1)
              for p, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1)))]  # [N, H, W, O]
    rows_a = [torch.stack(phases[2 * a:2 * a + 2], dim=3) for a in (0, 1)]  # [N, H, W, 2 (b), O]
    y = torch.stack(rows_a, dim=2)  # [N, H, 2 (a), W, 2 (b), O]
    return y.reshape(x.shape[0], 2 * height, 2 * width, out_ch).permute(0, 3, 1, 2)


# -- captions -----------------------------------------------------------------------------------------
EMBED_DIM = 128
CAPTION_BASE = 32


def _conv_bn(fin: int, fout: int, kernel, stride, padding, *, transpose: bool = False) -> list[nn.Module]:
    conv = (nn.ConvTranspose2d if transpose else nn.Conv2d)(fin, fout, kernel, stride, padding)
    return [conv, nn.BatchNorm2d(fout), nn.ReLU()]


def _check_caption_length(length: int) -> None:
    if length < 32 or length % 8:
        raise ValueError(
            f"the paper's caption networks need a caption length that is a multiple of 8 and at least 32 "
            f"(32 in the release), got {length}; use arch='light' or 'resnet' for other lengths"
        )


class PaperCaptionEncoder(nn.Module):
    """Token ids ``[B, L]`` -> ``[B, 2 * (shared_dim + private_dim)]`` in the protocol's order.

    The one-hot tokens go through a linear embedding (vocab -> 128, as an ``nn.Embedding`` plus a bias:
    the same map without the one-hot product), giving a one-channel ``[L, 128]`` image. The w branch:
    three conv(4, stride 2, pad 1) + batch norm + ReLU layers (32, 64, 128 channels) and linear heads on
    the ``128 x L/8 x 16`` features; the z branch: the same three layers, two more with (1, 4) kernels and
    stride (1, 2) (256, 512 channels) and conv heads whose kernel ``(L/8, 4)`` covers the whole map.
    """

    def __init__(self, vocab_size: int, length: int, shared_dim: int, private_dim: int) -> None:
        super().__init__()
        _check_caption_length(length)
        self.embed = nn.Embedding(vocab_size, EMBED_DIM)
        self.embed_bias = nn.Parameter(torch.zeros(EMBED_DIM))
        f = CAPTION_BASE
        self.private_dim = private_dim

        def trunk() -> list[nn.Module]:
            return [*_conv_bn(1, f, 4, 2, 1), *_conv_bn(f, 2 * f, 4, 2, 1), *_conv_bn(2 * f, 4 * f, 4, 2, 1)]

        self.z_features = nn.Sequential(
            *trunk(), *_conv_bn(4 * f, 8 * f, (1, 4), (1, 2), (0, 1)), *_conv_bn(8 * f, 16 * f, (1, 4), (1, 2), (0, 1))
        )
        kernel = (length // 8, 4)
        self.z_head = nn.Conv2d(16 * f, 2 * shared_dim, kernel)  # location and raw scale heads in one
        if private_dim > 0:
            self.w_features = nn.Sequential(*trunk(), nn.Flatten())
            flat = 4 * f * (length // 8) * (EMBED_DIM // 8)
            self.w_head = nn.Linear(flat, 2 * private_dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = (self.embed(ids.long()) + self.embed_bias).unsqueeze(1)  # [B, 1, L, 128]
        hz = self.z_features(x)
        parts = [self.z_head(hz).flatten(1)]
        if self.private_dim > 0:
            parts.append(self.w_head(self.w_features(x)))
        return torch.cat(parts, dim=-1)


class PaperCaptionDecoder(nn.Module):
    """``[N, shared_dim + private_dim]`` -> logits ``[N, L, vocab_size]``: the encoder's mirror.

    z branch: transposed conv ``(L/8, 4)`` to 512 x L/8 x 4, then the five layers back (512 -> 256 -> 128
    with (1, 4) kernels, 128 -> 64 -> 32 -> 1 with kernel 4 / stride 2); w branch: linear to 128 x L/8 x 16,
    then the last three. The branches' one-channel ``[L, 128]`` maps are added and a linear map per
    position (128 -> vocab) inverts the embedding.
    """

    def __init__(self, shared_dim: int, private_dim: int, vocab_size: int, length: int) -> None:
        super().__init__()
        _check_caption_length(length)
        f = CAPTION_BASE
        self.shared_dim = shared_dim
        self.private_dim = private_dim
        self.w_start = (4 * f, length // 8, EMBED_DIM // 8)

        def head() -> list[nn.Module]:
            return [*_conv_bn(4 * f, 2 * f, 4, 2, 1, transpose=True), *_conv_bn(2 * f, f, 4, 2, 1, transpose=True),
                    nn.ConvTranspose2d(f, 1, 4, 2, 1)]

        self.z_branch = nn.Sequential(
            *_conv_bn(shared_dim, 16 * f, (length // 8, 4), 1, 0, transpose=True),
            *_conv_bn(16 * f, 8 * f, (1, 4), (1, 2), (0, 1), transpose=True),
            *_conv_bn(8 * f, 4 * f, (1, 4), (1, 2), (0, 1), transpose=True),
            *head(),
        )
        if private_dim > 0:
            self.w_fc = nn.Linear(private_dim, 4 * f * (length // 8) * (EMBED_DIM // 8))
            self.w_branch = nn.Sequential(nn.BatchNorm2d(4 * f), nn.ReLU(), *head())
        self.to_logits = nn.Linear(EMBED_DIM, vocab_size)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        z, w = latent.split([self.shared_dim, self.private_dim], dim=-1)
        x = self.z_branch(z[:, :, None, None])  # [N, 1, L, 128]
        if self.private_dim > 0:
            x = x + self.w_branch(self.w_fc(w).view(latent.shape[0], *self.w_start))
        return self.to_logits(x.squeeze(1))  # [N, L, vocab]
