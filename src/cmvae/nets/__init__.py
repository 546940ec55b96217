"""Per-modality networks, chosen from the data's shape.

Protocol every encoder/decoder follows (user modules too):

* encoder: ``x [B, *shape] -> [B, 2 * (shared_dim + private_dim)]``, read as
  (z location, z raw scale, w location, w raw scale); raw scales go through softplus.
* decoder: ``latent [N, shared_dim + private_dim] -> [N, *shape]`` (the likelihood's
  mean, or logits for Bernoulli likelihoods); text decoders give logits ``[N, L, vocab_size]``.
  The ``paper`` image decoders' means are unbounded (not squashed into the data's range).
"""

from __future__ import annotations

import torch
from torch import nn

from .images import ImageDecoder, ImageEncoder
from .init import WEIGHT_INITS, initialise
from .paper import PaperCaptionDecoder, PaperCaptionEncoder, PaperImageDecoder, PaperImageEncoder
from .tabular import TabularDecoder, TabularEncoder
from .text import TextDecoder, TextEncoder

__all__ = ["ARCHS", "WEIGHT_INITS", "BranchedEncoder", "ImageDecoder", "ImageEncoder", "PaperCaptionDecoder",
           "PaperCaptionEncoder", "PaperImageDecoder", "PaperImageEncoder", "TabularDecoder", "TabularEncoder",
           "TextDecoder", "TextEncoder", "build_networks"]


#: Architecture names: ``light`` (CPU default), ``resnet`` (wide residual nets), ``paper`` (the authors' networks,
#: :mod:`cmvae.nets.paper`; tabular modalities get the ``resnet`` MLPs).
ARCHS = ("light", "resnet", "paper")


class BranchedEncoder(nn.Module):
    """Two networks on the same input, as in the authors' encoders: one gives the shared latent's
    parameters ``[B, 2 * shared_dim]``, the other the private latent's ``[B, 2 * private_dim]``.
    Output ``[B, 2 * (shared_dim + private_dim)]`` in the protocol's order (z loc, z raw scale,
    w loc, w raw scale). Features of one branch cannot leak into the other latent through a shared trunk."""

    def __init__(self, shared: nn.Module, private: nn.Module) -> None:
        super().__init__()
        self.shared = shared
        self.private = private

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.shared(x), self.private(x)], dim=-1)


def build_networks(
    shape: tuple[int, ...],
    shared_dim: int,
    private_dim: int,
    *,
    arch: str = "light",
    likelihood: str = "laplace",
    vocab_size: int | None = None,
    branches: str = "shared",
    weight_init: str = "torch",
) -> tuple[nn.Module, nn.Module]:
    """Default (encoder, decoder) for one modality with per-sample ``shape``.

    ``[C, H, W]`` -> convolutional nets sized for the resolution; ``[D]`` -> MLPs; with
    ``vocab_size``, ``[L]`` token ids -> 1-D convolutional text nets (decoder logits ``[N, L, vocab_size]``).
    ``branches="separate"``: a :class:`BranchedEncoder` of two such encoders, one for z and one for w
    (with ``private_dim`` 0 there is nothing to separate and one encoder is returned).
    ``arch="paper"``: the authors' networks; their caption encoder always has separate z and w branches
    (over one embedding), their image decoders do not squash the output.
    ``weight_init``: ``"torch"`` (PyTorch's default), ``"he"`` (variance-preserving, :mod:`cmvae.nets.init`) or
    ``"he-decoders"`` (variance-preserving decoders, PyTorch's encoders);
    the authors' networks (``arch="paper"``) always keep PyTorch's, as in their release.
    """
    if weight_init not in WEIGHT_INITS:
        raise ValueError(f"weight_init must be one of {WEIGHT_INITS}, got {weight_init!r}")
    if branches not in ("shared", "separate"):
        raise ValueError(f"encoder_branches must be 'shared' or 'separate', got {branches!r}")
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {ARCHS}")
    if arch == "paper" and vocab_size is not None:
        if len(shape) != 1:
            raise ValueError(f"a text modality has per-sample shape [L] (token ids), got {list(shape)}")
        return (PaperCaptionEncoder(vocab_size, shape[0], shared_dim, private_dim),
                PaperCaptionDecoder(shared_dim, private_dim, vocab_size, shape[0]))
    init = "torch" if arch == "paper" else weight_init  # the authors' networks keep their initialisation
    if branches == "separate" and private_dim > 0:
        encoder: nn.Module = BranchedEncoder(
            initialise(_encoder(shape, 2 * shared_dim, arch, vocab_size), init),
            initialise(_encoder(shape, 2 * private_dim, arch, vocab_size), init),
        )
    else:
        encoder = initialise(_encoder(shape, 2 * (shared_dim + private_dim), arch, vocab_size), init)
    decoder = _decoder(shape, shared_dim + private_dim, arch, likelihood, vocab_size)
    return encoder, initialise(decoder, init, decoder=True)


def _encoder(shape: tuple[int, ...], out_dim: int, arch: str, vocab_size: int | None) -> nn.Module:
    if vocab_size is not None:
        if len(shape) != 1:
            raise ValueError(f"a text modality has per-sample shape [L] (token ids), got {list(shape)}")
        return TextEncoder(vocab_size, shape[0], out_dim, arch)
    if len(shape) == 3:
        if arch == "paper":
            return PaperImageEncoder(shape, out_dim)  # type: ignore[arg-type]
        return ImageEncoder(shape, out_dim, arch)  # type: ignore[arg-type]
    if len(shape) == 1:
        return TabularEncoder(shape[0], out_dim, _tabular_hidden(arch))
    raise ValueError(
        f"no default network for per-sample shape {tuple(shape)}: expected [C, H, W] images or [D] "
        "feature vectors; pass your own encoder/decoder modules"
    )


def _decoder(shape: tuple[int, ...], latent_dim: int, arch: str, likelihood: str, vocab_size: int | None) -> nn.Module:
    if vocab_size is not None:
        return TextDecoder(latent_dim, vocab_size, shape[0], arch)
    if len(shape) == 3:
        if arch == "paper":
            return PaperImageDecoder(shape, latent_dim)  # type: ignore[arg-type]
        sigmoid = likelihood in ("laplace", "gaussian")
        return ImageDecoder(shape, latent_dim, arch, sigmoid=sigmoid)  # type: ignore[arg-type]
    return TabularDecoder(latent_dim, shape[0], _tabular_hidden(arch))


def _tabular_hidden(arch: str) -> tuple[int, ...]:
    return (256, 256) if arch == "light" else (512, 512, 512)
